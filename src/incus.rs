//! Incus, driven through its `incus` command line.
//!
//! Commands are built here as [`Cmd`] values (every one carries `--project`
//! when a project is selected); their output is parsed by pure functions
//! tested on captured real output. Everything Containarium knows about a
//! container lives in the instance's `user.containarium.*` config keys.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::Refused;
use crate::exec::{self, Cmd, CmdError, Output};

/// Config keys we own on an instance.
pub mod key {
    pub const OWNER: &str = "user.containarium.owner";
    pub const STATE: &str = "user.containarium.state";
    pub const TEMPLATE: &str = "user.containarium.template";
    pub const CREATED: &str = "user.containarium.created";
    pub const JUMP_ACCOUNT: &str = "user.containarium.jump-account";
    pub const DOCKER: &str = "user.containarium.docker";
    /// The user's public keys, one per line: what `sync-accounts` rebuilds
    /// the jump account's key file from when the bastion lost it.
    pub const KEYS: &str = "user.containarium.keys";
    /// The image the container was created from (for drift in `apply`).
    pub const IMAGE: &str = "user.containarium.image";
    /// The cohort (`apply`'s set) the container belongs to.
    pub const SET: &str = "user.containarium.set";
    /// When the container ends (RFC 3339, UTC): `reap` stops it then, and
    /// deletes it a grace period later.
    pub const EXPIRES: &str = "user.containarium.expires";
    /// When `expires` was last set (RFC 3339, UTC), by `create` or `apply`:
    /// `reap`'s grace period runs from the later of the two, so an expiry
    /// set in the past never deletes at once.
    pub const EXPIRES_SET: &str = "user.containarium.expires-set";
    /// How long without an SSH connection before `reap` stops it (`2h`).
    pub const IDLE_STOP: &str = "user.containarium.idle-stop";
    /// The last time `reap` saw an SSH connection to it (RFC 3339, UTC).
    pub const LAST_ACTIVE: &str = "user.containarium.last-active";
}

/// Whether listings warn of an instance whose recorded owner is not its
/// name's user: off for `host doctor`, which fails it as a check instead.
static OWNER_WARNINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Listings stop warning of misattributed instances (see [`Instance::foreign_owner`]).
pub fn silence_owner_warnings() {
    OWNER_WARNINGS.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// On a cluster, the `proxy` device that publishes a container's sshd on
/// its member's cluster address: the members' tenant bridges share one
/// subnet and have no path between them, so this is how every bastion
/// reaches every container. Its `listen` is the jump key's `permitopen`.
pub const PROXY_DEVICE: &str = "ssh";

/// The most we read of a file a guest wrote (/etc/passwd, authorized_keys, a
/// host key, cloud-init's status and log): far above any real one, far below
/// what would hurt the bastion.
pub const GUEST_FILE_LIMIT: usize = 4 << 20;

#[derive(Debug, Clone, Default)]
pub struct Incus {
    project: Option<String>,
}

impl Incus {
    pub fn new(project: Option<String>) -> Incus {
        Incus { project }
    }

    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// `incus [--project P] ARGS...`
    pub fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cmd = Cmd::new("incus");
        if let Some(project) = &self.project {
            cmd = cmd.args(["--project", project.as_str()]);
        }
        cmd.args(args)
    }

    /// `incus query PATH`, in our project: `query` takes the project as
    /// a URL parameter, never `--project`.
    pub fn query_cmd(&self, path: &str) -> Cmd {
        let path = match &self.project {
            Some(project) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}project={project}")
            }
            None => path.to_string(),
        };
        Cmd::new("incus").args(["query", path.as_str()])
    }

    /// What the server says of itself, from one `incus query /1.0`.
    pub fn server(&self) -> Result<Server> {
        let out = self.probe(&Cmd::new("incus").args(["query", "/1.0"]))?;
        let server: serde_json::Value =
            serde_json::from_str(&out.stdout).context("parsing `incus query /1.0`")?;
        let environment = &server["environment"];
        Ok(Server {
            firewall: environment["firewall"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            clustered: environment["server_clustered"].as_bool() == Some(true),
            name: environment["server_name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// The default profile's own config and devices.
    pub fn default_profile(&self) -> Result<Authored> {
        let out = self.probe(&self.query_cmd("/1.0/profiles/default"))?;
        serde_json::from_str(&out.stdout).context("parsing the default profile")
    }

    /// The default profile's root pool: where containers go when
    /// config.toml names none.
    pub fn default_pool(&self) -> Result<Option<String>> {
        Ok(self
            .default_profile()?
            .devices
            .get("root")
            .and_then(|d| d.get("pool"))
            .cloned())
    }

    /// The cluster's members with their state (`incus cluster list`).
    pub fn members(&self) -> Result<Vec<Member>> {
        let out = self.probe(&Cmd::new("incus").args(["cluster", "list", "--format", "json"]))?;
        serde_json::from_str(&out.stdout).context("parsing `incus cluster list --format json`")
    }

    /// The address a cluster member serves the cluster on, which is where
    /// its containers' sshd are published (see [`PROXY_DEVICE`]).
    pub fn member_address(&self, member: &str) -> Result<Ipv4Addr> {
        let path = format!("/1.0/cluster/members/{member}");
        let out = self.probe(&Cmd::new("incus").args(["query", path.as_str()]))?;
        let member: Member = serde_json::from_str(&out.stdout)
            .with_context(|| format!("parsing `incus query {path}`"))?;
        member.address()
    }

    pub fn list_cmd(&self, name: Option<&str>) -> Cmd {
        let mut cmd = self.cmd(["list", "--format", "json"]);
        if let Some(name) = name {
            // The filter is a regular expression; anchor it to the one name.
            cmd = cmd.arg(format!("^{name}$"));
        }
        cmd
    }

    /// Every instance in the project, with state, from one call.
    pub fn instances(&self) -> Result<Vec<Instance>> {
        self.listed(&self.list_cmd(None))
    }

    /// The instances `cmd` (a list or query) prints. Every listing goes
    /// through here, so every verb warns of an instance whose recorded
    /// owner disagrees with its name, once per run, as it skips it.
    pub fn listed(&self, cmd: &Cmd) -> Result<Vec<Instance>> {
        let all = parse_instances(&self.probe(cmd)?.stdout)?;
        if !OWNER_WARNINGS.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(all);
        }
        static WARNED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        for instance in &all {
            let Some(recorded) = instance.foreign_owner() else {
                continue;
            };
            let id = (instance.project.clone(), instance.name.clone());
            if !warned.contains(&id) {
                crate::ui::note(&format!(
                    "warning: {} records owner \"{}\", which is not the user its name says; \
                     skipped (see `containarium host doctor`)",
                    instance.name,
                    recorded.escape_debug()
                ));
                warned.push(id);
            }
        }
        Ok(all)
    }

    /// Every instance of the project (of every project with `all`) without
    /// its state: one read of the database, where `incus list` asks every
    /// cluster member for its instances' state. For readers of config
    /// alone (`sync-accounts`, each minute on every bastion).
    pub fn instances_config(&self, all: bool) -> Result<Vec<Instance>> {
        let cmd = match all {
            true => Incus::default().query_cmd("/1.0/instances?recursion=1&all-projects=true"),
            false => self.query_cmd("/1.0/instances?recursion=1"),
        };
        self.listed(&cmd)
    }

    pub fn instance(&self, name: &str) -> Result<Option<Instance>> {
        Ok(self
            .listed(&self.list_cmd(Some(name)))?
            .into_iter()
            .find(|i| i.name == name))
    }

    /// Refuses unless `image` resolves, locally or on its remote.
    pub fn require_image(&self, image: &str) -> Result<()> {
        let cmd = self.cmd(["image", "info", "--", image]);
        match exec::run(&cmd) {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = daemon_refusal(err)?;
                let reason = err.stderr.trim().trim_start_matches("Error: ").to_string();
                Err(Refused(format!(
                    "image \"{image}\" is not available: {reason} (see `incus image list`)"
                ))
                .into())
            }
        }
    }

    /// Runs a read-only query, turning "Incus is missing or down" into a
    /// refusal that says how to fix it.
    pub fn probe(&self, cmd: &Cmd) -> Result<Output> {
        exec::run(cmd).or_else(|err| Err(daemon_refusal(err)?.into()))
    }

    /// A failure (not a refusal), said plainly when the Incus daemon
    /// stopped answering during the run: the failed step then tells only
    /// how its connection broke.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        if err.chain().any(|cause| cause.is::<Refused>()) {
            return err;
        }
        // The failed command may say so itself: a stopping daemon answers
        // "Error: Shutting down" to changes (an exec's output included)
        // while GET /1.0 still works.
        let said = err
            .chain()
            .filter_map(|cause| cause.downcast_ref::<CmdError>())
            .filter(|e| e.program == "incus")
            .find_map(down)
            .or_else(|| format!("{err:#}").contains(STOPPING).then(not_running));
        let down = said.or_else(|| match exec::run(&self.cmd(["query", "/1.0"])) {
            Err(err) => down(&err),
            Ok(_) => None,
        });
        match down {
            Some(down) => err.context(down.0),
            None => err,
        }
    }

    pub fn exec_cmd<I, S>(&self, instance: &str, argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd(["exec", instance, "--"]).args(argv)
    }

    /// Runs `argv` in the instance; returns the output whatever the status.
    /// Retried, briefly, when Incus itself failed to run it (exit 255 with
    /// an Incus error, e.g. "Failed to retrieve PID of executing child
    /// process" under load): the reads and waits we exec are idempotent.
    pub fn exec_unchecked(&self, instance: &str, argv: &[&str]) -> Result<Output> {
        let cmd = self.exec_cmd(instance, argv.iter().copied());
        let backoff = crate::retry::Backoff {
            first: std::time::Duration::from_millis(200),
            max_delay: std::time::Duration::from_secs(2),
            budget: std::time::Duration::from_secs(10),
        };
        let output = crate::retry::retry(
            &backoff,
            || match exec::run_unchecked(&cmd) {
                Ok(out) if is_incus_exec_failure(&out) => Err(Ok(out)),
                Ok(out) => Ok(out),
                Err(err) => Err(Err(err)),
            },
            |attempt| attempt.is_ok(),
            |_, _| {},
        );
        match output {
            Ok(out) | Err(Ok(out)) => Ok(out),
            Err(Err(err)) => Err(err.into()),
        }
    }

    /// Reads a file in the instance through Incus's file API: unlike a quick
    /// `incus exec`, whose output can be lost on a busy host, it returns the
    /// file or an error. `None` when the file does not exist. The guest
    /// wrote it: past [`GUEST_FILE_LIMIT`] bytes the read fails.
    pub fn read_file(&self, instance: &str, path: &str) -> Result<Option<String>> {
        let cmd = self.cmd(["file", "pull", &file_ref(instance, path)?, "-"]);
        match exec::run_bounded(&cmd, GUEST_FILE_LIMIT) {
            Ok(out) => Ok(Some(out.stdout)),
            // "file does not exist": what Incus 6.0 says for a stopped container.
            Err(err)
                if err.stderr_contains("not found")
                    || err.stderr_contains("No such file")
                    || err.stderr_contains("file does not exist") =>
            {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// `incus file push` of stdin to `path` in the instance, owned by
    /// `uid:gid` with `mode`, making missing directories.
    pub fn push_file_cmd(
        &self,
        instance: &str,
        path: &str,
        (uid, gid): (&str, &str),
        mode: &str,
    ) -> Result<Cmd, Refused> {
        Ok(self
            .cmd(["file", "push", "--create-dirs", "--uid", uid, "--gid", gid])
            .args(["--mode", mode, "-"])
            .arg(file_ref(instance, path)?))
    }

    /// `user`'s passwd fields (name, x, uid, gid, gecos, home, shell) in the
    /// instance, from its /etc/passwd. The tenant writes that file, so the
    /// entry is refused unless uid and gid are numbers and the home is an
    /// absolute, normalised path.
    pub fn passwd_entry(&self, instance: &str, user: &str) -> Result<Option<Vec<String>>> {
        let passwd = self
            .read_file(instance, "/etc/passwd")?
            .with_context(|| format!("{instance} has no /etc/passwd"))?;
        let Some(fields) = passwd
            .lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.len() == 7 && f[0] == user)
        else {
            return Ok(None);
        };
        if fields[2].parse::<u32>().is_err() || fields[3].parse::<u32>().is_err() {
            return Err(Refused(format!(
                "{instance}: {user}'s uid or gid in /etc/passwd is not a number; nothing changed"
            ))
            .into());
        }
        if let Err(why) = check_guest_path(&fields[5]) {
            return Err(Refused(format!(
                "{instance}: {user}'s home \"{}\" in /etc/passwd is {why}; nothing changed",
                fields[5].escape_debug()
            ))
            .into());
        }
        Ok(Some(fields))
    }

    pub fn delete_cmd(&self, instance: &str) -> Cmd {
        self.cmd(["delete", "--force", instance])
    }

    /// [`Self::delete_cmd`], through its known failures. "Instance is
    /// running": incusd, started again, starts in the background what ran
    /// when it stopped, so `--force` may find the instance stopped and the
    /// delete then find it running; it is tried again (for 30 s at most).
    /// "Disk quota exceeded": a full root quota can hold Docker's nested
    /// btrfs subvolumes that cannot be destroyed; the quota of an instance
    /// being deleted anyway is lifted and the delete tried again.
    pub fn delete(&self, instance: &str) -> Result<()> {
        let cmd = self.delete_cmd(instance);
        let backoff = crate::retry::Backoff {
            first: std::time::Duration::from_millis(500),
            max_delay: std::time::Duration::from_secs(4),
            budget: std::time::Duration::from_secs(30),
        };
        let deleted = crate::retry::retry(
            &backoff,
            || exec::run(&cmd),
            |err| err.stderr_contains("Instance is running"),
            |_, _| {},
        );
        match deleted {
            Err(err) if err.stderr_contains("Disk quota exceeded") => {
                exec::run(&self.cmd(["config", "device", "unset", instance, "root", "size"]))?;
                exec::run(&cmd)?;
                Ok(())
            }
            deleted => deleted.map(drop).map_err(Into::into),
        }
    }

    /// The plan's step that runs [`Self::delete`].
    pub fn delete_action(&self, instance: &str) -> crate::plan::Action {
        let (incus, name) = (self.clone(), instance.to_string());
        crate::plan::Action::run_via(self.delete_cmd(instance), move || incus.delete(&name))
    }

    /// Adds [`PROXY_DEVICE`]: `at` on the member, forwarded (NAT, no
    /// userspace proxy) to `ip`:22 in the container. (Display: a dry run
    /// passes placeholders.)
    pub fn proxy_add_cmd(
        &self,
        instance: &str,
        at: impl std::fmt::Display,
        ip: impl std::fmt::Display,
    ) -> Cmd {
        self.cmd([
            "config".to_string(),
            "device".into(),
            "add".into(),
            instance.into(),
            PROXY_DEVICE.into(),
            "proxy".into(),
            format!("listen=tcp:{at}"),
            format!("connect=tcp:{ip}:22"),
            "nat=true".into(),
        ])
    }

    /// Removes [`PROXY_DEVICE`].
    pub fn proxy_remove_cmd(&self, instance: &str) -> Cmd {
        self.cmd(["config", "device", "remove", instance, PROXY_DEVICE])
    }

    /// Points [`PROXY_DEVICE`] at another member's address.
    pub fn proxy_listen_cmd(&self, instance: &str, at: SocketAddrV4) -> Cmd {
        self.cmd([
            "config".to_string(),
            "device".into(),
            "set".into(),
            instance.into(),
            PROXY_DEVICE.into(),
            format!("listen=tcp:{at}"),
        ])
    }

    pub fn config_set_cmd(&self, instance: &str, key: &str, value: &str) -> Cmd {
        self.cmd(["config", "set", instance, &format!("{key}={value}")])
    }

    /// The commands that make `instance`'s own config and devices (not its
    /// profiles') `want` when they are `have`: re-authoring, not filtering.
    /// Whatever `have` holds that `want` does not is unset or removed;
    /// `volatile.*` keys are Incus's and neither read nor written here.
    /// Devices go first, so a device of `have` is gone before anything else
    /// changes; a device whose type changes is removed and added again.
    pub fn converge_cmds(&self, instance: &str, have: &Authored, want: &Authored) -> Vec<Cmd> {
        let mut cmds = Vec::new();
        let ours = |k: &&String| !k.starts_with("volatile.");
        for (name, device) in &have.devices {
            let kept = want.devices.get(name);
            if kept.is_none_or(|w| w.get("type") != device.get("type")) {
                cmds.push(self.cmd(["config", "device", "remove", instance, name.as_str()]));
            }
        }
        for key in have.config.keys().filter(ours) {
            if !want.config.contains_key(key) {
                cmds.push(self.cmd(["config", "unset", instance, key.as_str()]));
            }
        }
        let set: Vec<String> = want
            .config
            .iter()
            .filter(|(k, v)| ours(k) && have.config.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !set.is_empty() {
            cmds.push(self.cmd(["config", "set", instance]).args(set));
        }
        for (name, device) in &want.devices {
            let pairs = |keys: &mut dyn Iterator<Item = (&String, &String)>| -> Vec<String> {
                keys.filter(|(k, _)| *k != "type")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            };
            match have.devices.get(name) {
                Some(had) if had.get("type") == device.get("type") => {
                    for key in had.keys().filter(|k| !device.contains_key(*k)) {
                        cmds.push(self.cmd([
                            "config",
                            "device",
                            "unset",
                            instance,
                            name.as_str(),
                            key.as_str(),
                        ]));
                    }
                    let changed =
                        pairs(&mut device.iter().filter(|(k, v)| had.get(*k) != Some(*v)));
                    if !changed.is_empty() {
                        cmds.push(
                            self.cmd(["config", "device", "set", instance, name.as_str()])
                                .args(changed),
                        );
                    }
                }
                _ => {
                    let kind = device.get("type").map_or("none", String::as_str);
                    cmds.push(
                        self.cmd(["config", "device", "add", instance, name.as_str(), kind])
                            .args(pairs(&mut device.iter())),
                    );
                }
            }
        }
        cmds
    }
}

/// An instance's own config and devices: what containarium writes
/// ([`Incus::converge_cmds`]), or what an instance or a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Authored {
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
}

/// `INSTANCE/PATH`, as `incus file pull/push` name a file in an instance.
/// Incus takes everything before the first '/' as the instance's name, and
/// the path is often the tenant's (a home from their /etc/passwd): unless it
/// is absolute and normalised, `-x-container/home/a` would name the instance
/// `alice-container-x-container`. So anything else is refused.
pub fn file_ref(instance: &str, path: &str) -> Result<String, Refused> {
    match check_guest_path(path) {
        Ok(()) => Ok(format!("{instance}/{}", &path[1..])),
        Err(why) => Err(Refused(format!(
            "{instance}: the path \"{}\" is {why}; nothing changed",
            path.escape_debug()
        ))),
    }
}

/// `rel` (a constant such as `.ssh/authorized_keys`) under the directory
/// `dir`, which may be `/`.
pub fn guest_join(dir: &str, rel: &str) -> String {
    format!("{}/{rel}", dir.trim_end_matches('/'))
}

/// Whether `path` is an absolute, normalised path: it starts with '/', and
/// has no empty, `.` or `..` component and no control character.
fn check_guest_path(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("not an absolute path");
    };
    if path.chars().any(char::is_control) {
        return Err("not a path (control characters)");
    }
    if !rest.is_empty()
        && rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("not a normalised path (empty, '.' or '..' components)");
    }
    Ok(())
}

/// Whether `incus exec` failed in Incus rather than in the command.
fn is_incus_exec_failure(out: &Output) -> bool {
    out.status.code() == Some(255) && out.stderr.starts_with("Error: ")
}

/// Maps "incus is not installed" and "the daemon is down" to refusals with
/// the fix; hands every other failure back.
fn daemon_refusal(err: CmdError) -> Result<CmdError, Refused> {
    match down(&err) {
        Some(refusal) => Err(refusal),
        None => Ok(err),
    }
}

/// What a stopping Incus daemon answers to a change.
const STOPPING: &str = "Error: Shutting down";

fn not_running() -> Refused {
    Refused(
        "the Incus daemon is not running: start it with `systemctl start incus` \
         (or `incusd --group incus-admin &` on hosts without systemd)"
            .into(),
    )
}

/// The refusal with the fix when `err` says Incus is missing or down.
fn down(err: &CmdError) -> Option<Refused> {
    if err.not_found {
        return Some(Refused(
            "incus is not installed: install it (apt-get install incus) and run `incus admin init`"
                .into(),
        ));
    }
    let markers = [
        "unix.socket",
        "Failed to connect",
        "connection refused",
        "daemon",
        // What its API says while it stops.
        "Shutting down",
    ];
    if err.code.is_some() && markers.iter().any(|m| err.stderr.contains(m)) {
        return Some(not_running());
    }
    None
}

/// Incus sends `null` for an empty map on an instance still being made.
pub fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
pub struct Instance {
    pub name: String,
    /// Set by `incus list --all-projects`.
    #[serde(default)]
    pub project: String,
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub expanded_config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub expanded_devices: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub state: Option<State>,
    /// When Incus last started it (RFC 3339).
    #[serde(default)]
    pub last_used_at: String,
    /// The cluster member it is on (`none` or empty off a cluster).
    #[serde(default)]
    pub location: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct State {
    #[serde(default)]
    pub network: Option<BTreeMap<String, Nic>>,
    #[serde(default)]
    pub disk: Option<BTreeMap<String, DiskState>>,
    #[serde(default)]
    pub memory: Option<MemoryState>,
    #[serde(default)]
    pub pid: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Nic {
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Address {
    pub family: String,
    pub address: String,
    #[serde(default)]
    pub scope: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DiskState {
    #[serde(default)]
    pub usage: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MemoryState {
    #[serde(default)]
    pub usage: u64,
}

impl Instance {
    /// The user this container belongs to, when Containarium made it: the
    /// user its name says (`USER-container`), and only when the owner
    /// recorded in its config agrees. The name is the identity: a recorded
    /// owner is metadata a restore or an admin's `incus config set` can
    /// change, so one that names anybody else makes the instance nobody's
    /// (see [`Instance::foreign_owner`]), never the other user's.
    pub fn owner(&self) -> Option<&str> {
        let user = self.name.strip_suffix("-container")?;
        let valid = user.parse::<crate::names::UserName>().is_ok();
        (valid && self.recorded_owner()? == user).then_some(user)
    }

    /// [`Instance::owner`], as a user name.
    pub fn user(&self) -> Option<crate::names::UserName> {
        self.owner()?.parse().ok()
    }

    /// The owner recorded in its config when that is not the user its name
    /// says: every verb skips such an instance, `host doctor` fails it.
    pub fn foreign_owner(&self) -> Option<&str> {
        self.recorded_owner().filter(|_| self.owner().is_none())
    }

    /// The user whose container this is by name, when it carries our owner
    /// key at all (agreeing or not): that user's account is never an
    /// orphan to revoke while the instance is in doubt.
    pub fn named_user(&self) -> Option<&str> {
        self.recorded_owner()?;
        self.name.strip_suffix("-container")
    }

    /// The owner key as recorded, whatever the name says (a restored file
    /// may have written it): whether an instance is one of ours at all.
    pub fn recorded_owner(&self) -> Option<&str> {
        self.config.get(key::OWNER).map(String::as_str)
    }

    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.expanded_config
            .get(key)
            .or_else(|| self.config.get(key))
            .map(String::as_str)
    }

    /// eth0's global IPv4 address. Never docker0's (172.17.0.1), which
    /// `incus list`'s IPV4 column shows too once Docker runs inside.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        let nic = self.state.as_ref()?.network.as_ref()?.get("eth0")?;
        nic.addresses
            .iter()
            .filter(|a| a.family == "inet" && a.scope == "global")
            .find_map(|a| a.address.parse().ok())
    }

    /// The address pinned on eth0 (`ipv4.address`), if any.
    pub fn pinned_ipv4(&self) -> Option<Ipv4Addr> {
        self.expanded_devices
            .get("eth0")?
            .get("ipv4.address")?
            .parse()
            .ok()
    }

    /// The cluster member it is on, if it is on a cluster.
    pub fn member(&self) -> Option<&str> {
        Some(self.location.as_str()).filter(|l| !l.is_empty() && *l != "none")
    }

    /// The keys recorded at create and by `keys add/remove`.
    pub fn keys(&self) -> Result<Vec<crate::keys::PublicKey>, Refused> {
        let text = self.config_value(key::KEYS).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| crate::keys::PublicKey::parse_line(l, &format!("{} {}", self.name, key::KEYS)))
            .collect()
    }

    pub fn root_size(&self) -> Option<&str> {
        self.expanded_devices
            .get("root")?
            .get("size")
            .map(String::as_str)
    }

    pub fn disk_used(&self) -> Option<u64> {
        Some(self.state.as_ref()?.disk.as_ref()?.get("root")?.usage)
    }

    pub fn memory_used(&self) -> Option<u64> {
        Some(self.state.as_ref()?.memory.as_ref()?.usage)
    }

    pub fn autostart(&self) -> bool {
        self.config_value("boot.autostart") == Some("true")
    }

    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }

    /// `set` for a device of the instance's own, `override` for one it
    /// has from a profile: the `incus config device` verb that changes it.
    pub fn device_verb(&self, device: &str) -> &'static str {
        if self.devices.contains_key(device) {
            "set"
        } else {
            "override"
        }
    }
}

/// What `incus query /1.0` says of the server.
#[derive(Debug, Clone)]
pub struct Server {
    /// `nftables`, `xtables`, or empty.
    pub firewall: String,
    /// Whether it is a member of an Incus cluster.
    pub clustered: bool,
    /// Its name (on a cluster, the member's).
    pub name: String,
}

/// One member of the cluster, as `incus cluster list` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub server_name: String,
    /// `https://ADDRESS:8443`
    pub url: String,
    /// `Online`, `Offline`, `Evacuated`, …
    pub status: String,
    #[serde(default)]
    pub message: String,
}

impl Member {
    pub fn is_online(&self) -> bool {
        self.status == "Online"
    }

    /// The IPv4 address in the member's URL.
    pub fn address(&self) -> Result<Ipv4Addr> {
        let host = self
            .url
            .strip_prefix("https://")
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(host, _)| host);
        host.and_then(|h| h.parse().ok()).with_context(|| {
            format!(
                "cluster member {} has no IPv4 address in its URL {:?}",
                self.server_name, self.url
            )
        })
    }
}

pub fn parse_instances(json: &str) -> Result<Vec<Instance>> {
    serde_json::from_str(json).context("parsing `incus list --format json` output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authored(config: &[(&str, &str)], devices: &[(&str, &[(&str, &str)])]) -> Authored {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        Authored {
            config: map(config),
            devices: devices
                .iter()
                .map(|(n, d)| (n.to_string(), map(d)))
                .collect(),
        }
    }

    #[test]
    fn converging_re_authors_config_and_devices() {
        let have = authored(
            &[
                ("limits.cpu", "64"),
                ("security.privileged", "true"),
                ("user.containarium.owner", "bob"),
                ("volatile.eth0.hwaddr", "10:66:6a:00:00:01"),
                ("boot.autostart", "true"),
            ],
            &[
                (
                    "root",
                    &[
                        ("type", "disk"),
                        ("path", "/"),
                        ("pool", "p"),
                        ("size", "100TiB"),
                    ],
                ),
                (
                    "eth0",
                    &[("type", "nic"), ("network", "br"), ("nictype", "bridged")],
                ),
                (
                    "ssh",
                    &[("type", "proxy"), ("listen", "tcp:169.254.169.254:80")],
                ),
                ("x", &[("type", "disk"), ("source", "/")]),
            ],
        );
        let want = authored(
            &[
                ("limits.cpu", "2"),
                ("user.containarium.owner", "alice"),
                ("boot.autostart", "true"),
            ],
            &[
                (
                    "root",
                    &[
                        ("type", "disk"),
                        ("path", "/"),
                        ("pool", "p"),
                        ("size", "3GiB"),
                    ],
                ),
                (
                    "eth0",
                    &[
                        ("type", "nic"),
                        ("network", "br"),
                        ("ipv4.address", "10.0.0.5"),
                    ],
                ),
                ("x", &[("type", "nic"), ("network", "br")]),
            ],
        );
        let cmds: Vec<String> = Incus::new(None)
            .converge_cmds("a", &have, &want)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            cmds,
            [
                "incus config device remove a ssh",
                "incus config device remove a x",
                "incus config unset a security.privileged",
                "incus config set a limits.cpu=2 user.containarium.owner=alice",
                "incus config device unset a eth0 nictype",
                "incus config device set a eth0 ipv4.address=10.0.0.5",
                "incus config device set a root size=3GiB",
                "incus config device add a x nic network=br",
            ]
        );
        // Converged, nothing is left to do; volatile keys are never touched.
        assert!(Incus::new(None).converge_cmds("a", &want, &want).is_empty());
    }

    fn failed(stderr: &str) -> CmdError {
        CmdError {
            command: "incus query /1.0".into(),
            program: "incus".into(),
            code: Some(1),
            signal: None,
            stderr: stderr.into(),
            not_found: false,
        }
    }

    /// The client's words when nothing listens on the socket, and the
    /// daemon's own while it stops, read as "down"; any other failure is
    /// handed back.
    #[test]
    fn a_stopped_or_stopping_daemon_is_down() {
        for stderr in [
            "Error: Get \"http://unix.socket/1.0\": dial unix /var/lib/incus/unix.socket: connect: no such file or directory\n",
            "Error: Shutting down\n",
        ] {
            let refusal = daemon_refusal(failed(stderr)).unwrap_err();
            assert!(
                refusal.0.starts_with("the Incus daemon is not running"),
                "{stderr}"
            );
        }
        assert!(daemon_refusal(failed("Error: Instance not found\n")).is_ok());
    }

    /// Captured from a real Incus 6.0 with Docker running in alice's
    /// container, so `incus list` shows docker0 beside eth0.
    const LIST: &str = include_str!("../tests/fixtures/incus-list.json");

    #[test]
    fn parses_real_list_output() {
        let all = parse_instances(LIST).unwrap();
        let alice = all
            .iter()
            .find(|i| i.name == "ctme2e-alice-container")
            .unwrap();
        assert_eq!(alice.owner(), Some("ctme2e-alice"));
        assert_eq!(
            alice.ipv4(),
            Some("10.197.83.48".parse().unwrap()),
            "eth0, never docker0"
        );
        assert_eq!(alice.pinned_ipv4(), Some("10.197.83.48".parse().unwrap()));
        assert_eq!(alice.root_size(), Some("3GiB"));
        assert_eq!(alice.disk_used(), Some(26_345_472));
        assert_eq!(alice.memory_used(), Some(271_912_960));
        assert_eq!(alice.config_value("limits.cpu"), Some("1"));
        assert_eq!(alice.device_verb("eth0"), "set");
        assert!(alice.is_running());

        let bob = all
            .iter()
            .find(|i| i.name == "ctme2e-bob-container")
            .unwrap();
        assert_eq!(bob.pinned_ipv4(), None);
        assert_eq!(bob.device_verb("eth0"), "override");
        let carol = all
            .iter()
            .find(|i| i.name == "ctme2e-carol-container")
            .unwrap();
        assert_eq!(carol.ipv4(), None);
        assert!(!carol.is_running());
    }

    #[test]
    fn tolerates_nulls_of_an_instance_being_made() {
        let json = r#"[{"name":"a-container","status":"Stopped","config":null,"devices":null,
            "expanded_config":null,"expanded_devices":null,"state":{"network":{"eth0":{"addresses":null}}}}]"#;
        let all = parse_instances(json).unwrap();
        assert_eq!(all[0].owner(), None);
        assert_eq!(all[0].ipv4(), None);
    }

    #[test]
    fn file_refs_never_name_another_instance() {
        assert_eq!(
            file_ref("a-container", "/home/a/.ssh/authorized_keys").unwrap(),
            "a-container/home/a/.ssh/authorized_keys"
        );
        assert_eq!(file_ref("a-container", "/").unwrap(), "a-container/");
        for bad in [
            "-x-container/home/a",
            "home/a",
            "",
            "/../../etc",
            "/home/./a",
            "/home//a",
            "/home/a/",
            "/home/a\n/x",
        ] {
            let err = file_ref("a-container", bad).unwrap_err().0;
            assert!(err.starts_with("a-container: the path "), "{bad:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        }
        assert_eq!(
            guest_join("/home/a", ".ssh/authorized_keys"),
            "/home/a/.ssh/authorized_keys"
        );
        assert_eq!(
            guest_join("/", ".ssh/authorized_keys"),
            "/.ssh/authorized_keys"
        );
    }

    #[test]
    fn project_goes_first() {
        let incus = Incus::new(Some("dev".into()));
        assert_eq!(
            incus.list_cmd(Some("a-container")).to_string(),
            "incus --project dev list --format json '^a-container$'"
        );
        assert_eq!(
            Incus::new(None).delete_cmd("a").to_string(),
            "incus delete --force a"
        );
        assert_eq!(
            incus.query_cmd("/1.0/networks/br0").to_string(),
            "incus query '/1.0/networks/br0?project=dev'"
        );
    }
}
