//! Defaults from /etc/containarium/config.toml and the host paths we use.
//!
//! Every path is under a root directory so tests can run the real binary
//! against a scratch tree. The root is `/`; only a build with the
//! `test-paths` feature (the CLI tests' build) takes it from
//! `CONTAINARIUM_ROOT`, so in a normal build `sudo` with a kept environment
//! cannot redirect root's writes. `CONTAINARIUM_CONFIG` is the admin's (see
//! the README) and stays, but the config file it names, like the default
//! one, must be a regular file owned by root that only root can write.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::Refused;
use crate::names::UserName;
use crate::size::ByteSize;

/// The image every container starts from unless told otherwise: only the
/// `/cloud` variants run cloud-init.
pub const DEFAULT_IMAGE: &str = "images:ubuntu/24.04/cloud";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigFile {
    image: Option<String>,
    storage_pool: Option<String>,
    network: Option<String>,
    disk: Option<String>,
    cpu: Option<u32>,
    memory: Option<String>,
    processes: Option<u32>,
    template: Option<String>,
    #[serde(default)]
    deny_egress: Vec<String>,
    #[serde(default)]
    fail2ban: crate::fail2ban::Table,
}

/// `limits.processes` of a new container: the tasks (processes and threads:
/// the pids cgroup counts both) it may hold. A fork bomb stops there, with
/// EAGAIN, instead of running until memory does (50,000 processes were not
/// refused without it). A tenant with Docker and a build runs a few hundred
/// (systemd, sshd, dockerd and containerd about 100; a JVM or a parallel
/// build a few hundred threads more), so 4096 leaves ten times that; and a
/// bomb of 4096 `sleep`s held 828 MiB (the tenant-data e2e), inside the
/// default 2GiB: it meets this limit, not the OOM killer shooting at the
/// tenant's sshd.
pub const DEFAULT_PROCESSES: u32 = 4096;

/// Below this a container cannot boot its systemd and sshd and log a user in.
pub const MIN_PROCESSES: u32 = 64;

/// Defaults for `create`, after the config file; command-line flags win.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub image: String,
    /// `None`: the project's default profile decides.
    pub storage_pool: Option<String>,
    pub network: Option<String>,
    pub disk: ByteSize,
    pub cpu: u32,
    pub memory: ByteSize,
    /// `limits.processes`: tasks (processes and threads) in a container.
    pub processes: u32,
    pub template: String,
    /// Destinations tenants may never reach, beyond the built-in ones (the
    /// VPC, other bastions, internal services).
    pub deny_egress: Vec<crate::network::Cidr>,
    /// The sshd jail `host init` writes.
    pub fail2ban: crate::fail2ban::Settings,
}

impl Defaults {
    pub fn load(paths: &Paths) -> Result<Defaults> {
        let path = paths.config_file();
        let file = match read_config(&path)? {
            Some(text) => toml::from_str::<ConfigFile>(&text).map_err(|err| {
                Refused(format!(
                    "{}: {}",
                    path.display(),
                    err.message().replace('\n', " ")
                ))
            })?,
            None if std::env::var_os("CONTAINARIUM_CONFIG").is_some() => {
                return Err(Refused(format!(
                    "CONTAINARIUM_CONFIG names {}, which does not exist",
                    path.display()
                ))
                .into());
            }
            None => ConfigFile::default(),
        };
        let size = |value: Option<String>, default: &str, key: &str| -> Result<ByteSize> {
            let text = value.unwrap_or_else(|| default.to_string());
            text.parse::<ByteSize>()
                .map_err(|err| Refused(format!("{} {key}: {err}", path.display())).into())
        };
        if file.cpu == Some(0) {
            return Err(Refused(format!("{} cpu: must be at least 1", path.display())).into());
        }
        if file.processes.is_some_and(|n| n < MIN_PROCESSES) {
            return Err(Refused(format!(
                "{} processes: must be at least {MIN_PROCESSES}",
                path.display()
            ))
            .into());
        }
        let deny_egress = file
            .deny_egress
            .iter()
            .map(|c| {
                c.parse::<crate::network::Cidr>()
                    .map(crate::network::Cidr::network)
                    .map_err(|err| Refused(format!("{} deny-egress: {err}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fail2ban = crate::fail2ban::Settings::from_table(file.fail2ban)
            .map_err(|err| Refused(format!("{} {err}", path.display())))?;
        Ok(Defaults {
            image: file.image.unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
            storage_pool: file.storage_pool,
            network: file.network,
            disk: size(file.disk, "20GiB", "disk")?,
            cpu: file.cpu.unwrap_or(2),
            memory: size(file.memory, "2GiB", "memory")?,
            processes: file.processes.unwrap_or(DEFAULT_PROCESSES),
            template: file.template.unwrap_or_else(|| "default".to_string()),
            deny_egress,
            fail2ban,
        })
    }
}

/// Where things live on the host.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

/// The key directory as sshd sees it, written into the sshd drop-in.
pub const KEYS_DIR: &str = "/etc/containarium/keys";

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        Paths { root: root.into() }
    }

    pub fn from_env() -> Paths {
        Paths::new(test_root().unwrap_or_else(|| "/".into()))
    }

    pub fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn config_file(&self) -> PathBuf {
        match std::env::var_os("CONTAINARIUM_CONFIG") {
            Some(path) => PathBuf::from(path),
            None => self.at("/etc/containarium/config.toml"),
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.at(KEYS_DIR)
    }

    pub fn key_file(&self, user: &UserName) -> PathBuf {
        self.keys_dir().join(user.as_str())
    }

    /// The key `backup` authenticates its files with and `restore` checks
    /// them by: root's alone, the same on every bastion of a cluster.
    pub fn backup_key(&self) -> PathBuf {
        self.at("/etc/containarium/backup.key")
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.at("/etc/containarium/templates")
    }

    pub fn sshd_config(&self) -> PathBuf {
        self.at("/etc/ssh/sshd_config")
    }

    pub fn sshd_dropin_dir(&self) -> PathBuf {
        self.at("/etc/ssh/sshd_config.d")
    }

    pub fn sshd_dropin(&self) -> PathBuf {
        self.sshd_dropin_dir().join(crate::sshd::DROPIN_NAME)
    }

    /// Where versions before 00-containarium.conf put the drop-in.
    pub fn sshd_old_dropin(&self) -> PathBuf {
        self.sshd_dropin_dir().join(crate::sshd::OLD_DROPIN_NAME)
    }

    /// sshd's privilege separation directory: `sshd -t` fails without it.
    pub fn sshd_privsep_dir(&self) -> PathBuf {
        self.at("/run/sshd")
    }

    /// The kernel's tunables; a test root holds files of the same layout.
    pub fn proc_sys(&self) -> PathBuf {
        self.at("/proc/sys")
    }

    pub fn sysctl_file(&self) -> PathBuf {
        self.at("/etc/sysctl.d/60-containarium.conf")
    }

    pub fn sshd_pid_file(&self) -> PathBuf {
        self.at("/run/sshd.pid")
    }

    pub fn host_key(&self) -> PathBuf {
        self.at("/etc/ssh/ssh_host_ed25519_key.pub")
    }

    /// The host certificate `host sign` makes for [`Paths::host_key`].
    pub fn host_cert(&self) -> PathBuf {
        self.at(crate::sshd::HOST_CERT)
    }

    /// Where rsyslog writes sshd's lines (`containarium audit`).
    pub fn auth_log(&self) -> PathBuf {
        self.at("/var/log/auth.log")
    }

    /// journald's socket: present while journald runs.
    pub fn journal_socket(&self) -> PathBuf {
        self.at("/run/systemd/journal/socket")
    }

    /// A host path named in config.toml (fail2ban's log), under the root.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.at(path)
    }

    pub fn fail2ban_dir(&self) -> PathBuf {
        self.at("/etc/fail2ban")
    }

    /// Our sshd jail.
    pub fn fail2ban_jail(&self) -> PathBuf {
        self.at("/etc/fail2ban/jail.d/containarium.conf")
    }

    /// The jail's `enabled`, in a file read after every `jail.d/*.conf`.
    pub fn fail2ban_jail_switch(&self) -> PathBuf {
        self.at("/etc/fail2ban/jail.d/containarium.local")
    }

    pub fn fail2ban_filter_override(&self) -> PathBuf {
        self.at("/etc/fail2ban/filter.d/sshd.local")
    }

    /// python3-systemd, which fail2ban's journal backend needs.
    pub fn python_systemd(&self) -> PathBuf {
        self.at("/usr/lib/python3/dist-packages/systemd/journal.py")
    }

    /// The host's /proc, where `reap` reads containers' connections.
    pub fn proc_dir(&self) -> PathBuf {
        self.at("/proc")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.at("/run/containarium.lock")
    }

    /// The lock a verb holds on one user for its whole run (see
    /// `cli::lock_user`).
    pub fn user_lock_file(&self, user: &UserName) -> PathBuf {
        self.at("/run/containarium/users")
            .join(format!("{user}.lock"))
    }

    /// The local account database, where `useradd` puts jump accounts.
    pub fn passwd(&self) -> PathBuf {
        self.at("/etc/passwd")
    }

    pub fn group(&self) -> PathBuf {
        self.at("/etc/group")
    }
}

/// `CONTAINARIUM_ROOT`, in a build for the CLI tests only.
#[cfg(feature = "test-paths")]
fn test_root() -> Option<OsString> {
    std::env::var_os("CONTAINARIUM_ROOT")
}

#[cfg(not(feature = "test-paths"))]
fn test_root() -> Option<OsString> {
    None
}

/// The config file's text, `None` if it does not exist. It decides which
/// image, network and storage every container gets, so it must be root's
/// alone (see [`read_roots`]).
fn read_config(path: &Path) -> Result<Option<String>> {
    Ok(read_roots(path, "config file")?)
}

/// The text of a file that decides what root does (config.toml, a cloud-init
/// template), `None` if it does not exist: it must be a regular file owned
/// by root and not writable by group or others, checked on the opened file,
/// after any symlink. Opened without blocking, so a FIFO is refused at once.
pub fn read_roots(path: &Path, what: &str) -> Result<Option<String>, Refused> {
    let shown = path.display();
    let file = match open_nonblocking(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Refused(format!("cannot read {what} {shown}: {err}"))),
    };
    let meta = file
        .metadata()
        .map_err(|err| Refused(format!("cannot read {what} {shown}: {err}")))?;
    if !meta.is_file() {
        return Err(Refused(format!(
            "{what} {shown} is not a regular file: it must be root's alone"
        )));
    }
    roots_alone(&meta, what, path)?;
    std::io::read_to_string(file)
        .map(Some)
        .map_err(|err| Refused(format!("cannot read {what} {shown}: {err}")))
}

/// A directory of files that decide what root does (the templates): when
/// it exists, root's alone like [`read_roots`]' files, so nobody else can
/// put or swap a file in it.
pub fn check_roots_dir(path: &Path, what: &str) -> Result<(), Refused> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(Refused(format!(
                "cannot read {what} {}: {err}",
                path.display()
            )));
        }
    };
    if !meta.is_dir() {
        return Err(Refused(format!(
            "{what} {} is not a directory",
            path.display()
        )));
    }
    roots_alone(&meta, what, path)
}

fn roots_alone(meta: &std::fs::Metadata, what: &str, path: &Path) -> Result<(), Refused> {
    let why = if meta.uid() != 0 {
        "is not owned by root"
    } else if meta.mode() & 0o022 != 0 {
        "is writable by group or others"
    } else {
        return Ok(());
    };
    Err(Refused(format!(
        "{what} {} {why}: it must be root's alone (chown root; chmod go-w)",
        path.display()
    )))
}

/// Opens `path` for reading without waiting for a writer: a FIFO opens at
/// once (and is then refused as not a regular file), never blocks us.
pub fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

/// Reads a file we need, with the activity in the error.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_is_strict_kebab_case() {
        let ok: ConfigFile =
            toml::from_str("image = \"local:debian\"\nstorage-pool = \"tank\"\ncpu = 4\n").unwrap();
        assert_eq!(ok.storage_pool.as_deref(), Some("tank"));
        assert!(toml::from_str::<ConfigFile>("storage_pool = \"tank\"").is_err());
        assert!(toml::from_str::<ConfigFile>("disks = \"1GiB\"").is_err());
        let deny: ConfigFile = toml::from_str("deny-egress = [\"10.128.0.0/9\"]").unwrap();
        assert_eq!(deny.deny_egress, ["10.128.0.0/9"]);
    }

    #[test]
    fn config_file_must_be_roots_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(read_config(&path).unwrap(), None);
        std::fs::write(&path, "cpu = 4\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_config(&path).unwrap().as_deref(), Some("cpu = 4\n"));
        for (mode, uid, why) in [
            (0o664, 0, "is writable by group or others"),
            (0o646, 0, "is writable by group or others"),
            (0o644, 65534, "is not owned by root"),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
            let err = read_config(&path).unwrap_err().to_string();
            assert!(err.contains(why), "{mode:o} {uid}: {err}");
        }
        let err = read_config(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
    }

    /// The package's /etc/containarium/config.toml (packaging/config.toml)
    /// shows every key: its `#key = value` lines, uncommented, parse
    /// strictly and give exactly the built-in defaults, and every key the
    /// parser knows appears in it.
    #[test]
    fn the_packaged_config_shows_every_key_at_its_default() {
        let text = include_str!("../packaging/config.toml");
        let uncommented: String = text
            .lines()
            .filter_map(|line| line.strip_prefix('#'))
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '['))
            .map(|line| format!("{line}\n"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let built_in = format!("{:?}", Defaults::load(&paths).unwrap());
        std::fs::create_dir_all(dir.path().join("etc/containarium")).unwrap();
        std::fs::write(paths.config_file(), &uncommented).unwrap();
        let packaged = format!("{:?}", Defaults::load(&paths).unwrap());
        assert_eq!(packaged, built_in, "{uncommented}");
        // Control: the lines do set values, and a changed one would show.
        assert!(uncommented.contains("\ncpu = 2\n") && uncommented.contains("\n[fail2ban]\n"));
        std::fs::write(
            paths.config_file(),
            uncommented.replace("cpu = 2", "cpu = 3"),
        )
        .unwrap();
        assert_ne!(format!("{:?}", Defaults::load(&paths).unwrap()), built_in);

        // toml's unknown-field error lists every key of the table.
        for (table, probe) in [
            ("", "no-such-key = 1"),
            ("fail2ban", "[fail2ban]\nno-such-key = 1"),
        ] {
            let err = toml::from_str::<ConfigFile>(probe).unwrap_err().to_string();
            let (_, keys) = err.split_once("expected one of ").expect(&err);
            let keys: Vec<&str> = keys
                .split(',')
                .map(|key| key.trim().trim_matches('`'))
                .map(|key| key.split('`').next().unwrap())
                .collect();
            assert!(keys.len() >= 9, "{table}: {keys:?}");
            for key in keys {
                let shown = [
                    format!("#{key} = "),
                    format!("# {key} = "),
                    format!("#[{key}]"),
                ];
                assert!(
                    shown.iter().any(|line| text.contains(&format!("\n{line}"))),
                    "packaging/config.toml does not show {table} {key}"
                );
            }
        }
    }

    /// Without the `test-paths` feature the root is `/`, whatever the
    /// environment says; with it (the CLI tests), `CONTAINARIUM_ROOT`.
    #[test]
    fn containarium_root_needs_the_test_build() {
        // SAFETY: no other test in this binary reads CONTAINARIUM_ROOT.
        unsafe { std::env::set_var("CONTAINARIUM_ROOT", "/tmp/elsewhere") };
        let lock = Paths::from_env().lock_file();
        if cfg!(feature = "test-paths") {
            assert_eq!(lock, PathBuf::from("/tmp/elsewhere/run/containarium.lock"));
        } else {
            assert_eq!(lock, PathBuf::from("/run/containarium.lock"));
        }
    }

    #[test]
    fn paths_are_under_the_root() {
        let paths = Paths::new("/tmp/x");
        let alice = "alice".parse().unwrap();
        assert_eq!(
            paths.key_file(&alice),
            PathBuf::from("/tmp/x/etc/containarium/keys/alice")
        );
        assert_eq!(
            Paths::new("/").sshd_dropin(),
            PathBuf::from("/etc/ssh/sshd_config.d/00-containarium.conf")
        );
    }
}
