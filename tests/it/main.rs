//! The real binary against fake `incus`, `useradd`, `usermod`, `userdel`,
//! `groupadd`, `groupdel`, `sshd` and `fail2ban-client` (tests/it/fakes/fake.py) on PATH, with host paths
//! under a scratch root. Asserts the exact commands each verb issues, what
//! it writes, and that a failure at any step of `create` undoes the steps
//! before it. Must run as root, like the tool, and needs the binary built
//! with the `test-paths` feature, the only build that honours
//! `CONTAINARIUM_ROOT`.

#[cfg(not(feature = "test-paths"))]
compile_error!(
    "the CLI tests need host paths under a scratch root: run `cargo test --locked --features test-paths`"
);

use containarium::cloud_init::WAIT_SCRIPT;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop";
/// The sandbox bastion's host key (`ssh-keygen -t ed25519`).
const BASTION_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEm8Jef0Wo08t+aS1AH+78OLVxVoSMWkQzx5OPy7soRr";
const USER: &str = "ctmtest-alice";
/// A listener on IP:PORT that another run of these tests (another checkout on
/// the same machine) may hold at the same time: both answer alike.
pub(crate) fn listen_shared(ip: &str, port: u16) -> TcpListener {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
    setsockopt(&fd, sockopt::ReusePort, &true).unwrap();
    let addr: std::net::SocketAddrV4 = format!("{ip}:{port}").parse().unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).unwrap();
    listen(&fd, Backlog::new(64).unwrap()).unwrap();
    TcpListener::from(fd)
}

const FAKES: [&str; 10] = [
    "incus",
    "ss",
    "useradd",
    "usermod",
    "userdel",
    "groupadd",
    "groupdel",
    "sshd",
    "fail2ban-client",
    "sysctl",
];
const DROPIN: &str = "root/etc/ssh/sshd_config.d/00-containarium.conf";

mod apply;
mod cluster;
mod conventions;
mod docs;
mod pipes;

struct Sandbox {
    dir: tempfile::TempDir,
    ip: String,
    gateway: String,
}

impl Sandbox {
    /// A scratch host whose tenant network is 127.83.N.0/30 with the
    /// gateway at .1, so the one address containarium can give a container
    /// is 127.83.N.2, where a fake sshd banner answers on port 22.
    fn new(n: u8) -> Sandbox {
        Sandbox::with_hosts(n, 1)
    }

    /// A sandbox with room for `hosts` (at most 5) containers: the network
    /// is a /29, and a fake sshd answers on .2 to .6.
    fn with_hosts(n: u8, hosts: u8) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let ip = format!("127.83.{n}.2");
        for sub in ["bin", "state", "root/etc/ssh/sshd_config.d", "root/run"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fakes/fake.py");
        for name in FAKES {
            std::os::unix::fs::symlink(&fake, dir.path().join("bin").join(name)).unwrap();
        }
        std::fs::write(
            dir.path().join("root/etc/ssh/sshd_config"),
            "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("root/etc/ssh/ssh_host_ed25519_key.pub"),
            format!("{BASTION_KEY} root@bastion\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("alice.pub"), format!("{KEY}\n")).unwrap();
        for host in 2..2 + hosts.min(5) {
            let listener = listen_shared(&format!("127.83.{n}.{host}"), 22);
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2 fake\r\n");
                }
            });
        }
        let prefix = if hosts > 1 { 29 } else { 30 };
        Sandbox {
            dir,
            ip,
            gateway: format!("127.83.{n}.1/{prefix}"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs the binary and asserts that it succeeded.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    /// The binary as `run_with` starts it, for a test that waits on it.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_containarium"));
        cmd.args(args)
            .env("PATH", path)
            .env("CONTAINARIUM_ROOT", self.path("root"))
            .env("FAKE_LOG", self.path("log"))
            .env("FAKE_STATE", self.path("state"))
            .env("FAKE_IP", &self.ip)
            .env("FAKE_GATEWAY", &self.gateway)
            .env_remove("CONTAINARIUM_CONFIG")
            .env_remove("FAKE_FAIL")
            .env_remove("FAKE_SLOW")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The calls the fakes saw, with the volatile creation time masked.
    /// The commands run, but `sshd -V`: the version probe of every plan
    /// that renders the sshd drop-in (read-only; the fake names no
    /// version, so the drop-in is the current one).
    fn log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("log")).unwrap_or_default();
        text.lines()
            .filter(|l| *l != "sshd -V")
            .map(mask_time)
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.path("log"));
    }

    fn instance(&self) -> Option<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.path(&format!("state/{USER}-container.json"))).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }

    /// Changes the fake's record of instance `name`, as the tenant (its
    /// files, what it reports) or Incus (its config) would.
    fn edit_instance(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.path(&format!("state/{name}.json"));
        let mut inst: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut inst);
        std::fs::write(&path, inst.to_string()).unwrap();
    }

    /// Puts a file the tenant wrote into USER's container.
    fn tenant_writes(&self, path: &str, contents: &str) {
        self.edit_instance(&format!("{USER}-container"), |inst| {
            inst["files"][path] = contents.into();
        });
    }

    /// Sets config `key` of instance `name` as `incus config set` would.
    fn set_config(&self, name: &str, key: &str, value: &str) {
        self.edit_instance(name, |inst| {
            inst["config"][key] = value.into();
            inst["expanded_config"][key] = value.into();
        });
    }

    /// `create USER` with alice.pub and the image `local:dev`.
    fn create_args(&self) -> Vec<String> {
        let key = self.path("alice.pub");
        [
            "create",
            USER,
            "--ssh-key",
            key.to_str().unwrap(),
            "--image",
            "local:dev",
        ]
        .map(String::from)
        .to_vec()
    }

    fn create(&self) -> Output {
        let args = self.create_args();
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

fn mask_time(line: &str) -> String {
    match line.find("user.containarium.created=") {
        Some(at) => {
            let start = at + "user.containarium.created=".len();
            format!("{}<time>{}", &line[..start], &line[start + 20..])
        }
        None => line.to_string(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether the machine running the tests has our group already (after an
/// e2e run, or on a real bastion); `host init` plans around it.
fn host_has_group() -> bool {
    std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("containarium:"))
}

fn init_line(ip: &str) -> String {
    format!(
        "incus init --config limits.cpu=2 --config limits.memory=2GiB \
         --config limits.processes=4096 --config boot.autostart=true --config user.containarium.owner={USER} \
         --config user.containarium.state=pending --config user.containarium.template=default \
         --config user.containarium.created=<time> --config user.containarium.jump-account={USER} \
         --config user.containarium.docker=true --config user.containarium.keys={KEY}… \
         --config user.containarium.image=local:dev --config security.nesting=true \
         --config security.syscalls.intercept.mknod=true \
         --config security.syscalls.intercept.setxattr=true \
         --config cloud-init.user-data=#cloud-config… --device root,size=20GiB \
         --device eth0,ipv4.address={ip} --device eth0,security.port_isolation=true \
         --device eth0,security.mac_filtering=true --device eth0,security.ipv4_filtering=true \
         -- local:dev {USER}-container"
    )
}

/// The policy check of the jump account, from one sample address.
fn sshd_t(s: &Sandbox, addr: &str) -> String {
    format!(
        "sshd -T -f {} -C user={USER},addr={addr},host={addr}",
        s.path("root/etc/ssh/sshd_config").display()
    )
}

/// Everything a successful `create` runs, in order, as the fakes log it.
fn create_calls(s: &Sandbox) -> Vec<String> {
    let mut calls = vec![
        format!("incus list --format json ^{USER}-container$"),
        "incus image info -- local:dev".to_string(),
        "incus list --all-projects --format json".to_string(),
        "incus query /1.0/profiles/default".to_string(),
        "incus query /1.0/networks/br0".to_string(),
        "incus query /1.0".to_string(),
    ];
    if !host_has_group() {
        calls.push("groupadd --force --system -- containarium".into());
    }
    calls.extend([
        format!(
            "sshd -t -f {}",
            s.path("root/etc/ssh/sshd_config").display()
        ),
        init_line(&s.ip),
        format!(
            "useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 --gid containarium --shell /usr/sbin/nologin --password * --no-create-home \
             --home-dir /nonexistent --comment containarium jump account -- {USER}"
        ),
        sshd_t(s, "127.0.0.1"),
        sshd_t(s, "10.0.0.1"),
        sshd_t(s, "203.0.113.1"),
        format!("incus start {USER}-container"),
        format!("incus exec {USER}-container -- timeout 900 sh -c {WAIT_SCRIPT}"),
        format!("incus file pull {USER}-container/var/lib/cloud/data/status.json -"),
        format!("incus file pull {USER}-container/etc/passwd -"),
        format!("incus file pull {USER}-container/home/{USER}/.ssh/authorized_keys -"),
        format!("incus config set {USER}-container user.containarium.state=ready"),
    ]);
    calls
}

#[test]
fn create_runs_the_plan_and_records_everything_in_incus() {
    let s = Sandbox::new(1);
    let out = s.create();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.log(), create_calls(&s));
    assert!(
        stdout(&out).contains(&format!("ipv4:         {}", s.ip)),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!("ssh -J {USER}@")),
        "{}",
        stdout(&out)
    );
    let progress = stderr(&out);
    for step in [
        "create container",
        "wait for cloud-init",
        "mark the container ready",
    ] {
        assert!(
            progress.contains(&step.to_string()) && progress.contains("... done ("),
            "{progress}"
        );
    }

    let key_file =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    assert_eq!(
        key_file,
        format!(
            "# Managed by containarium: tunnels to this user's container only.\n\
             restrict,port-forwarding,permitopen=\"{}:22\" {KEY}\n",
            s.ip
        )
    );
    let dropin = std::fs::read_to_string(s.path(DROPIN)).unwrap();
    assert!(
        dropin.contains(
            "Match Group containarium\n    AuthorizedKeysFile /etc/containarium/keys/%u\n"
        )
    );
    let inst = s.instance().unwrap();
    assert_eq!(inst["config"]["user.containarium.state"], "ready");
    assert_eq!(inst["config"]["user.containarium.owner"], USER);
    assert_eq!(inst["devices"]["eth0"]["ipv4.address"], s.ip.as_str());
    assert!(inst["config"].get("security.privileged").is_none());

    // A second create touches nothing.
    s.clear_log();
    let again = s.create();
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        stderr(&again),
        format!("error: {USER} already exists (container {USER}-container); nothing changed\n")
    );
    assert_eq!(
        s.log(),
        vec![format!("incus list --format json ^{USER}-container$")]
    );
}

/// A create killed half-way leaves its container `pending`. While another
/// run holds the user's lock (it may be that create, still booting), the
/// container is left alone; once the lock is free, `create` replaces it
/// (the jump account the dead run made is adopted: see the e2e crash suite).
#[test]
fn create_replaces_a_container_an_interrupted_run_left_pending() {
    let s = Sandbox::new(3);
    assert!(s.create().status.success());
    let ready_ip = s.instance().unwrap()["devices"]["eth0"]["ipv4.address"].clone();
    s.set_config(
        &format!("{USER}-container"),
        "user.containarium.state",
        "pending",
    );
    let lock_path = s.path(&format!("root/run/containarium/users/{USER}.lock"));
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let holder = std::fs::File::create(&lock_path).unwrap();
    holder.lock().unwrap();
    std::fs::write(&lock_path, format!("4242 containarium create {USER}")).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(holder);
    });
    s.clear_log();
    let out = s.create();
    release.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "waiting for lock {} (held by pid 4242, containarium create {USER}",
            lock_path.display()
        )),
        "{}",
        stderr(&out)
    );
    let log = s.log();
    let delete = format!("incus delete --force {USER}-container");
    let deleted = log.iter().position(|l| *l == delete).expect("deleted");
    let init = log
        .iter()
        .position(|l| l.starts_with("incus init"))
        .unwrap();
    assert!(deleted < init, "{log:#?}");
    let inst = s.instance().unwrap();
    assert_eq!(inst["config"]["user.containarium.state"], "ready");
    // Its own address was free again.
    assert_eq!(inst["devices"]["eth0"]["ipv4.address"], ready_ip);

    // A ready container is never replaced.
    s.clear_log();
    let again = s.create();
    assert_eq!(again.status.code(), Some(2));
    assert!(!s.log().iter().any(|l| l.contains("delete")));
}

/// incusd stops while `create` waits for the boot: the error says so, what
/// can be undone without Incus is (the account, the key file), the rest is
/// named; once Incus is back, `create` again replaces what was left.
#[test]
fn create_says_when_incus_stopped_under_it_and_a_rerun_cleans_up() {
    let s = Sandbox::new(4);
    let args = s.create_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run_with(&args, &[("FAKE_INCUS_DOWN_AFTER", "incus start")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(
            "error: the Incus daemon is not running: start it with `systemctl start incus`"
        ) && last.contains("wait for cloud-init failed"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "run `incus delete --force {USER}-container` by hand"
        )),
        "{err}"
    );
    assert!(s.log().contains(&format!("userdel -- {USER}")));
    assert!(
        !s.path(&format!("root/etc/containarium/keys/{USER}"))
            .exists()
    );
    assert_eq!(
        s.instance().unwrap()["config"]["user.containarium.state"],
        "pending"
    );

    // A daemon that is stopping refuses changes ("Shutting down") while
    // GET /1.0 still answers: the failed step's own words say it is down.
    let t = Sandbox::new(5);
    let targs = t.create_args();
    let targs: Vec<&str> = targs.iter().map(String::as_str).collect();
    let out = t.run_with(&targs, &[("FAKE_INCUS_STOPPING_AFTER", "incus start")]);
    assert_eq!(out.status.code(), Some(1));
    let last = stderr(&out).lines().last().unwrap().to_string();
    assert!(
        last.starts_with("error: the Incus daemon is not running")
            && last.ends_with("Error: Shutting down"),
        "{last}"
    );

    std::fs::remove_file(s.path("state/_incus_down")).unwrap();
    let out = s.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.instance().unwrap()["config"]["user.containarium.state"],
        "ready"
    );
}

#[test]
fn create_dry_run_prints_commands_and_user_data_and_changes_nothing() {
    let s = Sandbox::new(2);
    let key = s.path("alice.pub");
    let out = s.run(&[
        "create",
        USER,
        "--ssh-key",
        key.to_str().unwrap(),
        "--image",
        "local:dev",
        "--no-docker",
        "--processes",
        "2048",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = mask_time(&stdout(&out));
    for expected in [
        "create container ctmtest-alice-container at 127.83.2.2\n    incus init --config",
        " --config limits.processes=2048 ",
        "--config 'cloud-init.user-data=#cloud-config\n",
        "    ssh_authorized_keys:\n      - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop\"\n",
        "--device eth0,ipv4.address=127.83.2.2 --device eth0,security.port_isolation=true --device eth0,security.mac_filtering=true --device eth0,security.ipv4_filtering=true -- local:dev ctmtest-alice-container\n",
        "write the jump account's keys\n    write ",
        "restrict,port-forwarding,permitopen=\"<endpoint>\" ssh-ed25519",
        "useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 --gid containarium --shell /usr/sbin/nologin --password '*'",
        "# incus exec ctmtest-alice-container -- timeout 900 sh -c 'i=0; until [ -e /run/cloud-init/result.json ]; do [ ! -e /run/cloud-init/disabled ] || exit 3; if [ ! -e /run/cloud-init/enabled ]; then i=$((i + 1)); [ $i -le 100 ] || exit 3; fi; sleep 0.1; done'; then read /var/lib/cloud/data/status.json for errors",
        "incus config set ctmtest-alice-container user.containarium.state=ready",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }
    assert!(!plan.contains("security.nesting"), "--no-docker: {plan}");
    assert_eq!(
        s.log(),
        vec![
            format!("incus list --format json ^{USER}-container$"),
            "incus image info -- local:dev".to_string(),
            "incus list --all-projects --format json".to_string(),
            "incus query /1.0/profiles/default".to_string(),
            "incus query /1.0/networks/br0".to_string(),
            "incus query /1.0".to_string(),
        ]
    );
    assert!(!s.path(DROPIN).exists());
}

#[test]
fn create_undoes_earlier_steps_when_any_step_fails() {
    let container = format!("{USER}-container");
    let undo_container = format!("incus delete --force {container}");
    let undo_account = format!("userdel -- {USER}");
    // (what fails, the undo calls expected after it, in order)
    // Shared host setup (group, key directory, drop-in) is never undone:
    // another run may rely on it already. A failed `incus init` is undone:
    // the name was free under our lock, so what it left is ours.
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("sshd -t", vec![]),
        ("incus init", vec![undo_container.clone()]),
        ("useradd", vec![undo_container.clone()]),
        (
            "sshd -T",
            vec![undo_account.clone(), undo_container.clone()],
        ),
        (
            "incus start",
            vec![undo_account.clone(), undo_container.clone()],
        ),
        (
            "cloud-init/result.json",
            vec![undo_account.clone(), undo_container.clone()],
        ),
        (
            "data/status.json",
            vec![undo_account.clone(), undo_container.clone()],
        ),
        (
            "file pull ctmtest-alice-container/etc/passwd",
            vec![undo_account.clone(), undo_container.clone()],
        ),
        (
            "user.containarium.state=ready",
            vec![undo_account.clone(), undo_container.clone()],
        ),
    ];
    for (n, (failing, undo)) in cases.into_iter().enumerate() {
        let s = Sandbox::new(10 + n as u8);
        let key = s.path("alice.pub");
        let out = s.run_with(
            &[
                "create",
                USER,
                "--ssh-key",
                key.to_str().unwrap(),
                "--image",
                "local:dev",
            ],
            &[("FAKE_FAIL", failing)],
        );
        assert_eq!(out.status.code(), Some(1), "{failing}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("injected failure"),
            "{failing}: {}",
            stderr(&out)
        );
        let log = s.log();
        let at = log.iter().position(|l| l.contains(failing)).unwrap();
        let after: Vec<String> = log[at + 1..].to_vec();
        // A failure is followed by asking whether Incus is still up, to
        // say so if it is not.
        let mut undo = undo;
        undo.push("incus query /1.0".into());
        assert_eq!(after, undo, "{failing}: {log:#?}");
        assert!(s.instance().is_none(), "{failing}: container left behind");
        assert!(
            !s.path(&format!("root/etc/containarium/keys/{USER}"))
                .exists(),
            "{failing}: key file left"
        );
    }
}

#[test]
fn create_reads_cloud_init_status_and_falls_back_to_its_status_command() {
    let key_args = |s: &Sandbox| {
        let key = s.path("alice.pub").to_str().unwrap().to_string();
        ["create", USER, "--ssh-key", &key, "--image", "local:dev"].map(String::from)
    };
    let status_pull = format!("incus file pull {USER}-container/var/lib/cloud/data/status.json -");
    // `cloud-init status --wait` for what is left of the 900 s: the wait
    // took under a second, or a few on a loaded machine.
    let is_status_wait = |line: &str| {
        let left = line
            .strip_prefix(&format!("incus exec {USER}-container -- timeout "))
            .and_then(|rest| rest.strip_suffix(" cloud-init status --wait"))
            .and_then(|n| n.parse::<u32>().ok());
        matches!(left, Some(890..=900))
    };

    // Errors in a stage: fail with them and the end of the output log.
    let s = Sandbox::new(34);
    let out = s.run_with(&argv_of(&key_args(&s)), &[("FAKE_CLOUD_INIT", "errors")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cloud-init in {USER}-container reported errors: ('scripts_user', RuntimeError('Runparts: 1 failures')); \
             the end of /var/log/cloud-init-output.log:\n  log line 6\n"
        )) && err.contains("  log line 30\n")
            && !err.contains("log line 5\n"),
        "{err}"
    );
    assert!(s.instance().is_none(), "rolled back");

    // Recoverable errors: done, with the warnings shown.
    let s = Sandbox::new(35);
    let out = s.run_with(&argv_of(&key_args(&s)), &[("FAKE_CLOUD_INIT", "warnings")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: cloud-init finished with warnings:\n  WARNING: Invalid cloud-config key\n"
        ),
        "{}",
        stderr(&out)
    );

    // A status.json we cannot read: ask `cloud-init status --wait`.
    let s = Sandbox::new(36);
    let out = s.run_with(&argv_of(&key_args(&s)), &[("FAKE_CLOUD_INIT", "garbled")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = s.log();
    let at = log.iter().position(|l| *l == status_pull).unwrap();
    assert!(is_status_wait(&log[at + 1]), "{}", log[at + 1]);
    assert!(
        stderr(&out).contains("asking `cloud-init status --wait` instead"),
        "{}",
        stderr(&out)
    );

    // cloud-init not enabled for this boot: ask it, and refuse a disabled one.
    let s = Sandbox::new(37);
    let out = s.run_with(&argv_of(&key_args(&s)), &[("FAKE_CLOUD_INIT", "disabled")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "cloud-init is disabled in {USER}-container, so nothing would set up the user"
        )),
        "{}",
        stderr(&out)
    );
    let log = s.log();
    let at = log.iter().position(|l| l.contains("sh -c")).unwrap();
    assert!(is_status_wait(&log[at + 1]), "{}", log[at + 1]);
    assert!(!log.contains(&status_pull), "{log:#?}");
    assert!(s.instance().is_none(), "rolled back");
}

fn argv_of(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn bad_input_is_refused_in_one_line_and_changes_nothing() {
    let s = Sandbox::new(30);
    let dir = s.path("");
    std::fs::write(dir.join("empty.pub"), "").unwrap();
    std::fs::write(
        dir.join("id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(dir.join("opts.pub"), format!("command=\"/bin/sh\" {KEY}\n")).unwrap();
    std::fs::write(dir.join("dss.pub"), "ssh-dss AAAAB3NzaC1kc3M= old\n").unwrap();
    std::fs::write(dir.join("crlf.pub"), format!("{KEY}\rfrom=\"*\" x\n")).unwrap();
    // Shaped like /etc/shadow, which must never be echoed.
    std::fs::write(
        dir.join("shadow"),
        "root:$y$j9T$c2VjcmV0$c2VjcmV0aGFzaA:19700:0:99999:7:::\nbin:*:19700:0:99999:7:::\n",
    )
    .unwrap();
    // ssh-keygen -t rsa -b 1024
    std::fs::write(dir.join("rsa1024.pub"), "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDMfZqS5xxLkuXyv/U9cownTwAmRpy4XofFm75xrcXCA/2kdtCuV6JK35pQVY4LiKyvB8fLSqpruXYowjFQopuYSdv+lJmEJdMy2ptqS/4mSTljqhQzctkscTeydU/ul0t60GIL85NjlPUB/ikcQWj1wq6OHOexwPqOKNaRPETreQ== weak\n").unwrap();
    // The type and nothing else: "ssh-ed25519" as a wire-format string.
    std::fs::write(dir.join("hollow.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n").unwrap();
    let good = s.path("alice.pub").to_str().unwrap().to_string();
    let key = |file: &str| dir.join(file).to_str().unwrap().to_string();
    // `create USER --ssh-key FILE EXTRA...`, as argv.
    let create = |user: &str, file: &str, extra: &[&str]| -> Vec<String> {
        let mut argv = vec![
            "create".to_string(),
            user.to_string(),
            "--ssh-key".into(),
            file.to_string(),
        ];
        argv.extend(extra.iter().map(|a| a.to_string()));
        argv
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (create("Alice", &good, &[]), "invalid user name"),
        (create("a", &good, &[]), "2 to 31 characters"),
        (create("bob\nroot", &good, &[]), "invalid user name"),
        (
            create("root", &good, &["--image", "x"]),
            "host account root exists and was not made by containarium",
        ),
        (
            create("daemon", &good, &["--image", "x"]),
            "host account daemon exists",
        ),
        (create(USER, &key("nope.pub"), &[]), "cannot read key file"),
        (create(USER, &key("empty.pub"), &[]), "holds no public key"),
        (create(USER, &key("id_ed25519"), &[]), "is a PRIVATE key"),
        (create(USER, &key("opts.pub"), &[]), "key options"),
        (create(USER, &key("dss.pub"), &[]), "not a public key"),
        (create(USER, &key("crlf.pub"), &[]), "CR/LF"),
        (
            create(USER, &key("shadow"), &[]),
            "shadow line 1: not a public key",
        ),
        (
            create(USER, &key("rsa1024.pub"), &[]),
            "1024 bits is too weak",
        ),
        (
            create(USER, &key("hollow.pub"), &[]),
            "not a complete ssh-ed25519 key",
        ),
        (
            create(USER, "/dev/zero", &[]),
            "/dev/zero is not a regular file: not a public key file",
        ),
        (
            create(USER, &good, &["--target", "m1"]),
            "--target needs an Incus cluster",
        ),
        (
            create(USER, &good, &["--target", "m1;x"]),
            "is not a cluster member or @group name",
        ),
        (
            vec!["move".into(), USER.into(), "--target".into(), "m1".into()],
            "does not exist",
        ),
        (create(USER, &good, &["--disk", "abc"]), "invalid size"),
        (create(USER, &good, &["--disk", "0"]), "invalid size"),
        (create(USER, &good, &["--memory=-5GB"]), "invalid size"),
        (
            create(USER, &good, &["--template", "gpu"]),
            "unknown template \"gpu\"",
        ),
        (
            create(USER, &good, &["--image", "missing"]),
            "image \"missing\" is not available: Image not found",
        ),
        (
            vec![
                "delete".into(),
                USER.into(),
                "--backup".into(),
                key("no-such-dir"),
            ],
            "nothing to back up",
        ),
    ];
    for (args, why) in cases {
        s.clear_log();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.run(&argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        if !err.contains("Usage:") {
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        }
        assert!(
            !err.contains("c2VjcmV0"),
            "never echo a private key or a hash"
        );
        assert!(!err.contains("root:") && !err.contains("bin:"), "{err}");
        let mutating = s
            .log()
            .into_iter()
            .filter(|l| {
                // GETs only: a list, an image's info, `incus query` without -X.
                !l.starts_with("incus list")
                    && !l.starts_with("incus image info")
                    && (!l.starts_with("incus query") || l.contains(" -X"))
            })
            .collect::<Vec<_>>();
        assert!(mutating.is_empty(), "{args:?} ran {mutating:?}");
    }
    assert!(!s.path("root/etc/containarium").exists());
}

#[test]
fn incus_missing_or_down_says_how_to_fix_it() {
    let s = Sandbox::new(31);
    std::fs::remove_file(s.path("bin/incus")).unwrap();
    let out = s.run_with(&["list"], &[("PATH", s.path("bin").to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: incus is not installed: install it"),
        "{}",
        stderr(&out)
    );

    // What the real client prints when incusd is not running.
    std::fs::write(
        s.path("bin/incus"),
        "#!/bin/sh\necho 'Error: The incus daemon doesn'\\''t appear to be started \
         (socket path: /var/lib/incus/unix.socket)' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        s.path("bin/incus"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = s.run(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: the Incus daemon is not running: start it with"),
        "{}",
        stderr(&out)
    );

    let s = Sandbox::new(32);
    let out = s.run_with(&["list"], &[("FAKE_FAIL", "incus list")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown incus failure is not a refusal"
    );
    assert!(
        stderr(&out).contains(
            "`incus list --format json` failed with exit code 1: Error: injected failure"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn refuses_to_run_unprivileged() {
    let s = Sandbox::new(33);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_containarium"),
            "list",
        ])
        .env("FAKE_LOG", s.path("log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: containarium must run as root: try `sudo containarium ...`\n"
    );
}

#[test]
fn delete_backs_up_first_and_deletes_nothing_when_that_fails() {
    let s = Sandbox::new(40);
    assert!(s.create().status.success());
    let backups = s.path("backups");
    std::fs::create_dir(&backups).unwrap();
    let b = backups.to_str().unwrap();

    // No backup key: refused before anything, naming host init.
    let out = s.run(&["delete", USER, "--force", "--backup", b]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).ends_with(&format!(
            "error: no backup key {}: `containarium host init` creates it (on a cluster, copy \
             it from another bastion first: every bastion needs the same key)\n",
            s.path("root/etc/containarium/backup.key").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(s.instance().is_some());
    let key = backup_key(&s);

    let out = s.run(&["delete", USER, "--backup", b]);
    assert_eq!(out.status.code(), Some(2), "no terminal, no --force");
    assert!(stderr(&out).contains("pass --force"));

    s.clear_log();
    let out = s.run_with(
        &["delete", USER, "--force", "--backup", b],
        &[("FAKE_FAIL", "incus export")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(s.instance().is_some(), "kept after a failed backup");
    assert!(
        s.log()
            .iter()
            .all(|l| !l.starts_with("incus delete") && !l.starts_with("userdel")),
        "{:?}",
        s.log()
    );

    s.clear_log();
    let out = s.run(&["delete", USER, "--force", "--backup", b]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = s.log();
    assert_eq!(
        log[0],
        format!("incus list --format json ^{USER}-container$")
    );
    // Exported into a private directory, then linked into place.
    assert!(
        log[1].starts_with(&format!(
            "incus export {USER}-container {b}/.containarium-backup-"
        )),
        "{log:?}"
    );
    assert_eq!(log[2..], [format!("incus delete --force {USER}-container")]);
    // The fake useradd made no real account, so the jump account is absent
    // here and only its key file goes.
    assert!(
        !s.path(&format!("root/etc/containarium/keys/{USER}"))
            .exists()
    );
    let mut names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        3,
        "the backup, its HMAC, its digest: {names:?}"
    );
    assert!(names[1].ends_with(".tar.gz.hmac"), "{names:?}");
    assert!(names[2].ends_with(".tar.gz.sha256"), "{names:?}");
    use std::os::unix::fs::PermissionsExt;
    for name in &names {
        let mode = std::fs::metadata(backups.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{name}: a backup holds host keys and /etc/shadow"
        );
    }
    // Authenticated with the backup key: HMAC-SHA256 of the whole file.
    assert_eq!(
        std::fs::read_to_string(backups.join(&names[1])).unwrap(),
        hmac_line(&key, b"fake backup\n")
    );
    // sha256sum's format, of the fake's "fake backup\n".
    assert_eq!(
        std::fs::read_to_string(backups.join(&names[2])).unwrap(),
        format!(
            "c1e8d1f4b4d7b5da5cdeb2f8a0fd76ee1c4f0e1b9e2f4c06c0d3e3a0b0f7f0fa  {}\n",
            names[0]
        )
        .replace(
            "c1e8d1f4b4d7b5da5cdeb2f8a0fd76ee1c4f0e1b9e2f4c06c0d3e3a0b0f7f0fa",
            &sha256_hex(b"fake backup\n")
        )
    );

    s.clear_log();
    let out = s.run(&["delete", USER, "--force"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), format!("nothing to delete for {USER}\n"));
}

#[test]
fn delete_lifts_a_full_quota_that_blocks_it() {
    let s = Sandbox::new(42);
    assert!(s.create().status.success());
    s.clear_log();
    let out = s.run_with(&["delete", USER, "--force"], &[("FAKE_QUOTA_FULL", "1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.log()[1..],
        [
            format!("incus delete --force {USER}-container"),
            format!("incus config device unset {USER}-container root size"),
            format!("incus delete --force {USER}-container"),
        ]
    );
    assert!(s.instance().is_none());
}

/// incusd, started again, starts what ran when it stopped in the
/// background: a delete that finds the instance running after all is tried
/// again (a create resuming after incusd stopped under it met this in CI).
#[test]
fn delete_tries_again_when_incusd_started_the_instance_behind_it() {
    let s = Sandbox::new(150);
    assert!(s.create().status.success());
    s.clear_log();
    let out = s.run_with(
        &["delete", USER, "--force"],
        &[("FAKE_STARTED_BEHIND", "1")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.log()[1..],
        [
            format!("incus delete --force {USER}-container"),
            format!("incus delete --force {USER}-container"),
        ]
    );
    assert!(s.instance().is_none());
}

/// delete takes the user's way in away before the container: when deleting
/// the container fails, the key file is gone already, and a rerun finishes.
#[test]
fn delete_revokes_first_and_a_rerun_finishes() {
    let s = Sandbox::new(43);
    assert!(s.create().status.success());
    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let out = s.run(&["delete", USER, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The fake useradd made no real account: only the key file is left of it.
    assert_eq!(
        stdout(&out),
        format!(
            "unchanged: jump account {USER} (absent)\n\
             1. remove the jump key file\n    rm -f {}\n\
             2. delete container {USER}-container\n    \
             incus delete --force {USER}-container\n",
            key_file.display()
        )
    );

    let out = s.run_with(
        &["delete", USER, "--force"],
        &[("FAKE_FAIL", "incus delete")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !key_file.exists(),
        "key file kept while the container is deleted"
    );
    assert!(s.instance().is_some());

    let out = s.run(&["delete", USER, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("deleted {USER}\n"));
    assert!(s.instance().is_none());
}

#[test]
fn delete_never_touches_what_containarium_did_not_make() {
    let s = Sandbox::new(41);
    let out = s.run(&["delete", "root", "--force", "--dry-run"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "unchanged: container root-container (absent)\nunchanged: host account root (not made by containarium; kept)\n"
    );
    // An instance with our name but without our metadata.
    std::fs::write(
        s.path("state/bob-container.json"),
        r#"{"name":"bob-container","status":"Running","config":{},"devices":{},"expanded_devices":{},"state":null}"#,
    )
    .unwrap();
    let out = s.run(&["delete", "bob", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: bob-container is not managed by containarium; not deleting it\n"
    );
}

/// Every file of the sandbox but the fakes' log and our locks, with its
/// contents: what a run that changes nothing leaves as it was.
fn files(s: &Sandbox) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(&path, out);
            } else if kind.is_file() {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(s.path("").as_path(), &mut out);
    out.retain(|path, _| !path.ends_with("log") && !path.starts_with(s.path("root/run")));
    out
}

/// A tenant network with IPv6 (our ACL is IPv4 only, and Incus's last
/// rule allows both families) is refused by every verb that puts a tenant
/// on it or keeps its guard, in one line naming Incus's fix, before
/// anything changes: create, restore, apply (dry run too), host init,
/// sync-accounts. The same verbs go ahead on the IPv4-only network.
#[test]
fn a_tenant_network_with_ipv6_is_refused_and_nothing_changes() {
    let s = Sandbox::new(122);
    let v6 = [("FAKE_IPV6", "fd42:7:8:9::1/64")];
    let refusal = "error: tenant network br0 gives tenants IPv6, which containarium does not \
                   filter (its ACL is IPv4 only): run `incus network set br0 ipv6.address=none`\n";
    let backup = backup_file(&s);
    let cohort = s.path("course.toml");
    std::fs::write(
        &cohort,
        format!("set = \"course\"\n[[user]]\nname = \"ctmtest-ann\"\nkeys = [\"{KEY}\"]\n"),
    )
    .unwrap();
    let cohort = cohort.to_str().unwrap();
    let create = s.create_args();
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    let refused = |args: &[&str]| {
        let before = files(&s);
        s.clear_log();
        let out = s.run_with(args, &v6);
        assert_eq!(stderr(&out), refusal, "{args:?}");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(files(&s), before, "{args:?} changed a file");
        for line in s.log() {
            assert!(
                line.starts_with("incus query ")
                    || line.starts_with("incus list ")
                    || line.starts_with("incus image ")
                    || line.starts_with("incus info")
                    || line.starts_with("sshd -T "),
                "{args:?} ran {line}"
            );
        }
    };
    refused(&create);
    refused(&[
        "create",
        USER,
        "--ssh-key",
        s.path("alice.pub").to_str().unwrap(),
        "--dry-run",
    ]);
    refused(&["host", "init"]);
    refused(&["host", "init", "--dry-run"]);
    refused(&["restore", &backup]);
    refused(&["apply", cohort]);
    refused(&["apply", cohort, "--dry-run"]);
    assert!(
        !s.path(&format!("root/etc/containarium/keys/{USER}"))
            .exists()
    );
    assert_eq!(s.instance(), None);

    // IPv4 only: the same verbs go ahead; an existing tenant's network
    // turning dual-stack stops sync-accounts (which keeps the guard) too.
    s.ok(&create);
    s.ok(&["host", "init"]);
    s.ok(&["sync-accounts"]);
    s.ok(&["apply", cohort, "--dry-run"]);
    // sync-accounts fails on it too, but only once every user is synced: a
    // network it cannot guard never holds back a revocation.
    std::fs::remove_file(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    let out = s.run_with(&["sync-accounts"], &v6);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.ends_with(refusal) && err.contains(&format!("write {USER}'s jump keys... done")),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(
        stdout(&out).starts_with("1 users checked"),
        "{}",
        stdout(&out)
    );
    assert!(
        s.path(&format!("root/etc/containarium/keys/{USER}"))
            .exists()
    );
    refused(&["host", "init"]);
    refused(&["apply", cohort]);
}

#[test]
fn host_init_is_idempotent_and_respects_foreign_files() {
    let s = Sandbox::new(50);
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["host", "init", "--dry-run"]);
    // The fake groupadd makes no real group, so that line depends on the host.
    let group = if host_has_group() {
        "unchanged: group containarium\n"
    } else {
        "1. create group containarium\n    groupadd --force --system -- containarium\n"
    };
    // The fake useradd makes no real account either: nothing to ask sshd -T.
    let expected = format!(
        "unchanged: key directory {}\nunchanged: sshd drop-in {}\n",
        s.path("root/etc/containarium/keys").display(),
        s.path(DROPIN).display()
    );
    let no_check =
        "unchanged: sshd policy check (no jump account to check with yet; create checks its own)\n";
    let out_text = stdout(&out);
    assert!(
        out_text.contains(&expected) && out_text.contains(group) && out_text.contains(no_check),
        "{out_text}"
    );
    refuses_foreign_file(&s, &["host", "init"], &s.path(DROPIN), "Match User x\n");
}

/// `host init` makes the backup key once: 32 bytes, 0600; later runs leave
/// it as it is, and one that is not root's alone is refused in one line.
#[test]
fn host_init_makes_the_backup_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new(121);
    let key = s.path("root/etc/containarium/backup.key");
    let out = s.run(&["host", "init", "--dry-run"]);
    assert!(
        stdout(&out).contains(&format!(
            "create the backup key {}\n    # 32 random bytes from /dev/urandom, 0600 root",
            key.display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(!key.exists(), "a dry run makes nothing");
    s.ok(&["host", "init"]);
    let first = std::fs::read(&key).unwrap();
    assert_eq!(first.len(), 32);
    assert_ne!(first, [0u8; 32]);
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = s.ok(&["host", "init", "--dry-run"]);
    assert!(
        stdout(&out).contains(&format!("unchanged: backup key {}\n", key.display())),
        "{}",
        stdout(&out)
    );
    s.ok(&["host", "init"]);
    assert_eq!(std::fs::read(&key).unwrap(), first, "never overwritten");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["host", "init"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: backup key {} is mode 0644: it must be a regular file of 32 random bytes, \
             owned by root, mode 0600\n",
            key.display()
        )
    );
    assert_eq!(std::fs::read(&key).unwrap(), first);
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(s.path("x"), &key).unwrap();
    let out = s.run(&["host", "init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a regular file"),
        "{}",
        stderr(&out)
    );
}

/// `host init --harden` writes the hardening drop-in and validates it; a
/// later `host init` keeps it; a file of that name that is not ours is
/// refused, untouched.
#[test]
fn host_init_harden_writes_keeps_and_respects_foreign_files() {
    let s = Sandbox::new(116);
    let hardening = s.path("root/etc/ssh/sshd_config.d/00-containarium-hardening.conf");
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!hardening.exists(), "hardening only when asked for");
    let out = s.run(&["host", "init", "--harden"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&hardening).unwrap();
    assert!(text.starts_with("# Managed by containarium"), "{text}");
    assert!(
        text.contains("\nKexAlgorithms -ecdh-sha2-*,diffie-hellman-*\n"),
        "{text}"
    );
    assert!(
        s.log().contains(&format!(
            "sshd -t -f {}",
            s.path("root/etc/ssh/sshd_config").display()
        )),
        "{:?}",
        s.log()
    );
    let out = s.run(&["host", "init", "--dry-run"]);
    assert!(
        stdout(&out).contains(&format!(
            "unchanged: sshd hardening drop-in {} (kept; `host init --harden` updates it)\n",
            hardening.display()
        )),
        "{}",
        stdout(&out)
    );
    let out = s.run(&["host", "init", "--harden", "--dry-run"]);
    assert!(
        stdout(&out).contains(&format!(
            "unchanged: sshd hardening drop-in {}\n",
            hardening.display()
        )),
        "{}",
        stdout(&out)
    );

    refuses_foreign_file(
        &s,
        &["host", "init", "--harden"],
        &hardening,
        "Ciphers aes128-cbc\n",
    );
}

/// `args` refuse a `text` at our `path` that we did not write, in one line
/// with exit 2, and leave it as it was.
fn refuses_foreign_file(s: &Sandbox, args: &[&str], path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let out = s.run(args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was not written by containarium"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(path).unwrap(), text);
}

/// host init raises the kernel limits a host of many containers needs, only
/// ever upwards, through its sysctl.d file; a host already there is left
/// alone, and a file of that name that is not ours is refused.
#[test]
fn host_init_raises_kernel_limits_only_upwards() {
    let s = Sandbox::new(117);
    let proc_sys = s.path("root/proc/sys");
    let set = |key: &str, value: &str| {
        let path = proc_sys.join(key.replace('.', "/"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{value}\n")).unwrap();
    };
    // Stock Debian 12, but a neighbour table the admin made larger.
    set("fs.inotify.max_user_instances", "128");
    set("kernel.keys.maxkeys", "200");
    set("net.ipv4.neigh.default.gc_thresh3", "16384");
    std::fs::create_dir_all(s.path("root/etc/sysctl.d")).unwrap();
    let file = s.path("root/etc/sysctl.d/60-containarium.conf");
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    for line in [
        "\nfs.inotify.max_user_instances = 1048576\n",
        "\nkernel.keys.maxkeys = 20000\n",
        "\nnet.ipv4.neigh.default.gc_thresh3 = 16384\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    assert!(!text.contains("ipv6"), "a key this kernel lacks: {text}");
    let apply = format!("sysctl -q -p {}", file.display());
    assert!(s.log().contains(&apply), "{:?}", s.log());

    // Control: at our values already, nothing is applied.
    set("fs.inotify.max_user_instances", "1048576");
    set("kernel.keys.maxkeys", "20000");
    s.clear_log();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !s.log().iter().any(|l| l.starts_with("sysctl")),
        "{:?}",
        s.log()
    );

    refuses_foreign_file(&s, &["host", "init"], &file, "kernel.keys.maxkeys = 100\n");
}

/// The drop-in moves to 00-containarium.conf: ours under the old name goes,
/// someone else's file of that name stays.
#[test]
fn host_init_migrates_the_old_dropin_name() {
    let s = Sandbox::new(51);
    let old = s.path("root/etc/ssh/sshd_config.d/containarium.conf");
    std::fs::write(
        &old,
        "# Managed by containarium: old version\nMatch Group containarium\n",
    )
    .unwrap();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!old.exists(), "our old drop-in left behind");
    assert!(
        std::fs::read_to_string(s.path(DROPIN))
            .unwrap()
            .starts_with("# Managed by containarium")
    );
    assert!(
        s.log().contains(&format!(
            "sshd -t -f {}",
            s.path("root/etc/ssh/sshd_config").display()
        )),
        "{:?}",
        s.log()
    );

    // Control: a foreign file of the old name is not ours to remove.
    std::fs::write(&old, "PrintMotd no\n").unwrap();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&old).unwrap(), "PrintMotd no\n");
}

/// sshd applies the first matching Match block's value of each keyword: a
/// drop-in read before ours with a Match block is refused before anything
/// changes; the same block in a drop-in read after ours is fine.
#[test]
fn host_init_refuses_a_match_block_that_sshd_reads_before_ours() {
    let s = Sandbox::new(52);
    let hostile = "Match Address 10.0.0.0/8\n    ForceCommand internal-sftp\n";
    let dir = s.path("root/etc/ssh/sshd_config.d");
    std::fs::write(dir.join("0-hostile.conf"), hostile).unwrap();
    let out = s.run(&["host", "init"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: sshd_config.d/0-hostile.conf sorts before 00-containarium.conf and has a Match block: \
             it would override containarium's policy for jump accounts; move it after {} or remove it\n",
            s.path(DROPIN).display()
        )
    );
    assert!(!s.path(DROPIN).exists());
    assert!(s.log().is_empty(), "{:?}", s.log());
    // create refuses the same way, before making anything.
    let out = s.create();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(s.instance().is_none());

    // Control: sorting after ours (note "000-" > "00-c") it cannot win.
    std::fs::rename(dir.join("0-hostile.conf"), dir.join("000-hostile.conf")).unwrap();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.path(DROPIN).exists());

    // A Match block in sshd_config above the Include is refused too.
    std::fs::write(
        s.path("root/etc/ssh/sshd_config"),
        format!("{hostile}Include /etc/ssh/sshd_config.d/*.conf\n"),
    )
    .unwrap();
    let out = s.run(&["host", "init"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("sshd_config has a Match block above its Include"));
}

/// `create` proves with `sshd -T` that our policy is what sshd applies to
/// the new jump account; when another Match block wins for one address,
/// create fails in one line and undoes everything.
#[test]
fn create_refuses_when_sshd_would_not_apply_our_policy() {
    let s = Sandbox::new(53);
    let args = s.create_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run_with(&args, &[("FAKE_SSHD_T_HOSTILE", "addr=10.0.0.1")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let error_line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert_eq!(
        error_line,
        format!(
            "error: check sshd's effective policy for jump accounts failed: sshd would not apply \
             containarium's policy to jump account {USER} from 10.0.0.1: allowtcpforwarding is \"yes\", \
             not \"local\", forcecommand is \"internal-sftp\", not \"/usr/sbin/nologin\"; another Match \
             block wins (a drop-in sorting before 00-containarium.conf?)"
        )
    );
    let log = s.log();
    let at = log
        .iter()
        .position(|l| *l == sshd_t(&s, "10.0.0.1"))
        .unwrap();
    assert_eq!(
        log[at - 1],
        sshd_t(&s, "127.0.0.1"),
        "the control address passed first"
    );
    assert_eq!(
        log[at + 1..at + 3],
        [
            format!("userdel -- {USER}"),
            format!("incus delete --force {USER}-container")
        ]
    );
    assert!(s.instance().is_none());
    assert!(
        !s.path(&format!("root/etc/containarium/keys/{USER}"))
            .exists()
    );

    // Control: the same create with sshd applying our policy succeeds.
    let out = s.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The pid file is only trusted if it names root's sshd: a stale one that
/// names another process gets no signal; a root process named sshd does.
#[test]
fn host_init_reloads_only_an_sshd() {
    use std::os::unix::process::ExitStatusExt;
    let s = Sandbox::new(54);
    std::fs::copy("/bin/sleep", s.path("bin/sshd-listener")).unwrap();
    std::fs::copy("/bin/sleep", s.path("sshd")).unwrap();
    let pid_file = s.path("root/run/sshd.pid");

    let mut other = Command::new(s.path("bin/sshd-listener"))
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sshd is not running; it reads the drop-in when it starts"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        other.try_wait().unwrap().is_none(),
        "a non-sshd was signalled"
    );
    other.kill().unwrap();
    other.wait().unwrap();

    // Control: a root process whose name is sshd gets the SIGHUP.
    std::fs::remove_file(s.path(DROPIN)).unwrap();
    let mut sshd = Command::new(s.path("sshd")).arg("60").spawn().unwrap();
    std::fs::write(&pid_file, format!("{}\n", sshd.id())).unwrap();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reload sshd... done"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sshd.wait().unwrap().signal(), Some(1));
}

#[test]
fn list_and_info_show_only_managed_containers() {
    let s = Sandbox::new(60);
    assert!(s.create().status.success());
    std::fs::write(
        s.path("state/other.json"),
        r#"{"name":"other","status":"Running","config":{},"devices":{},"expanded_devices":{},"state":null}"#,
    )
    .unwrap();
    let out = s.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "NAME                     USER           STATE    {:w$}  DISK   CPU  MEMORY  AUTOSTART  EXPIRES  IDLE\n\
             {USER}-container  {USER}  running  {}  20GiB  2    2GiB    yes        -        -\n",
            "IPV4",
            s.ip,
            w = s.ip.len()
        )
    );
    let out = s.run(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["ipv4"], s.ip.as_str());

    let out = s.run(&["info", USER, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["keys"][0]["fingerprint"],
        "SHA256:ayAPUQQNzI1tTUO/8YYvKGWorssV1d8Biuj0REvoqu8"
    );
    assert_eq!(info["disk_quota"], "20GiB");
    assert_eq!(info["state"], "running");
}

#[test]
fn export_pins_both_host_keys() {
    let s = Sandbox::new(70);
    assert!(s.create().status.success());
    let out = s.run(&[
        "export",
        USER,
        "--jump-ip",
        "203.0.113.5",
        "--jump-port",
        "2222",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Host {USER}-dev\n    HostName {}\n    User {USER}\n    ProxyJump {USER}-jump\n",
            s.ip
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "KnownHostsCommand /bin/echo \"{USER}-jump {BASTION_KEY}\""
        )),
        "{text}"
    );
    assert!(text.contains(&format!("KnownHostsCommand /bin/echo \"{USER}-dev ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi\"")), "{text}");
    assert!(!text.contains("ProxyCommand"));
    let out = s.run(&["export", USER, "--jump-ip", "evil\nHost *"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_text_is_complete() {
    let out = Command::new(env!("CARGO_BIN_EXE_containarium"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&out);
    for verb in ["create", "list", "info", "delete", "export", "host"] {
        assert!(help.contains(verb), "{help}");
    }
}

const KEY2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxi/houQk8nrifMCrBdnv6dlhYQFLLHs2gMxuNFDtup alice@desktop";

#[test]
fn resize_changes_limits_live_and_never_shrinks_below_use() {
    let s = Sandbox::new(80);
    assert!(s.create().status.success());
    s.clear_log();
    let out = s.run(&[
        "resize",
        USER,
        "--disk",
        "40GiB",
        "--cpu",
        "4",
        "--memory",
        "4GiB",
        "--processes",
        "10000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.log()[1..],
        [
            format!("incus config device set {USER}-container root size=40GiB"),
            format!(
                "incus config set {USER}-container limits.cpu=4 limits.memory=4GiB \
                 limits.processes=10000"
            ),
            format!("incus list --format json ^{USER}-container$"),
        ]
    );
    assert_eq!(
        stdout(&out),
        "disk      20GiB -> 40GiB\ncpu       2 -> 4\nmemory    2GiB -> 4GiB\n\
         processes 4096 -> 10000\n"
    );
    // Below what a container needs to boot and log in: refused by the parser.
    let out = s.run(&["resize", USER, "--processes", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("10 is not in 64.."),
        "{}",
        stderr(&out)
    );

    s.clear_log();
    let out = s.run(&["resize", USER, "--disk", "512MiB"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: {USER}-container uses 1.0GiB of disk; it cannot shrink to 512MiB\n")
    );
    let out = s.run(&["resize", USER]);
    assert_eq!(
        stderr(&out),
        "error: nothing to change: give --disk, --cpu, --memory or --processes\n"
    );
    assert_eq!(s.log().len(), 1, "only the probe ran: {:?}", s.log());
}

#[test]
fn keys_change_container_jump_file_and_metadata_together() {
    let s = Sandbox::new(81);
    assert!(s.create().status.success());
    std::fs::write(s.path("desk.pub"), format!("{KEY2}\n")).unwrap();
    s.clear_log();
    let out = s.run(&["keys", "add", USER, s.path("desk.pub").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = s.log();
    assert!(
        log.contains(&format!(
            "incus file push --create-dirs --uid 1000 --gid 1000 --mode 0600 - {USER}-container/home/{USER}/.ssh/authorized_keys"
        )),
        "{log:#?}"
    );
    let inst = s.instance().unwrap();
    let pushed = inst["files"][format!("/home/{USER}/.ssh/authorized_keys")]
        .as_str()
        .unwrap();
    assert_eq!(pushed, format!("{KEY}\n{KEY2}\n"));
    assert_eq!(
        inst["config"]["user.containarium.keys"],
        format!("{KEY}\n{KEY2}\n")
    );
    let jump =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    assert!(
        jump.contains(&format!("permitopen=\"{}:22\" {KEY2}", s.ip)),
        "{jump}"
    );

    let out = s.run(&["keys", "list", USER]);
    assert_eq!(stdout(&out).lines().count(), 2);
    let out = s.run(&["keys", "remove", USER, "alice@laptop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = s.instance().unwrap();
    assert_eq!(
        inst["files"][format!("/home/{USER}/.ssh/authorized_keys")],
        format!("{KEY2}\n")
    );
    let jump =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    assert!(!jump.contains(KEY), "{jump}");

    s.clear_log();
    let out = s.run(&["keys", "remove", USER, "alice@desktop"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("last key"));
    let out = s.run(&["keys", "remove", USER, "SHA256:nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        s.log().iter().all(|l| !l.contains("file push")),
        "refusals change nothing"
    );
}

#[test]
fn sync_accounts_rebuilds_key_files_from_metadata() {
    let s = Sandbox::new(82);
    assert!(s.create().status.success());
    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let written = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    std::fs::remove_file(s.path(DROPIN)).unwrap();
    s.clear_log();
    let out = s.run(&["sync-accounts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), written);
    assert!(s.path(DROPIN).exists());
    assert!(
        s.log()
            .iter()
            .any(|l| l.starts_with("useradd -K SUB_UID_COUNT=0") && l.ends_with(USER))
    );
    assert!(
        stdout(&out).starts_with("1 users checked"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn snapshots_and_power() {
    let s = Sandbox::new(83);
    assert!(s.create().status.success());
    s.clear_log();
    s.ok(&["snapshot", "create", USER, "before"]);
    let out = s.run(&["snapshot", "create", USER, "before"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = s.run(&["snapshot", "list", USER]);
    assert_eq!(stdout(&out), "before  2026-11-24T01:02:03Z\n");
    let out = s.run(&["snapshot", "restore", USER, "nope"]);
    assert_eq!(
        stderr(&out),
        format!("error: {USER}-container has no snapshot \"nope\"\n")
    );
    s.ok(&["snapshot", "restore", USER, "before"]);
    s.ok(&["snapshot", "delete", USER, "before"]);
    s.ok(&["stop", USER]);
    assert!(
        s.run(&["stop", USER]).status.success(),
        "stopping the stopped is fine"
    );
    s.ok(&["restart", USER]);
    // Reads aside; and the restore re-creates the jump account, which the
    // fake useradd never really made.
    let calls: Vec<String> = s
        .log()
        .into_iter()
        .filter(|l| {
            !l.starts_with("incus list")
                && !l.starts_with("incus snapshot list")
                && !l.starts_with("incus query")
                && !l.starts_with("useradd")
        })
        .collect();
    assert_eq!(
        calls,
        [
            format!("incus snapshot create {USER}-container before"),
            // Stopped first, so nothing of the snapshot runs before it is
            // re-authored (here it holds what the container holds now).
            format!("incus stop {USER}-container"),
            format!("incus snapshot restore {USER}-container before"),
            format!("incus start {USER}-container"),
            format!("incus snapshot delete {USER}-container before"),
            format!("incus stop {USER}-container"),
            format!("incus start {USER}-container"),
        ]
    );
}

/// The sandbox's backup key (what `host init` makes), written if absent.
fn backup_key(s: &Sandbox) -> Vec<u8> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = s.path("root/etc/containarium/backup.key");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(&[7u8; 32])
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::read(path).unwrap()
}

/// The `.hmac` line `backup` writes for these bytes under `key`.
fn hmac_line(key: &[u8], bytes: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(bytes);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("HMAC-SHA256 {hex}\n")
}

/// Writes `file`'s `.sha256` and `.hmac` as `backup` would.
fn seal(s: &Sandbox, file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", file.display()));
    std::fs::write(with("sha256"), format!("{}  {name}\n", sha256_hex(&bytes))).unwrap();
    std::fs::write(with("hmac"), hmac_line(&backup_key(s), &bytes)).unwrap();
}

/// A tarball at `file` of the tree `s.path(tree)`, members as given.
fn tarball(s: &Sandbox, tree: &str, file: &str, members: &[&str]) -> PathBuf {
    let file = s.path(file);
    let status = Command::new("tar")
        .args(["-czPf", file.to_str().unwrap(), "-C"])
        .arg(s.path(tree))
        .args(members)
        .status()
        .unwrap();
    assert!(status.success());
    file
}

/// A minimal export of USER's container: what restore reads of a tarball,
/// authenticated with the sandbox's backup key as `backup` writes it.
fn backup_file(s: &Sandbox) -> String {
    backup_file_with(s, serde_json::json!({}), serde_json::json!([]))
}

/// [`backup_file`] with `extra` merged into the container (`config`,
/// `devices` and `profiles` are merged key by key) and these snapshots.
/// backup.yaml is written as JSON, which is YAML too (the fake Incus reads
/// it with Python's json).
fn backup_file_with(s: &Sandbox, extra: serde_json::Value, snapshots: serde_json::Value) -> String {
    let tree = s.path("export");
    std::fs::create_dir_all(tree.join("backup/container")).unwrap();
    let mut container = serde_json::json!({
        "name": format!("{USER}-container"),
        "config": {
            "user.containarium.keys": format!("{KEY}\n"),
            "user.containarium.owner": USER,
            "user.containarium.state": "ready",
            "limits.cpu": "1",
            "limits.memory": "1GiB",
        },
        "devices": {
            "eth0": {"type": "nic", "name": "eth0", "network": "br0", "ipv4.address": s.ip},
            "root": {"type": "disk", "path": "/", "pool": "default", "size": "3GiB"},
        },
        "profiles": ["default"],
    });
    for (k, v) in extra.as_object().unwrap() {
        match (container.get_mut(k), v) {
            (Some(serde_json::Value::Object(have)), serde_json::Value::Object(more)) => {
                have.extend(more.clone())
            }
            _ => container[k] = v.clone(),
        }
    }
    let names: Vec<String> = snapshots
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("- {}\n", x["name"].as_str().unwrap()))
        .collect();
    std::fs::write(
        tree.join("backup/index.yaml"),
        format!(
            "name: {USER}-container\nbackend: btrfs\npool: default\noptimized: false\n\
             type: container\n{}",
            if names.is_empty() {
                String::new()
            } else {
                format!("snapshots:\n{}", names.concat())
            }
        ),
    )
    .unwrap();
    std::fs::write(
        tree.join("backup/container/backup.yaml"),
        serde_json::json!({"container": container, "snapshots": snapshots}).to_string(),
    )
    .unwrap();
    let file = tarball(s, "export", "alice.tar.gz", &["backup"]);
    seal(s, &file);
    file.to_str().unwrap().to_string()
}

/// A backup changed after `backup` wrote it (a member added, its digest
/// recomputed as sha256sum would, the old `.hmac` kept) is refused before
/// anything reads it: no `incus import`. The unchanged file restores; with
/// `--untrusted` the changed one does, with a warning.
#[test]
fn restore_refuses_a_backup_changed_after_backup_wrote_it() {
    let s = Sandbox::new(118);
    let file = PathBuf::from(backup_file(&s));
    let original_hmac = std::fs::read_to_string(format!("{}.hmac", file.display())).unwrap();
    std::fs::create_dir_all(s.path("export/backup/container/rootfs/etc")).unwrap();
    std::fs::write(s.path("export/backup/container/rootfs/etc/planted"), "x").unwrap();
    let edited = tarball(&s, "export", "edited.tar.gz", &["backup"]);
    seal(&s, &edited);
    let edited_text = edited.to_str().unwrap();
    std::fs::write(format!("{edited_text}.hmac"), &original_hmac).unwrap();

    let dry = s.run(&["restore", file.to_str().unwrap(), "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let plan = stdout(&dry);
    let auth = format!(
        "authenticate {} and check its members\n    # HMAC-SHA256 of {} with {} must match {}.hmac;",
        file.display(),
        file.display(),
        s.path("root/etc/containarium/backup.key").display(),
        file.display()
    );
    assert!(plan.contains(&auth), "{plan}");
    assert!(
        plan.find(&auth) < plan.find("incus import"),
        "authenticated before the import: {plan}"
    );

    s.clear_log();
    for hmac in [
        Some(original_hmac.as_str()),
        Some("HMAC-SHA256 not-hex\n"),
        None,
    ] {
        let hmac_file = format!("{edited_text}.hmac");
        match hmac {
            Some(text) => std::fs::write(&hmac_file, text).unwrap(),
            None => std::fs::remove_file(&hmac_file).unwrap(),
        }
        let out = s.run(&["restore", edited_text]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let why = match hmac {
            Some(t) if t == original_hmac => "fails its HMAC-SHA256 check",
            Some(_) => "is not one line `HMAC-SHA256 HEX`",
            None => ".hmac: nothing shows a bastion's containarium wrote it",
        };
        assert!(err.contains(why) && err.contains("--untrusted"), "{err}");
    }
    assert!(
        !s.log().iter().any(|l| l.starts_with("incus import")),
        "nothing imported: {:?}",
        s.log()
    );
    assert!(s.instance().is_none());

    // The control: the file as backup wrote it.
    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(s.path(&format!("state/{USER}-container.json"))).unwrap();

    // --untrusted: the changed one restores, with a warning, still held to
    // the allow-list.
    s.clear_log();
    let out = s.run(&["restore", edited_text, "--untrusted"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: --untrusted: {edited_text} is not authenticated"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        s.log().contains(&format!(
            "incus import --storage default -- {edited_text} {USER}-container"
        )),
        "{:?}",
        s.log()
    );
    std::fs::remove_file(s.path(&format!("state/{USER}-container.json"))).unwrap();
    let hostile = backup_file_with(
        &s,
        serde_json::json!({"config": {"security.privileged": "true"}}),
        serde_json::json!([]),
    );
    s.clear_log();
    let out = s.run(&["restore", &hostile, "--untrusted"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("config key security.privileged"),
        "{}",
        stderr(&out)
    );
    assert!(!s.log().iter().any(|l| l.starts_with("incus import")));

    // No key on this bastion: refused, naming host init.
    std::fs::remove_file(s.path("root/etc/containarium/backup.key")).unwrap();
    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`containarium host init` creates it"),
        "{}",
        stderr(&out)
    );
}

/// A backup is re-authored, not filtered: what it says of quotas, owner,
/// expiry, set, a key later work may add, or an `ssh` device onto an
/// address of the bastion's choosing is replaced by what `create` sets for
/// this user. `--dry-run` prints every command the restore will run.
#[test]
fn restore_re_authors_what_the_backup_says() {
    let s = Sandbox::new(151);
    let lying = serde_json::json!({
        "config": {
            "limits.cpu": "64",
            "limits.memory": "512GiB",
            "limits.processes": "1000000",
            "user.containarium.owner": "ctmtest-bob",
            "user.containarium.expires": "2000-01-01T00:00:00Z",
            "user.containarium.set": "workshop",
            "user.containarium.wake": "on",
            "user.containarium.image": "evil\nimage",
            "user.containarium.template": "default",
            "volatile.eth0.hwaddr": "10:66:6a:00:00:01",
        },
        "devices": {
            "root": {"type": "disk", "path": "/", "pool": "default", "size": "100TiB"},
            "ssh": {"type": "proxy", "listen": "tcp:169.254.169.254:80",
                    "connect": format!("tcp:{}:22", s.ip), "nat": "true"},
        },
    });
    let file = backup_file_with(&s, lying, serde_json::json!([]));
    let out = s.run(&["restore", &file, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    let c = format!("{USER}-container");
    for expected in [
        format!("incus import --storage default -- {file} {c}"),
        format!("incus config set {c} user.containarium.state=pending"),
        format!("incus config device remove {c} ssh"),
        format!("incus config unset {c} user.containarium.expires"),
        format!("incus config unset {c} user.containarium.image"),
        format!("incus config unset {c} user.containarium.set"),
        format!("incus config unset {c} user.containarium.wake"),
        format!("incus config device set {c} root size=20GiB"),
        format!("incus config unset {c} volatile.eth0.hwaddr"),
        format!("incus start {c}"),
        format!("incus config set {c} user.containarium.state=ready"),
    ] {
        assert!(
            plan.lines().any(|l| l.trim() == expected),
            "missing {expected} in\n{plan}"
        );
    }
    let set = plan
        .lines()
        .find(|l| {
            l.trim()
                .starts_with(&format!("incus config set {c} boot.autostart"))
        })
        .unwrap_or_else(|| panic!("no config set in\n{plan}"));
    for part in [
        "limits.cpu=2",
        "limits.memory=2GiB",
        "limits.processes=4096",
        &format!("user.containarium.owner={USER}"),
        &format!("user.containarium.jump-account={USER}"),
    ] {
        assert!(set.contains(part), "{part} not in {set}");
    }
    assert!(s.instance().is_none(), "a dry run changes nothing");
    assert!(!s.log().iter().any(|l| l.starts_with("incus import")));

    let out = s.run(&["restore", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("quotas from config.toml and the flags: cpu 2, memory 2GiB, disk 20GiB, processes 4096 (the backup had cpu 64, memory 512GiB, disk 100TiB, processes 1000000)"),
        "{}",
        stderr(&out)
    );
    let inst = s.instance().unwrap();
    let config = &inst["config"];
    assert_eq!(config["limits.cpu"], "2");
    assert_eq!(config["limits.processes"], "4096");
    assert_eq!(config["user.containarium.owner"], USER);
    for gone in [
        "user.containarium.expires",
        "user.containarium.set",
        "user.containarium.wake",
        "user.containarium.image",
        "volatile.eth0.hwaddr",
    ] {
        assert!(config.get(gone).is_none(), "{gone} kept: {inst}");
    }
    assert_eq!(config["user.containarium.template"], "default");
    assert!(inst["devices"].get("ssh").is_none(), "{inst}");
    assert_eq!(inst["devices"]["root"]["size"], "20GiB");
    let key_file =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    assert!(
        key_file.contains(&format!("permitopen=\"{}:22\"", s.ip)),
        "{key_file}"
    );
    // The admin's flags, not the file, set the quotas and the expiry.
    std::fs::remove_file(s.path(&format!("state/{c}.json"))).unwrap();
    let out = s.run(&[
        "restore",
        &file,
        "--cpu",
        "3",
        "--processes",
        "512",
        "--expires",
        "30d",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = s.instance().unwrap();
    assert_eq!(inst["config"]["limits.cpu"], "3");
    assert_eq!(inst["config"]["limits.processes"], "512");
    assert!(
        inst["config"].get("user.containarium.expires").is_some(),
        "{inst}"
    );
}

/// Incus builds the instance from backup.yaml but takes the pool and the
/// snapshot list from index.yaml: a file where they disagree is refused,
/// and so is an optimized backup, before anything is imported. A snapshot
/// holding what `create` never sets is refused; `--strip` deletes it.
#[test]
fn restore_holds_index_and_backup_yaml_to_each_other() {
    let s = Sandbox::new(152);
    let snap = |name: &str, config: serde_json::Value| serde_json::json!({"name": name, "config": config, "devices": {}, "profiles": ["default"]});
    let file = backup_file_with(
        &s,
        serde_json::json!({}),
        serde_json::json!([
            snap("good", serde_json::json!({})),
            snap(
                "bad",
                serde_json::json!({"raw.lxc": "lxc.apparmor.profile=unconfined"})
            )
        ]),
    );
    let out = s.run(&["restore", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("snapshot bad: config key raw.lxc")
            && stderr(&out).contains("--strip drops it and deletes snapshots bad"),
        "{}",
        stderr(&out)
    );
    assert!(s.instance().is_none());
    let out = s.run(&["restore", &file, "--strip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        s.log()
            .contains(&format!("incus snapshot delete {USER}-container bad")),
        "{:?}",
        s.log()
    );
    let names: Vec<String> = s.instance().unwrap()["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["good"]);
    std::fs::remove_file(s.path(&format!("state/{USER}-container.json"))).unwrap();

    // Each edit of index.yaml, sealed again (an admin's own --untrusted
    // file would not need it): refused before the import.
    let index = s.path("export/backup/index.yaml");
    let original = std::fs::read_to_string(&index).unwrap();
    for (edit, why) in [
        (
            original.replace("- bad\n", ""),
            "index.yaml and backup.yaml list different snapshots",
        ),
        (
            original.replace("pool: default", "pool: other"),
            "name different storage pools",
        ),
        (
            original.replace("optimized: false", "optimized: true"),
            "optimized (storage driver) backup",
        ),
        (
            original.replace(
                &format!("name: {USER}-container"),
                "name: ctmtest-bob-container",
            ),
            "index.yaml names",
        ),
        (
            original.replace("type: container", "type: virtual-machine"),
            "not a container's backup",
        ),
    ] {
        std::fs::write(&index, &edit).unwrap();
        let file = tarball(&s, "export", "alice.tar.gz", &["backup"]);
        seal(&s, &file);
        s.clear_log();
        let out = s.run(&["restore", file.to_str().unwrap(), "--strip"]);
        assert_eq!(out.status.code(), Some(2), "{edit}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{why}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(!s.log().iter().any(|l| l.starts_with("incus import")));
    }
}

/// A tenant network whose DHCP range is unset leases any address to whoever
/// asks first, so `create` refuses it, changing nothing; `host init` gives
/// DHCP the top of the subnet, and containers are pinned below it.
#[test]
fn host_init_keeps_dhcp_off_the_addresses_it_pins() {
    let s = Sandbox::with_hosts(153, 5);
    let unset = [("FAKE_DHCP_RANGES", "")];
    let args = s.create_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run_with(&args, &unset);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: tenant network br0 leases any address to whoever asks (ipv4.dhcp.ranges is \
         unset), so a tenant could lease the next one first: run `containarium host init`\n"
    );
    assert!(s.instance().is_none());
    assert!(
        !s.log()
            .iter()
            .any(|l| l.starts_with("incus init") || l.starts_with("useradd"))
    );
    let out = s.run_with(&["host", "init"], &unset);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        s.log().contains(
            &"incus network set br0 ipv4.dhcp.ranges=127.83.153.6-127.83.153.6".to_string()
        ),
        "{:?}",
        s.log()
    );
    let out = s.run_with(&args, &unset);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.instance().unwrap()["devices"]["eth0"]["ipv4.address"],
        "127.83.153.2"
    );
    let out = s.run_with(&["host", "init"], &unset);
    assert!(
        stderr(&out).contains("DHCP range of tenant network br0: unchanged"),
        "{}",
        stderr(&out)
    );
}

/// Members outside the export's `backup/` tree are refused before the
/// import, even in an authenticated file and with `--untrusted`.
#[test]
fn restore_refuses_members_outside_the_backup_tree() {
    let s = Sandbox::new(119);
    backup_file(&s);
    std::fs::write(s.path("x"), "x").unwrap();
    for (member, why) in [
        ("../x", "member \"../x\" has a .. component"),
        (
            "/etc/hostname",
            "member \"/etc/hostname\" is an absolute path",
        ),
    ] {
        let file = tarball(&s, "export", "outside.tar.gz", &["backup", member]);
        seal(&s, &file);
        for extra in [&[][..], &["--untrusted"][..]] {
            s.clear_log();
            let mut args = vec!["restore", file.to_str().unwrap()];
            args.extend(extra);
            let out = s.run(&args);
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(
                stderr(&out).ends_with(&format!(
                    "error: {}: {why}; nothing was imported\n",
                    file.display()
                )),
                "{}",
                stderr(&out)
            );
            assert!(!s.log().iter().any(|l| l.starts_with("incus import")));
        }
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn restore_brings_back_container_address_account_and_keys() {
    let s = Sandbox::new(84);
    let file = PathBuf::from(backup_file(&s));

    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("restored {USER}-container at {}\n", s.ip)
    );
    let key_file =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    assert!(key_file.contains(&format!("permitopen=\"{}:22\" {KEY}", s.ip)));
    let log = s.log();
    for expected in [
        format!(
            "incus import --storage default -- {} {USER}-container",
            file.display()
        ),
        format!("incus start {USER}-container"),
        format!(
            "incus config device set {USER}-container eth0 security.ipv4_filtering=true \
             security.mac_filtering=true security.port_isolation=true"
        ),
        format!("incus config set {USER}-container user.containarium.state=ready"),
    ] {
        assert!(log.contains(&expected), "missing {expected} in {log:#?}");
    }

    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "already exists: `containarium delete {USER}` first, or restore with --as USER"
        )),
        "{}",
        stderr(&out)
    );
    // Left pending by a restore that was killed: the refusal names the
    // command that cleans up.
    s.set_config(
        &format!("{USER}-container"),
        "user.containarium.state",
        "pending",
    );
    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).ends_with(&format!(
            "error: {USER}-container is pending: an earlier create or restore of {USER} was \
             interrupted; `containarium delete {USER} --force` removes it, then restore again\n"
        )),
        "{}",
        stderr(&out)
    );

    // A backup that asks for root on the host: refused key by key, before
    // anything is imported.
    std::fs::remove_file(s.path(&format!("state/{USER}-container.json"))).unwrap();
    let hostile = serde_json::json!({
        "config": {"security.privileged": "true"},
        "devices": {"host": {"type": "disk", "source": "/", "path": "/mnt"}},
    });
    let file = PathBuf::from(backup_file_with(&s, hostile, serde_json::json!([])));
    s.clear_log();
    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("config key security.privileged")
            && err.contains("device host (disk) is not one containarium makes"),
        "{err}"
    );
    assert!(!s.log().iter().any(|l| l.starts_with("incus import")));
    assert!(s.instance().is_none());
    // The control: the same backup with --strip comes back without them.
    let out = s.run(&["restore", file.to_str().unwrap(), "--strip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = s.instance().unwrap();
    assert!(
        inst["config"].get("security.privileged").is_none(),
        "{inst}"
    );
    assert!(inst["devices"].get("host").is_none(), "{inst}");
    std::fs::remove_file(s.path(&format!("state/{USER}-container.json"))).unwrap();
    let file = PathBuf::from(backup_file(&s));

    // A digest that does not match is refused before anything happens.
    let digest = s.path("alice.tar.gz.sha256");
    std::fs::write(&digest, format!("{}  alice.tar.gz\n", "0".repeat(64))).unwrap();
    s.clear_log();
    let out = s.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not match its digest"),
        "{}",
        stderr(&out)
    );
    assert!(!s.log().iter().any(|l| l.starts_with("incus import")));
    std::fs::write(
        &digest,
        format!(
            "{}  alice.tar.gz\n",
            sha256_hex(&std::fs::read(&file).unwrap())
        ),
    )
    .unwrap();
    // --as hands the container to a new person only with their own keys.
    let out = s.run(&["restore", file.to_str().unwrap(), "--as", "ctmtest-bob"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--ssh-key"), "{}", stderr(&out));
    std::fs::write(s.path("junk.tar.gz"), "not a tarball").unwrap();
    let out = s.run(&[
        "restore",
        s.path("junk.tar.gz").to_str().unwrap(),
        "--untrusted",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not an incus export"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_user_name_with_a_container_in_another_project_is_refused() {
    let s = Sandbox::new(90);
    // What `incus list --all-projects` shows of another project's tenant
    // of the same name (the fake keeps it in a file of another name).
    std::fs::write(
        s.path("state/team-b.json"),
        format!(
            r#"{{"name":"{USER}-container","project":"team-b","status":"Running",
            "config":{{"user.containarium.owner":"{USER}"}},"expanded_config":{{}},
            "devices":{{}},"expanded_devices":{{}},"state":null}}"#
        ),
    )
    .unwrap();
    let out = s.create();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {USER} already has a container in Incus project team-b ({USER}-container): one user name, one owner\n"
        )
    );
    assert!(
        !s.log()
            .iter()
            .any(|l| l.starts_with("incus init") || l.starts_with("useradd")),
        "nothing changed: {:?}",
        s.log()
    );

    // sync-accounts finds the same name owning a container here too (as
    // an older tool could have left it): no account is made for either.
    std::fs::write(
        s.path(&format!("state/{USER}-container.json")),
        format!(
            r#"{{"name":"{USER}-container","status":"Stopped",
            "config":{{"user.containarium.owner":"{USER}","user.containarium.keys":"{KEY}"}},
            "expanded_config":{{}},"devices":{{}},
            "expanded_devices":{{"eth0":{{"type":"nic","network":"br0","ipv4.address":"{}"}}}},"state":null}}"#,
            s.ip
        ),
    )
    .unwrap();
    s.clear_log();
    let out = s.run(&["sync-accounts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: {USER} is claimed in Incus projects default and team-b ({USER}-container); skipped"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        !s.log().iter().any(|l| l.starts_with("useradd")),
        "{:?}",
        s.log()
    );
    assert!(
        !s.path(&format!("root/etc/containarium/keys/{USER}"))
            .exists()
    );
}

/// What `keys add` and `info` did with a home of `-x-container/home/a`:
/// `incus file push - alice-container-x-container/home/a/...`, another
/// instance's file. A home must be an absolute, normalised path.
#[test]
fn a_hostile_home_in_the_containers_passwd_is_refused_and_changes_nothing() {
    let s = Sandbox::new(110);
    assert!(s.create().status.success());
    // The instance a home of `-x-container/...` would name.
    let victim = format!("{USER}-container-x-container");
    std::fs::write(
        s.path(&format!("state/{victim}.json")),
        format!(r#"{{"name":"{victim}","status":"Running","config":{{}},"devices":{{}},"expanded_devices":{{}},"state":null,"files":{{}}}}"#),
    )
    .unwrap();
    std::fs::write(s.path("desk.pub"), format!("{KEY2}\n")).unwrap();
    let desk = s.path("desk.pub");
    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let jump_before = std::fs::read_to_string(&key_file).unwrap();
    let victim_before = std::fs::read_to_string(s.path(&format!("state/{victim}.json"))).unwrap();
    let unnormalised = "is not a normalised path (empty, '.' or '..' components)";
    for (home, why) in [
        ("-x-container/home/a", "is not an absolute path"),
        ("/../../etc", unnormalised),
        ("/home/./a", unnormalised),
        ("/home//a", unnormalised),
    ] {
        s.tenant_writes(
            "/etc/passwd",
            &format!("root:x:0:0:root:/root:/bin/bash\n{USER}:x:1000:1000::{home}:/bin/bash\n"),
        );
        s.clear_log();
        let out = s.run(&["keys", "add", USER, desk.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{home}: {err}");
        assert_eq!(
            err,
            format!(
                "error: {USER}-container: {USER}'s home \"{home}\" in /etc/passwd {why}; \
                 nothing changed\n"
            ),
            "{home}"
        );
        let log = s.log();
        assert!(
            log.iter().all(|l| !l.contains("file push")
                && !l.contains("config set")
                && !l.contains(&victim)),
            "{home}: {log:#?}"
        );
    }
    let uid = format!("root:x:0:0:root:/root:/bin/bash\n{USER}:x:--mode:1000::/home/a:/bin/bash\n");
    s.tenant_writes("/etc/passwd", &uid);
    let out = s.run(&["keys", "add", USER, desk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("uid or gid in /etc/passwd is not a number"),
        "{}",
        stderr(&out)
    );

    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), jump_before);
    assert_eq!(
        std::fs::read_to_string(s.path(&format!("state/{victim}.json"))).unwrap(),
        victim_before
    );
    let inst = s.instance().unwrap();
    assert_eq!(inst["config"]["user.containarium.keys"], format!("{KEY}\n"));

    // The control: a normal home works, and writes into this container.
    s.tenant_writes(
        "/etc/passwd",
        &format!("root:x:0:0:root:/root:/bin/bash\n{USER}:x:1000:1000::/home/{USER}:/bin/bash\n"),
    );
    let out = s.run(&["keys", "add", USER, desk.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inst = s.instance().unwrap();
    assert_eq!(
        inst["files"][format!("/home/{USER}/.ssh/authorized_keys")],
        format!("{KEY}\n{KEY2}\n")
    );
}

#[test]
fn list_info_and_export_show_the_pinned_address_never_the_guests() {
    let s = Sandbox::new(111);
    assert!(s.create().status.success());
    // The tenant's guest claims another address on eth0.
    s.edit_instance(&format!("{USER}-container"), |inst| {
        inst["state"]["network"]["eth0"]["addresses"][0]["address"] = "10.197.83.99".into();
    });
    let list = stdout(&s.run(&["list"]));
    assert!(
        list.contains(&s.ip) && !list.contains("10.197.83.99"),
        "{list}"
    );
    let info = stdout(&s.run(&["info", USER]));
    assert!(
        info.contains(&format!("ipv4:         {}\n", s.ip)),
        "{info}"
    );
    let export = stdout(&s.run(&["export", USER, "--jump-ip", "bastion.example"]));
    assert!(export.contains(&format!("HostName {}\n", s.ip)), "{export}");
    assert!(!export.contains("10.197.83.99"), "{export}");

    // Without a pinned address: "-", and no export.
    s.edit_instance(&format!("{USER}-container"), |inst| {
        inst["expanded_devices"]["eth0"]
            .as_object_mut()
            .unwrap()
            .remove("ipv4.address");
    });
    let list = stdout(&s.run(&["list"]));
    assert!(
        list.contains(" running  -  ") && !list.contains("10.197.83.99"),
        "{list}"
    );
    let info = stdout(&s.run(&["info", USER]));
    assert!(info.contains("ipv4:         -\n"), "{info}");
    let json: serde_json::Value =
        serde_json::from_slice(&s.run(&["info", USER, "--json"]).stdout).unwrap();
    assert_eq!(json["ipv4"], serde_json::Value::Null);
    let out = s.run(&["export", USER, "--jump-ip", "bastion.example"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: {USER}-container has no pinned address (never finished creating?)\n")
    );
}

#[test]
fn export_refuses_a_hostile_host_key_and_never_writes_through_a_link() {
    let s = Sandbox::new(112);
    assert!(s.create().status.success());
    let export = |extra: &[&str]| {
        let mut argv = vec!["export", USER, "--jump-ip", "bastion.example"];
        argv.extend(extra);
        s.run(&argv)
    };
    // A file that already holds another user's export block.
    let shared = s.path("shared.conf");
    let other = "# containarium: bob's container, through the bastion b.\nHost bob-dev\n    HostName 10.1.1.1\n";
    std::fs::write(&shared, other).unwrap();
    let host_key = "/etc/ssh/ssh_host_ed25519_key.pub";
    for hostile in [
        "garbage\n".to_string(),
        format!("{KEY}\nProxyCommand sh -c 'touch /tmp/pwned'\n"),
        format!("{KEY}\rProxyCommand x\n"),
        format!("{KEY}\nHost *\n"),
        format!("{KEY2}\n{KEY}\n"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n".to_string(),
    ] {
        s.tenant_writes(host_key, &hostile);
        for extra in [&[][..], &["--output", shared.to_str().unwrap()][..]] {
            let out = export(extra);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{hostile:?}: {err}");
            assert!(
                err.starts_with(&format!("error: {USER}-container's {host_key}")),
                "{hostile:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                !err.contains("ProxyCommand") && !err.contains("garbage"),
                "{err}"
            );
            assert_eq!(stdout(&out), "", "{hostile:?}");
            assert_eq!(std::fs::read_to_string(&shared).unwrap(), other);
        }
    }

    // The control: a real host key, re-rendered without its comment,
    // appended after bob's block.
    s.tenant_writes(host_key, &format!("{KEY2}\n"));
    let out = export(&["--output", shared.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&shared).unwrap();
    assert!(text.starts_with(other), "{text}");
    let bare = KEY2.rsplit_once(' ').unwrap().0;
    assert!(
        text.contains(&format!(
            "KnownHostsCommand /bin/echo \"{USER}-dev {bare}\"\n"
        )),
        "{text}"
    );
    assert!(!text.contains("alice@desktop"), "{text}");

    // --output at a symlink: refused, the link and its target unchanged.
    let target = s.path("target");
    std::fs::write(&target, "# containarium: x\nsecret\n").unwrap();
    let link = s.path("link.conf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = export(&["--output", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: --output {} is a symbolic link: give the file itself; nothing changed\n",
            link.display()
        )
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "# containarium: x\nsecret\n"
    );
    // And at a file that an export did not write.
    let mine = s.path("mine.conf");
    std::fs::write(&mine, "Host mine\n").unwrap();
    let out = export(&["--output", mine.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("was not written by `containarium export`"));
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "Host mine\n");
}

#[test]
fn sync_accounts_skips_only_the_user_whose_keys_are_malformed() {
    let s = Sandbox::new(113);
    assert!(s.create().status.success());
    let bob = "ctmtest-bob";
    std::fs::write(
        s.path(&format!("state/{bob}-container.json")),
        serde_json::json!({
            "name": format!("{bob}-container"), "status": "Stopped",
            "config": {"user.containarium.owner": bob, "user.containarium.keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n"},
            "expanded_config": {"user.containarium.owner": bob, "user.containarium.keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n"},
            "devices": {}, "expanded_devices": {"eth0": {"ipv4.address": "10.197.83.5"}}, "state": null
        })
        .to_string(),
    )
    .unwrap();
    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let written = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let out = s.run(&["sync-accounts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: {bob}-container user.containarium.keys: the key data is not a complete ssh-ed25519 key; {bob} skipped"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), written);
    assert!(
        !s.path(&format!("root/etc/containarium/keys/{bob}"))
            .exists()
    );
    assert!(s.log().iter().all(|l| !l.ends_with(bob)), "{:#?}", s.log());
}

#[test]
fn snapshot_restore_reapplies_the_current_keys_unless_asked() {
    let s = Sandbox::new(114);
    assert!(s.create().status.success());
    std::fs::write(s.path("desk.pub"), format!("{KEY2}\n")).unwrap();
    s.ok(&["keys", "add", USER, s.path("desk.pub").to_str().unwrap()]);
    s.ok(&["snapshot", "create", USER, "both"]);
    // The laptop is lost: its key goes.
    s.ok(&["keys", "remove", USER, "alice@laptop"]);
    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let authorized = format!("/home/{USER}/.ssh/authorized_keys");
    let fingerprint = "SHA256:ayAPUQQNzI1tTUO/8YYvKGWorssV1d8Biuj0REvoqu8";

    let out = s.run(&["snapshot", "restore", USER, "both", "--dry-run"]);
    assert!(
        stdout(&out).contains(&format!(
            "re-apply the current keys to ~{USER}/.ssh/authorized_keys in {USER}-container\n"
        )),
        "{}",
        stdout(&out)
    );

    let out = s.run(&["snapshot", "restore", USER, "both"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: snapshot both holds keys removed since it was taken; re-applying the current keys \
             (--keep-snapshot-keys keeps them): {fingerprint} (alice@laptop)"
        )),
        "{}",
        stderr(&out)
    );
    let inst = s.instance().unwrap();
    assert_eq!(
        inst["config"]["user.containarium.keys"],
        format!("{KEY2}\n")
    );
    assert_eq!(inst["files"][&authorized], format!("{KEY2}\n"));
    let jump = std::fs::read_to_string(&key_file).unwrap();
    assert!(!jump.contains(KEY) && jump.contains(KEY2), "{jump}");

    // Asked to keep them: they are back, everywhere, with a warning.
    let out = s.run(&["snapshot", "restore", USER, "both", "--keep-snapshot-keys"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: snapshot both brought back keys removed since it was taken; they work again: {fingerprint} (alice@laptop)"
        )),
        "{}",
        stderr(&out)
    );
    let inst = s.instance().unwrap();
    assert_eq!(
        inst["config"]["user.containarium.keys"],
        format!("{KEY}\n{KEY2}\n")
    );
    assert_eq!(inst["files"][&authorized], format!("{KEY}\n{KEY2}\n"));
    assert!(std::fs::read_to_string(&key_file).unwrap().contains(KEY));
}

#[test]
fn a_template_or_config_file_that_is_not_root_s_alone_is_refused() {
    let s = Sandbox::new(115);
    let templates = s.path("root/etc/containarium/templates");
    std::fs::create_dir_all(templates.join("default.toml")).unwrap();
    let out = s.create();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: template {} is not a regular file: it must be root's alone\n",
            templates.join("default.toml").display()
        )
    );
    std::fs::remove_dir(templates.join("default.toml")).unwrap();
    // Templates run as root in every container: like config.toml, an
    // override and its directory are root's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let default = templates.join("default.toml");
    std::fs::write(&default, "shell = \"/bin/bash\"\n").unwrap();
    mode(&default, 0o664);
    let out = s.create();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: template {} is writable by group or others: it must be root's alone (chown root; chmod go-w)\n",
            default.display()
        )
    );
    std::fs::remove_file(&default).unwrap();
    mode(&templates, 0o777);
    let out = s.create();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: template directory {} is writable by group or others: it must be root's alone (chown root; chmod go-w)\n",
            templates.display()
        )
    );
    mode(&templates, 0o755);
    assert!(s.instance().is_none());

    let config = s.path("config.toml");
    std::fs::write(&config, "cpu = 1\n").unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let key = s.path("alice.pub");
    let argv = [
        "create",
        USER,
        "--ssh-key",
        key.to_str().unwrap(),
        "--image",
        "local:dev",
    ];
    let out = s.run_with(&argv, &[("CONTAINARIUM_CONFIG", config.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: config file {} is writable by group or others: it must be root's alone (chown root; chmod go-w)\n",
            config.display()
        )
    );
    assert!(s.instance().is_none());
    // The control: the same file, root's alone, is used.
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = s.run_with(&argv, &[("CONTAINARIUM_CONFIG", config.to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.instance().unwrap()["config"]["limits.cpu"], "1");
}

#[test]
fn mutating_verbs_probe_only_under_our_lock_and_say_who_holds_it() {
    let s = Sandbox::new(91);
    assert!(s.create().status.success());
    let lock_path = s.path("root/run/containarium.lock");
    let mut holder = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.lock().unwrap();
    holder.write_all(b"4242 containarium delete bob").unwrap();
    for verb in [
        vec!["sync-accounts"],
        vec!["delete", USER, "--force"],
        vec!["keys", "remove", USER, "alice@laptop"],
        vec!["stop", USER],
    ] {
        s.clear_log();
        let mut child = s
            .command(&verb, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
        assert!(child.try_wait().unwrap().is_none(), "{verb:?} did not wait");
        // What it plans from is read only once it holds the lock.
        assert_eq!(
            s.log(),
            Vec::<String>::new(),
            "{verb:?} probed before the lock"
        );
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            stderr(&out).contains(
                "(held by pid 4242, containarium delete bob: another containarium is running)"
            ),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
    drop(holder);
    s.ok(&["stop", USER]);
}

/// `audit` on the real auth log of the e2e suite `audit`
/// (tests/fixtures/auth.log), its first user renamed to ours: one record
/// per session and refusal, the container and its pinned address from
/// Incus. Names from the log are data: one that is a path to our user's key
/// file, and root (an account that is not a jump account), are not
/// reported, while our user is (the control).
#[test]
fn audit_joins_the_auth_log_with_incus_and_reports_only_jump_accounts() {
    let s = Sandbox::new(61);
    assert!(s.create().status.success());
    let out = s.run(&["audit"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no sshd log here: journald is not running"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth.log");
    let mut log = std::fs::read_to_string(fixture)
        .unwrap()
        .replace("e2e-audit-a", USER);
    for user in [format!("../keys/{USER}"), "root".to_string()] {
        log.push_str(&format!(
            "2026-12-01T13:50:40.000000+00:00 vm sshd[9]: Connection closed by authenticating user {user} 127.0.0.1 port 4444 [preauth]\n"
        ));
    }
    std::fs::create_dir_all(s.path("root/var/log")).unwrap();
    std::fs::write(s.path("root/var/log/auth.log"), log).unwrap();
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = s.ok(args);
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let all = json(&["audit", "--json"]);
    assert_eq!(all.len(), 6, "{all:#?}");
    assert!(all.iter().all(|r| r["user"] == USER), "{all:#?}");
    let session = &all[0];
    for (field, expected) in [
        ("kind", serde_json::json!("session")),
        ("from", "127.0.0.1:60956".into()),
        ("from_addr", "127.0.0.1".into()),
        ("from_port", 60956.into()),
        ("container", format!("{USER}-container").into()),
        ("to", format!("{}:22", s.ip).into()),
        (
            "fingerprint",
            "SHA256:qgBCAZ+tXkX+MUCoHtAcXVFslfmm1GpZloZE8jlBjdA".into(),
        ),
        ("started", "2026-12-01T13:50:21Z".into()),
        ("ended", "2026-12-01T13:50:24Z".into()),
        ("duration_s", 2.312225.into()),
        ("end", "disconnected".into()),
        ("detail", "disconnected by user".into()),
        ("reason", serde_json::Value::Null),
        ("target", serde_json::Value::Null),
    ] {
        assert_eq!(session[field], expected, "{field} of {session:#}");
    }
    let reasons: Vec<&str> = all.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(
        reasons,
        ["key-refused", "forward-denied", "session-refused"]
    );
    let denied = &all[3];
    assert_eq!(denied["target"], "10.197.83.3:22");
    assert_eq!(denied["target_host"], "10.197.83.3");
    assert_eq!(denied["target_port"], 22);
    assert_eq!(
        denied["to"],
        serde_json::Value::Null,
        "a refusal went nowhere"
    );
    assert_eq!(
        all[1]["fingerprint"],
        "SHA256:pT4/U8aiNYznoDuj94vQMiIICKD5htIMGIa7hjv4HGs"
    );

    // Asked for by name, a user without a jump account is shown (it may
    // have been deleted since), without a container.
    let b = json(&["audit", "e2e-audit-b", "--json"]);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["container"], serde_json::Value::Null);
    assert!(
        json(&["audit", "root", "--json"]).len() == 1,
        "the control of root"
    );

    // The window: by start time.
    let window = json(&[
        "audit",
        "--json",
        "--since",
        "2026-12-01 13:50:30",
        "--until",
        "2026-12-01T13:50:33.5Z",
    ]);
    let ports: Vec<u64> = window
        .iter()
        .map(|r| r["from_port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [34852, 34864]);

    let table = stdout(&s.ok(&["audit", USER]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("KIND     USER"), "{table}");
    assert!(
        lines[1].starts_with(&format!(
            "session  {USER}  127.0.0.1:60956  {USER}-container {}:22  2026-12-01T13:50:21Z  2.3s",
            s.ip
        )),
        "{table}"
    );
    assert_eq!(lines.len(), 7, "{table}");

    let out = s.run(&["audit", "--since", "2h", "--until", "3h"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = s.run(&["audit", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A drop-in written before `LogLevel VERBOSE` (what `audit` needs for the
/// keys of refused logins) is rewritten by `host init`; then it is
/// unchanged.
#[test]
fn host_init_adds_loglevel_verbose_to_an_older_dropin() {
    let s = Sandbox::new(62);
    let current = containarium::sshd::dropin(true, false);
    let older = current.replace("    LogLevel VERBOSE\n", "");
    assert_ne!(older, current);
    std::fs::write(s.path(DROPIN), &older).unwrap();
    let plan = stdout(&s.ok(&["host", "init", "--dry-run"]));
    assert!(plan.contains("install the sshd drop-in"), "{plan}");
    assert_eq!(std::fs::read_to_string(s.path(DROPIN)).unwrap(), older);
    s.ok(&["host", "init"]);
    assert_eq!(std::fs::read_to_string(s.path(DROPIN)).unwrap(), current);
    let again = stdout(&s.ok(&["host", "init", "--dry-run"]));
    assert!(again.contains("unchanged: sshd drop-in"), "{again}");
}

/// The sandbox's config.toml (root's, 0644, as the tool requires).
fn write_config(s: &Sandbox, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = s.path("root/etc/containarium/config.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn fail2ban_calls(s: &Sandbox) -> Vec<String> {
    s.log()
        .into_iter()
        .filter(|l| l.starts_with("fail2ban-client"))
        .collect()
}

const JAIL: &str = "root/etc/fail2ban/jail.d/containarium.conf";
const JAIL_SWITCH: &str = "root/etc/fail2ban/jail.d/containarium.local";
const FILTER: &str = "root/etc/fail2ban/filter.d/sshd.local";

/// `host init` writes our jail from the [fail2ban] table, with the port
/// sshd -T names, and reloads fail2ban only when a file changed and a
/// server answers; a file at our paths without our marker is refused
/// before anything is written; a bad value is one line naming the key.
#[test]
fn host_init_writes_the_fail2ban_jail_and_reloads_only_on_change() {
    let s = Sandbox::new(140);
    // Control: without fail2ban, host init works and warns.
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: fail2ban is not installed"),
        "{}",
        stderr(&out)
    );
    assert!(fail2ban_calls(&s).is_empty());

    for dir in ["root/etc/fail2ban/jail.d", "root/etc/fail2ban/filter.d"] {
        std::fs::create_dir_all(s.path(dir)).unwrap();
    }
    write_config(
        &s,
        "[fail2ban]\nmaxretry = 3\nignoreip = [\"35.191.0.0/16\", \"209.85.152.0/22\"]\n",
    );
    s.clear_log();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jail = std::fs::read_to_string(s.path(JAIL)).unwrap();
    for line in [
        "[sshd]\n",
        "mode = aggressive\n",
        "port = 22\n",
        "backend = polling\n",
        "logpath = /var/log/auth.log\n",
        "maxretry = 3\n",
        "ignoreself = false\n",
        "ignoreip = 35.191.0.0/16 209.85.152.0/22\n",
    ] {
        assert!(jail.contains(line), "{line:?} not in\n{jail}");
    }
    assert!(jail.starts_with("# Managed by containarium"));
    assert!(
        std::fs::read_to_string(s.path(JAIL_SWITCH))
            .unwrap()
            .ends_with("[sshd]\nenabled = true\n")
    );
    assert!(
        std::fs::read_to_string(s.path(FILTER))
            .unwrap()
            .contains("_daemon = sshd(?:-session)?\n")
    );
    assert_eq!(
        fail2ban_calls(&s),
        ["fail2ban-client ping", "fail2ban-client reload"]
    );
    assert!(
        s.log().contains(&format!(
            "sshd -T -f {}",
            s.path("root/etc/ssh/sshd_config").display()
        )),
        "the port came from sshd -T: {:?}",
        s.log()
    );

    // Debian's defaults-debian.conf sets only `enabled`, which our .local
    // overrides: no warning. The jail an older cloud-init wrote, a .local
    // read after our .conf, is warned about with the keys that win (not
    // `enabled`: "containarium-sshd.local" sorts before our .local).
    let jail_d = s.path("root/etc/fail2ban/jail.d");
    std::fs::write(
        jail_d.join("defaults-debian.conf"),
        "[sshd]\nenabled = true\n",
    )
    .unwrap();
    std::fs::write(
        jail_d.join("containarium-sshd.local"),
        "[DEFAULT]\nignoreip = 127.0.0.1/8\n\n[sshd]\nenabled = true\nbackend = systemd\nmode = aggressive\n",
    )
    .unwrap();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: {} sets backend, mode for [sshd] and is read after our jail",
            jail_d.join("containarium-sshd.local").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("defaults-debian"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(jail_d.join("containarium-sshd.local")).unwrap();

    // Nothing changed: no reload, not even a ping.
    s.clear_log();
    let out = s.run(&["host", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fail2ban_calls(&s).is_empty(), "{:?}", s.log());
    assert!(stderr(&out).contains(&format!(
        "fail2ban file {}: unchanged",
        s.path(JAIL).display()
    )));

    // A change with no server running: written, said, not reloaded.
    write_config(&s, "[fail2ban]\nenabled = false\nport = [22, 2222]\n");
    s.clear_log();
    let out = s.run_with(&["host", "init"], &[("FAKE_F2B_DOWN", "1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fail2ban-server is not running; it reads the jail when it starts"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fail2ban_calls(&s), ["fail2ban-client ping"]);
    assert!(
        std::fs::read_to_string(s.path(JAIL))
            .unwrap()
            .contains("port = 22,2222\n")
    );
    assert!(
        std::fs::read_to_string(s.path(JAIL_SWITCH))
            .unwrap()
            .ends_with("enabled = false\n")
    );

    // Someone else's file at our path: refused, nothing written at all.
    std::fs::remove_file(s.path(FILTER)).unwrap();
    std::fs::write(s.path(JAIL), "[sshd]\nenabled = true\n").unwrap();
    s.clear_log();
    let out = s.run(&["host", "init"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} exists and was not written by containarium; move it aside first\n",
            s.path(JAIL).display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(s.path(JAIL)).unwrap(),
        "[sshd]\nenabled = true\n"
    );
    assert!(!s.path(FILTER).exists(), "a refusal wrote the filter");
    assert!(fail2ban_calls(&s).is_empty());

    // Bad values are refused in one line naming the key.
    std::fs::remove_file(s.path(JAIL)).unwrap();
    for (config, key) in [
        (
            "[fail2ban]\nfindtime = \"10 minutes\"\n",
            "fail2ban.findtime",
        ),
        (
            "[fail2ban]\nignoreip = [\"10.0.0.0/8\\nbanaction = x\"]\n",
            "fail2ban.ignoreip",
        ),
        ("[fail2ban]\nbanaction = \"a b\"\n", "fail2ban.banaction"),
        ("[fail2ban]\nmaxretries = 3\n", "unknown field"),
    ] {
        write_config(&s, config);
        let out = s.run(&["host", "init"]);
        assert_eq!(out.status.code(), Some(2), "{config}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(key), "{config}: {err}");
        assert!(!s.path(JAIL).exists());
    }
}

/// The current time as rsyslog stamps it, from date(1).
fn log_stamp(ago_secs: u64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", now_secs() - ago_secs),
            "+%Y-%m-%dT%H:%M:%S.000000+00:00",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `security status` shows fail2ban's counts and bans and the accounts
/// that failed over the window; ban and unban go to fail2ban; an address
/// that is not banned, or not an address, is one line, exit 2; a missing
/// jail or server says how to fix it.
#[test]
fn security_status_ban_and_unban() {
    let s = Sandbox::new(141);
    let log = s.path("root/var/log/auth.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let (now, old) = (log_stamp(60), log_stamp(3 * 86_400));
    std::fs::write(
        &log,
        format!(
            "{now} vm sshd[1]: Connection closed by authenticating user alice 127.0.0.1 port 40001 [preauth]\n\
             {now} vm sshd[2]: Connection closed by authenticating user alice 127.0.0.1 port 40002 [preauth]\n\
             {now} vm sshd[3]: Invalid user admin from 203.0.113.9 port 40003\n\
             {old} vm sshd[4]: Connection closed by authenticating user root 203.0.113.9 port 40004 [preauth]\n"
        ),
    )
    .unwrap();

    let out = s.ok(&["security", "ban", "203.0.113.9"]);
    assert_eq!(stdout(&out), "banned 203.0.113.9\n");
    let out = s.ok(&["security", "ban", "203.0.113.9"]);
    assert_eq!(stdout(&out), "203.0.113.9 is already banned\n");

    let out = s.ok(&["security", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["currently_banned"], 1);
    assert_eq!(
        (
            status["currently_failed"].clone(),
            status["total_failed"].clone()
        ),
        (2.into(), 7.into())
    );
    assert_eq!(
        status["banned"],
        serde_json::json!([{"address": "203.0.113.9", "start": "2026-12-01 13:44:42",
                            "seconds": 3600, "end": "2026-12-01 14:44:42"}])
    );
    assert_eq!(
        status["failures"],
        serde_json::json!([{"account": "alice", "failures": 2}, {"account": "admin", "failures": 1}])
    );
    // A wider window reaches root's old failure.
    let out = s.ok(&["security", "status", "--json", "--since", "7d"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        status["failures"][2],
        serde_json::json!({"account": "root", "failures": 1})
    );
    let out = s.ok(&["security", "status"]);
    let text = stdout(&out);
    assert!(
        text.contains("203.0.113.9  2026-12-01 13:44:42  2026-12-01 14:44:42\n"),
        "{text}"
    );
    assert!(text.contains("       2  alice\n"), "{text}");

    let out = s.ok(&["security", "unban", "203.0.113.9"]);
    assert_eq!(stdout(&out), "unbanned 203.0.113.9\n");
    let out = s.run(&["security", "unban", "203.0.113.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: 203.0.113.9 is not banned in fail2ban's sshd jail\n"
    );
    s.clear_log();
    let out = s.run(&["security", "unban", "203.0.113.9; reboot"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: \"203.0.113.9; reboot\" is not an IP address\n"
    );
    assert!(fail2ban_calls(&s).is_empty(), "{:?}", s.log());

    let out = s.run_with(&["security", "status"], &[("FAKE_F2B_NO_JAIL", "1")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: fail2ban has no sshd jail: fail2ban is not set up for containarium; \
         `containarium host init` sets it up\n"
    );
    let out = s.run_with(&["security", "ban", "192.0.2.1"], &[("FAKE_F2B_DOWN", "1")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: fail2ban is not running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
}

/// `host doctor --json` on the sandbox: exit code, the JSON, and the names
/// of the checks that failed.
fn doctor(s: &Sandbox, env: &[(&str, &str)]) -> (i32, serde_json::Value, Vec<String>) {
    let out = s.run_with(&["host", "doctor", "--json"], env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    let failed = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    (out.status.code().unwrap(), json, failed)
}

/// Doctor's text report fails exactly `check`, on one line with a fix
/// holding `fix`, and ends in the one-line error and exit 1.
fn doctor_fails(s: &Sandbox, env: &[(&str, &str)], check: &str, fix: &str) {
    let out = s.run_with(&["host", "doctor"], env);
    let report = stdout(&out);
    let failed: Vec<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL ")?.split(':').next())
        .collect();
    assert_eq!(failed, [check], "{report}");
    assert_eq!(out.status.code(), Some(1));
    let line = report.lines().find(|l| l.starts_with("FAIL ")).unwrap();
    let (_, shown) = line.split_once("; fix: ").unwrap();
    assert!(shown.contains(fix), "{check}: fix {shown:?} lacks {fix:?}");
    assert_eq!(
        stderr(&out).trim_end(),
        format!("error: host doctor: {check} failed")
    );
}

/// A healthy fake host passes every check; each injected fault fails its
/// own check (and only that one) with its fix and exit 1; undone, doctor
/// passes again. The account database is the sandbox's /etc/passwd.
#[test]
fn host_doctor_passes_a_healthy_host_and_names_each_fault_with_its_fix() {
    let s = Sandbox::new(120);
    assert!(s.create().status.success());
    s.ok(&["host", "init"]);
    std::fs::write(
        s.path("root/etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/bash\n\
             {USER}:x:990:990:containarium jump account:/nonexistent:/usr/sbin/nologin\n"
        ),
    )
    .unwrap();
    std::fs::write(s.path("root/etc/group"), "root:x:0:\ncontainarium:x:990:\n").unwrap();
    std::fs::copy("/bin/sleep", s.path("sshd")).unwrap();
    let mut sshd = Command::new(s.path("sshd")).arg("60").spawn().unwrap();
    std::fs::write(s.path("root/run/sshd.pid"), format!("{}\n", sshd.id())).unwrap();
    // Our ACL lists this machine's own addresses, which change while other
    // test runs add and remove bridges: host init (changing nothing else
    // here, so no sshd reload) brings it up to date before each round.
    let passes = || {
        s.ok(&["host", "init"]);
        let (code, json, failed) = doctor(&s, &[]);
        assert_eq!(failed, Vec::<String>::new(), "{json:#}");
        assert_eq!((code, &json["ok"]), (0, &serde_json::json!(true)));
        json
    };
    let json = passes();
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "incus",
            "config",
            "sshd-running",
            "sshd-dropin",
            "sshd-policy",
            "key-dir",
            "key-files",
            "owners",
            "jump-accounts",
            "ssh-devices",
            "privilege",
            "quotas",
            "processes",
            "autostart",
            "nic-isolation",
            "dhcp-range",
            "tenant-acl",
            "tenant-ipv6",
            "storage",
            "fail2ban",
            "sshd-algorithms",
            "kernel-limits",
            "clock"
        ]
    );
    // Read-only: it ran only queries and status commands.
    s.clear_log();
    assert_eq!(doctor(&s, &[]).2, Vec::<String>::new());
    for line in s.log() {
        assert!(
            (line.starts_with("incus query ") && !line.contains(" -X "))
                || line.starts_with("incus list ")
                || line.starts_with("sshd -T ")
                || line == "fail2ban-client status sshd",
            "doctor ran {line}"
        );
    }

    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o646);
    let fix = format!("chmod go-w {}", key_file.display());
    doctor_fails(&s, &[], "key-files", &fix);
    // The same failure as JSON.
    let (code, json, _) = doctor(&s, &[]);
    assert_eq!((code, &json["ok"]), (1, &serde_json::json!(false)));
    let check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "key-files");
    assert_eq!(check.unwrap()["status"], "fail");
    assert_eq!(check.unwrap()["fix"], fix.as_str());
    mode(0o644);
    passes();

    let passwd = std::fs::read_to_string(s.path("root/etc/passwd")).unwrap();
    std::fs::write(
        s.path("root/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\n",
    )
    .unwrap();
    doctor_fails(&s, &[], "jump-accounts", "containarium sync-accounts");
    std::fs::write(s.path("root/etc/passwd"), &passwd).unwrap();
    passes();

    // Relabelled as another user's (a restored backup edited so): owners
    // fails it with the fix, and nothing else calls its user's files drifted.
    let container = format!("{USER}-container");
    s.set_config(&container, "user.containarium.owner", "ctmtest-bob");
    let fix = format!("incus config set {container} user.containarium.owner={USER}");
    doctor_fails(&s, &[], "owners", &fix);
    s.set_config(&container, "user.containarium.owner", USER);
    passes();

    // An `ssh` device off a cluster (one a snapshot brought back, say):
    // ssh-devices fails it; the key file is computed and still passes.
    s.edit_instance(&container, |inst| {
        let ssh = serde_json::json!({"type": "proxy", "listen": "tcp:127.0.0.1:18091",
                                     "connect": "tcp:127.83.120.2:22"});
        inst["devices"]["ssh"] = ssh.clone();
        inst["expanded_devices"]["ssh"] = ssh;
    });
    doctor_fails(
        &s,
        &[],
        "ssh-devices",
        &format!("incus config device remove {container} ssh"),
    );
    s.edit_instance(&container, |inst| {
        for devices in ["devices", "expanded_devices"] {
            inst[devices].as_object_mut().unwrap().remove("ssh");
        }
    });
    passes();

    s.edit_instance(&container, |inst| {
        inst["expanded_config"]["security.privileged"] = "true".into();
    });
    doctor_fails(
        &s,
        &[],
        "privilege",
        &format!("incus config unset {container} security.privileged"),
    );
    s.edit_instance(&container, |inst| {
        inst["expanded_config"]
            .as_object_mut()
            .unwrap()
            .remove("security.privileged");
    });
    passes();

    s.edit_instance(&container, |inst| {
        for config in ["config", "expanded_config"] {
            inst[config]
                .as_object_mut()
                .unwrap()
                .remove("limits.memory");
        }
    });
    doctor_fails(
        &s,
        &[],
        "quotas",
        &format!("containarium resize {USER} --memory 2GiB"),
    );
    s.edit_instance(&container, |inst| {
        inst["config"]["limits.memory"] = "2GiB".into();
        inst["expanded_config"]["limits.memory"] = "2GiB".into();
    });
    passes();

    // A tenant made before containarium set a process limit: doctor names
    // sync-accounts, which sets config.toml's, live, as a change.
    s.edit_instance(&container, |inst| {
        for config in ["config", "expanded_config"] {
            inst[config]
                .as_object_mut()
                .unwrap()
                .remove("limits.processes");
        }
    });
    doctor_fails(&s, &[], "processes", "containarium sync-accounts");
    s.clear_log();
    let out = s.run(&["sync-accounts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let set = format!("incus config set {container} limits.processes=4096");
    assert!(s.log().contains(&set), "{:?}", s.log());
    assert!(
        stderr(&out).contains(&format!("limit {container} to 4096 processes... done")),
        "{}",
        stderr(&out)
    );
    passes();
    // Once set, any value is the admin's: sync-accounts leaves it.
    s.ok(&["resize", USER, "--processes", "100000"]);
    s.clear_log();
    s.ok(&["sync-accounts"]);
    assert!(
        !s.log().iter().any(|l| l.contains("limits.processes")),
        "{:?}",
        s.log()
    );
    passes();

    s.edit_instance(&container, |inst| {
        inst["expanded_devices"]["eth0"]
            .as_object_mut()
            .unwrap()
            .remove("security.port_isolation");
    });
    doctor_fails(
        &s,
        &[],
        "nic-isolation",
        &format!("incus config device set {container} eth0 security.port_isolation=true"),
    );
    s.edit_instance(&container, |inst| {
        inst["expanded_devices"]["eth0"]["security.port_isolation"] = "true".into();
    });
    passes();

    let dropin = std::fs::read_to_string(s.path(DROPIN)).unwrap();
    std::fs::remove_file(s.path(DROPIN)).unwrap();
    doctor_fails(&s, &[], "sshd-dropin", "containarium host init");
    std::fs::write(s.path(DROPIN), &dropin).unwrap();
    passes();

    let hostile = format!("user={USER},addr=10.0.0.1");
    s.ok(&["host", "init"]);
    doctor_fails(
        &s,
        &[("FAKE_SSHD_T_HOSTILE", &hostile)],
        "sshd-policy",
        "containarium host init",
    );
    doctor_fails(
        &s,
        &[("FAKE_F2B", "nojail")],
        "fail2ban",
        "containarium host init",
    );
    doctor_fails(
        &s,
        &[("FAKE_POOL_USED", &(10u64 << 30).to_string())],
        "storage",
        "incus storage info default",
    );
    // IPv6 on the tenant network: Incus's fix, not host init's.
    doctor_fails(
        &s,
        &[("FAKE_IPV6", "fd42:7:8:9::1/64")],
        "tenant-ipv6",
        "incus network set br0 ipv6.address=none",
    );
    // Without a firewall driver the ACL guards nothing either.
    let (code, json, failed) = doctor(&s, &[("FAKE_FIREWALL", "")]);
    assert_eq!(
        (code, failed),
        (1, vec!["incus".into(), "tenant-acl".into()]),
        "{json:#}"
    );

    // Incus down: its check fails, the host's own checks still run, and
    // nothing about containers is guessed.
    let (code, json, failed) = doctor(&s, &[("FAKE_FAIL", "incus query /1.0")]);
    assert_eq!((code, failed), (1, vec!["incus".to_string()]), "{json:#}");
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "privilege")
    );
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "key-files")
    );

    let acl = std::fs::read(s.path("state/_acl.json")).unwrap();
    std::fs::remove_file(s.path("state/_acl.json")).unwrap();
    doctor_fails(&s, &[], "tenant-acl", "containarium host init");
    std::fs::write(s.path("state/_acl.json"), acl).unwrap();
    passes();

    sshd.kill().unwrap();
    sshd.wait().unwrap();
    doctor_fails(&s, &[], "sshd-running", "systemctl start ssh");
}

/// `incus snapshot restore` copies the snapshot's config and devices back.
/// A hostile one (as a backup file can carry it: an `ssh` proxy device
/// listening on the bastion, 64 CPUs, an older MAC and address, another
/// owner's set and a past expiry) is re-authored: every command shows in
/// the dry run, and afterwards the container is what it was before the
/// restore, with the jump key's `permitopen` computed from the pinned
/// address, never from the device.
#[test]
fn snapshot_restore_re_authors_what_a_hostile_snapshot_brings_back() {
    let s = Sandbox::new(205);
    assert!(s.create().status.success());
    let container = format!("{USER}-container");
    s.set_config(&container, "volatile.eth0.hwaddr", "10:66:6a:00:00:02");
    s.ok(&["snapshot", "create", USER, "evil"]);
    let before = s.instance().unwrap();
    s.edit_instance(&container, |inst| {
        let snap = &mut inst["snapshots"][0];
        let config = &mut snap["config"];
        config["limits.cpu"] = "64".into();
        config["volatile.eth0.hwaddr"] = "10:66:6a:00:00:01".into();
        config["user.containarium.set"] = "evil".into();
        config["user.containarium.expires"] = "2000-01-01T00:00:00Z".into();
        config["user.containarium.keys"] = format!("{KEY}\n{KEY2}\n").into();
        snap["devices"]["ssh"] = serde_json::json!({
            "type": "proxy", "listen": "tcp:127.0.0.1:18091", "connect": "tcp:127.83.205.2:22"});
        snap["devices"]["eth0"] = serde_json::json!({
            "type": "nic", "network": "br0", "ipv4.address": "127.83.205.3"});
    });
    let root = s.path("root").display().to_string();
    let plan =
        stdout(&s.ok(&["snapshot", "restore", USER, "evil", "--dry-run"])).replace(&root, "<root>");
    insta::assert_snapshot!(plan, @r"
    unchanged: ctmtest-alice's jump keys
    1. stop ctmtest-alice-container
        incus stop ctmtest-alice-container
    2. restore snapshot evil of ctmtest-alice-container
        incus snapshot restore ctmtest-alice-container evil
    3. ctmtest-alice-container as it is now, not as the snapshot has it: device remove ssh
        incus config device remove ctmtest-alice-container ssh
    4. ctmtest-alice-container as it is now, not as the snapshot has it: unset user.containarium.expires
        incus config unset ctmtest-alice-container user.containarium.expires
    5. ctmtest-alice-container as it is now, not as the snapshot has it: unset user.containarium.set
        incus config unset ctmtest-alice-container user.containarium.set
    6. ctmtest-alice-container as it is now, not as the snapshot has it: set limits.cpu user.containarium.keys
        incus config set ctmtest-alice-container limits.cpu=2 'user.containarium.keys=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop
    '
    7. ctmtest-alice-container as it is now, not as the snapshot has it: device set eth0 hwaddr ipv4.address security.ipv4_filtering security.mac_filtering security.port_isolation
        incus config device set ctmtest-alice-container eth0 hwaddr=10:66:6a:00:00:02 ipv4.address=127.83.205.2 security.ipv4_filtering=true security.mac_filtering=true security.port_isolation=true
    8. start ctmtest-alice-container
        incus start ctmtest-alice-container
    9. wait for sshd
        # read sshd's banner on 127.83.205.2:22 (at most 60s)
    10. re-apply the current keys to ~ctmtest-alice/.ssh/authorized_keys in ctmtest-alice-container
        # read ctmtest-alice's home from ctmtest-alice-container's /etc/passwd and its .ssh/authorized_keys as restored; `incus file push --create-dirs --uid '<uid>' --gid '<gid>' --mode 0600 - 'ctmtest-alice-container/<home>/.ssh/authorized_keys'` it back without the snapshot's other keys
    11. create jump account ctmtest-alice
        useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 --gid containarium --shell /usr/sbin/nologin --password '*' --no-create-home --home-dir /nonexistent --comment 'containarium jump account' -- ctmtest-alice
    ");
    // The dry run changed nothing.
    assert_eq!(s.instance().unwrap()["devices"], before["devices"]);

    s.clear_log();
    let out = s.ok(&["snapshot", "restore", USER, "evil"]);
    assert!(
        stderr(&out).contains("warning: snapshot evil holds keys removed since it was taken"),
        "{}",
        stderr(&out)
    );
    // Exactly the commands the dry run printed (reads and the jump account aside).
    let mutating: Vec<String> = s
        .log()
        .into_iter()
        .filter(|l| {
            !l.starts_with("incus list")
                && !l.starts_with("incus query")
                && !l.starts_with("incus snapshot list")
                && !l.starts_with("incus file pull")
                && !l.starts_with("useradd")
        })
        .collect();
    assert_eq!(
        mutating,
        [
            format!("incus stop {container}"),
            format!("incus snapshot restore {container} evil"),
            format!("incus config device remove {container} ssh"),
            format!("incus config unset {container} user.containarium.expires"),
            format!("incus config unset {container} user.containarium.set"),
            format!("incus config set {container} limits.cpu=2 user.containarium.keys={KEY}…"),
            format!(
                "incus config device set {container} eth0 hwaddr=10:66:6a:00:00:02 \
                 ipv4.address=127.83.205.2 security.ipv4_filtering=true \
                 security.mac_filtering=true security.port_isolation=true"
            ),
            format!("incus start {container}"),
            format!(
                "incus file push --create-dirs --uid 1000 --gid 1000 --mode 0600 - \
                 {container}/home/{USER}/.ssh/authorized_keys"
            ),
        ]
    );
    let after = s.instance().unwrap();
    assert!(after["devices"].get("ssh").is_none(), "{after:#}");
    assert!(after["expanded_devices"].get("ssh").is_none(), "{after:#}");
    for key in [
        "limits.cpu",
        "user.containarium.keys",
        "user.containarium.owner",
    ] {
        assert_eq!(after["config"][key], before["config"][key], "{key}");
    }
    for key in ["user.containarium.set", "user.containarium.expires"] {
        assert!(after["config"].get(key).is_none(), "{key}: {after:#}");
    }
    let eth0 = &after["devices"]["eth0"];
    assert_eq!(eth0["ipv4.address"], "127.83.205.2");
    assert_eq!(eth0["hwaddr"], "10:66:6a:00:00:02");
    assert_eq!(eth0["security.mac_filtering"], "true");
    assert_eq!(
        after["files"][&format!("/home/{USER}/.ssh/authorized_keys")],
        format!("{KEY}\n")
    );
    let jump =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap();
    assert!(
        jump.contains("permitopen=\"127.83.205.2:22\"") && !jump.contains("18091"),
        "{jump}"
    );

    // A device that is not ours, wherever it came from, is an error where
    // an endpoint is needed: one line, nothing changed.
    s.edit_instance(&container, |inst| {
        let ssh = serde_json::json!({"type": "proxy", "listen": "tcp:127.0.0.1:18091",
                                     "connect": "tcp:127.83.205.2:22"});
        inst["devices"]["ssh"] = ssh.clone();
        inst["expanded_devices"]["ssh"] = ssh;
    });
    std::fs::write(s.path("desk.pub"), format!("{KEY2}\n")).unwrap();
    let out = s.run(&["keys", "add", USER, s.path("desk.pub").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {container} has an `ssh` device (connect=tcp:127.83.205.2:22 \
             listen=tcp:127.0.0.1:18091 type=proxy), which containarium never adds off a cluster; \
             nothing changed (see `containarium host doctor`)\n"
        )
    );
    let out = s.run(&["sync-accounts"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("error: {USER}: {container} has an `ssh` device")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap(),
        jump
    );
    // A step that fails once the snapshot is restored: its config and
    // devices are made what they were before, and it is left stopped, never
    // started half re-authored.
    let out = s.run_with(
        &["snapshot", "restore", USER, "evil"],
        &[("FAKE_FAIL_ONCE", "incus config unset")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed = s.instance().unwrap();
    assert_eq!(failed["status"], "Stopped");
    assert_eq!(
        failed["config"]["limits.cpu"],
        before["config"]["limits.cpu"]
    );
    assert_eq!(failed["devices"]["eth0"]["ipv4.address"], "127.83.205.2");
    assert!(failed["devices"].get("ssh").is_none(), "{failed:#}");
    assert!(failed["config"].get("user.containarium.set").is_none());
    // A rerun restores and re-authors it again; then it starts.
    s.ok(&["snapshot", "restore", USER, "evil"]);
    assert!(s.instance().unwrap()["devices"].get("ssh").is_none());
    s.ok(&["start", USER]);
    s.ok(&["sync-accounts"]);
}
