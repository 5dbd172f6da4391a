//! `containarium host doctor`: checks every invariant the product relies on
//! and prints one line per check, `ok`, `warn` or `FAIL`, with the fix for
//! each failure. Read-only: it changes nothing, takes no lock and plans
//! nothing.
//!
//! Probing is kept apart from judging. `probe_all` and `probe_incus` run
//! the commands (through `exec`) and read the files; every `*_check`
//! function is pure,
//! from what was captured to a [`Check`], and is unit-tested on real
//! captured output. A check whose probe fails (Incus down, a tool missing)
//! is a `FAIL` of that check, never an early exit: the admin sees
//! everything at once. Exit code 1 when anything failed, like other
//! runtime failures.
//!
//! Jump accounts are read from the local account database (`/etc/passwd`,
//! `/etc/group` under the host root), which is where `useradd` puts them;
//! the key file each should have is `accounts::jump_key_file` of the
//! container's metadata, exactly what `sync-accounts` writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddrV4;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::Env;
use crate::accounts;
use crate::config::Defaults;
use crate::exec::{self, Cmd, shell_quote};
use crate::incus::{Incus, Instance};
use crate::network::{self, AclRules, TenantNet};
use crate::size::ByteSize;
use crate::{fail2ban, files, sshd, sysctl};

/// Check this bastion: sshd, key files, jump accounts, containers, the
/// tenant network, fail2ban, storage and the clock (changes nothing)
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON: {"ok", "checks": [{name, status, detail, fix}]}
    #[arg(long)]
    json: bool,
}

impl DoctorArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        // The owners check reports a misattributed instance itself.
        crate::incus::silence_owner_warnings();
        let checks = probe_all(env);
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect();
        if self.json {
            super::print_json(&serde_json::json!({
                "ok": failed.is_empty(),
                "checks": checks,
            }));
        } else {
            for check in &checks {
                crate::outln!("{check}");
            }
        }
        if !failed.is_empty() {
            bail!("host doctor: {} failed", failed.join(", "));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report. `fix` is a command to paste where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{label:<4} {}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: Option<&str>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: fix.map(str::to_string),
        }
    }
}

/// One thing wrong, found by a check that looks at many things.
#[derive(Debug, Clone)]
struct Problem {
    status: Status,
    what: String,
    fix: Option<String>,
}

fn problem(status: Status, what: impl Into<String>, fix: Option<String>) -> Problem {
    Problem {
        status,
        what: what.into(),
        fix,
    }
}

/// The check's verdict from its problems: the worst status, every problem
/// in the detail, each distinct fix once (joined with `&&`, so the line
/// stays one command to paste).
fn verdict(name: &'static str, problems: Vec<Problem>, ok_detail: String) -> Check {
    let Some(status) = problems.iter().map(|p| p.status).max() else {
        return Check::ok(name, ok_detail);
    };
    let detail = problems
        .iter()
        .map(|p| p.what.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let mut fixes: Vec<String> = Vec::new();
    for fix in problems.into_iter().filter_map(|p| p.fix) {
        if !fixes.contains(&fix) {
            fixes.push(fix);
        }
    }
    Check {
        name,
        status,
        detail,
        fix: (!fixes.is_empty()).then(|| fixes.join(" && ")),
    }
}

const HOST_INIT: &str = "containarium host init";
const SYNC: &str = "containarium sync-accounts";

/// Runs every probe and judges it; never fails as a whole.
fn probe_all(env: &Env) -> Vec<Check> {
    let paths = &env.paths;
    let mut checks = Vec::new();

    let server = exec::run(&Cmd::new("incus").args(["query", "/1.0"]))
        .map(|o| o.stdout)
        .map_err(|e| e.to_string());
    checks.push(incus_check(server.as_deref().map_err(String::as_str)));
    let defaults = Defaults::load(paths);
    checks.push(match &defaults {
        Ok(_) if paths.config_file().exists() => {
            Check::ok("config", paths.config_file().display().to_string())
        }
        Ok(_) => Check::ok("config", "no config file: built-in defaults"),
        Err(err) => Check::fail(
            "config",
            format!("{err:#}"),
            format!("correct {}", paths.config_file().display()),
        ),
    });

    // sshd
    let pid_file = paths.sshd_pid_file();
    checks.push(sshd_running_check(
        sshd::running_pid(Path::new("/proc"), &pid_file),
        &pid_file,
    ));
    let config_path = paths.sshd_config();
    let main_config = files::read_optional(&config_path).ok().flatten();
    let dropin = files::read_optional(&paths.sshd_dropin()).ok().flatten();
    // Includes followed as sshd does; one we cannot follow fails the check.
    let others = super::host::other_dropins(paths);
    let resolved = main_config
        .as_deref()
        .map(|main| sshd::resolve_includes(main, &|p| paths.at(p)));
    let earlier = match (&resolved, &others) {
        (Some(Err(why)), _) => Some(format!("{}: {why}", config_path.display())),
        (_, Err(err)) => Some(format!("{err:#}")),
        (Some(Ok(main)), Ok(others)) => sshd::earlier_match(main, others),
        (None, _) => None,
    };
    // One address of each `Match Address` anywhere, for sshd -T below.
    let main = match &resolved {
        Some(Ok(main)) => main.as_str(),
        _ => "",
    };
    let more = sshd::match_addresses(main, others.as_deref().unwrap_or_default());
    let wanted = sshd::dropin(sshd::supports_per_source(), paths.host_cert().exists());
    checks.push(dropin_check(
        &config_path,
        main_config.as_deref(),
        &paths.sshd_dropin(),
        dropin.as_deref(),
        &wanted,
        earlier,
    ));

    let passwd = std::fs::read_to_string(paths.passwd()).unwrap_or_default();
    let group = std::fs::read_to_string(paths.group()).unwrap_or_default();
    let db = AccountDb::parse(&passwd, &group);

    // sshd -T answers only for a real member of the group: ask about the
    // first jump account there is.
    let user = db.jump_accounts().next().map(|a| a.name.clone());
    let answers: Vec<(&str, Result<String, String>)> = match &user {
        Some(user) => sshd::SAMPLE_ADDRS
            .iter()
            .copied()
            .chain(more.iter().map(String::as_str))
            .map(|addr| {
                let out = exec::run(&sshd::effective_cmd(&config_path, user, addr));
                (addr, out.map(|o| o.stdout).map_err(|e| e.to_string()))
            })
            .collect(),
        None => Vec::new(),
    };
    checks.push(policy_check(user.as_deref(), &answers));

    let keys_dir = paths.keys_dir();
    checks.push(key_dir_check(&keys_dir, file_facts(&keys_dir).as_ref()));
    let key_files = read_key_files(&keys_dir);
    checks.push(key_files_check(&keys_dir, &key_files));

    // Without the daemon nothing about containers can be asked; the
    // incus check has said so.
    if let Ok(server) = &server {
        let host = Host {
            db: &db,
            key_files: &key_files,
            keys_dir: &keys_dir,
        };
        checks.extend(probe_incus(env, server, defaults.as_ref().ok(), &host));
    }
    let fail2ban_on = defaults.as_ref().map_or(true, |d| d.fail2ban.enabled);
    checks.push(fail2ban_check(fail2ban_on, &probe_fail2ban()));
    let global = exec::run(&sshd::global_cmd(&config_path)).map(|o| o.stdout);
    checks.push(algorithms_check(
        global.as_deref().map_err(|e| e.to_string()),
    ));
    let proc_sys = paths.proc_sys();
    checks.push(kernel_limits_check(&sysctl::wanted(|key| {
        sysctl::parse(&std::fs::read_to_string(sysctl::proc_path(&proc_sys, key)).ok()?)
    })));
    checks.push(clock_check(SystemTime::now(), built(), ntp_synchronized()));
    checks
}

/// What the host side holds, for the checks against Incus.
struct Host<'a> {
    db: &'a AccountDb,
    key_files: &'a KeyFiles,
    keys_dir: &'a Path,
}

/// The checks that need Incus: every managed container, the tenant
/// network and the storage pools.
fn probe_incus(env: &Env, server: &str, defaults: Option<&Defaults>, host: &Host) -> Vec<Check> {
    let incus = &env.incus;
    let (here, all) = match (incus.instances(), network::all_instances(incus)) {
        (Ok(here), Ok(all)) => (here, all),
        (Err(err), _) | (_, Err(err)) => {
            let detail = format!("listing instances: {err:#}");
            return vec![Check::fail("containers", detail, "incus list")];
        }
    };
    let managed: Vec<&Instance> = here.iter().filter(|i| i.owner().is_some()).collect();
    // Jump accounts are host-wide: one is an orphan only when no project
    // has its container.
    // An instance whose recorded owner is in doubt still keeps its named
    // user's account from being called an orphan: `owners` fails it.
    let owners: BTreeSet<&str> = all.iter().filter_map(|i| i.named_user()).collect();
    // Where each container's tunnels go, computed (never its `ssh` device).
    let endpoints = network::Endpoints::new(incus, || match defaults {
        Some(defaults) => TenantNet::probe(incus, defaults.network.as_deref()),
        None => bail!("config.toml does not load: the tenant network is unknown"),
    });
    let endpoints: Endpoints = managed
        .iter()
        .map(|i| {
            let at = endpoints.computed(i).map_err(|e| format!("{e:#}"));
            (i.name.clone(), at)
        })
        .collect();
    let mut checks = vec![
        owners_check(&all),
        jump_accounts_check(
            &managed,
            &endpoints,
            &owners,
            host.db,
            host.key_files,
            host.keys_dir,
        ),
        ssh_devices_check(incus, &managed, &endpoints),
        privilege_check(incus, &managed),
        quotas_check(&managed, defaults),
        processes_check(&managed),
        autostart_check(incus, &managed),
    ];
    // A config.toml that does not load has failed the config check; the
    // network and pool it names are unknown.
    let Some(defaults) = defaults else {
        return checks;
    };
    match TenantNet::probe(incus, defaults.network.as_deref()) {
        Ok(net) => {
            checks.push(nic_check(incus, &managed, &net));
            checks.push(dhcp_check(&managed, &net));
            let guard = net
                .require_acl(&firewall_of(server))
                .map_err(|e| e.to_string());
            let wanted = match network::guarded_addresses(incus, &server_of(server)) {
                Ok(guarded) => network::acl_rules(&net, &guarded, &defaults.deny_egress),
                Err(err) => {
                    checks.push(Check::fail("tenant-acl", format!("{err:#}"), HOST_INIT));
                    return checks;
                }
            };
            let current = network::current_acl(incus).map_err(|e| format!("{e:#}"));
            checks.push(acl_check(&net.name, guard, current, &wanted));
            checks.push(ipv6_check(&net));
        }
        Err(err) => checks.push(Check::fail("tenant-acl", format!("{err:#}"), HOST_INIT)),
    }
    // The pool new containers go to, and every pool a container is on.
    let mut pools: BTreeSet<String> = managed
        .iter()
        .filter_map(|i| i.expanded_devices.get("root")?.get("pool").cloned())
        .collect();
    pools.extend(
        defaults
            .storage_pool
            .clone()
            .or_else(|| profile_pool(incus)),
    );
    checks.push(storage_check(
        pools.iter().map(|p| probe_pool(incus, p)).collect(),
    ));
    checks
}

// ---------------------------------------------------------------------------
// Incus
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct Server {
    #[serde(default)]
    environment: ServerEnv,
}

#[derive(Deserialize, Default)]
struct ServerEnv {
    #[serde(default)]
    server_version: String,
    #[serde(default)]
    firewall: String,
    #[serde(default)]
    server_clustered: bool,
}

fn firewall_of(server_json: &str) -> String {
    server_of(server_json).firewall
}

fn server_of(server_json: &str) -> crate::incus::Server {
    let env = serde_json::from_str::<Server>(server_json)
        .map(|s| s.environment)
        .unwrap_or_default();
    crate::incus::Server {
        firewall: env.firewall,
        clustered: env.server_clustered,
        name: String::new(),
    }
}

/// `incus query /1.0`: the daemon answers, says its version, and has a
/// firewall driver (without one nothing isolates tenants). Incus 6.12 and
/// 6.13 let ACL-guarded traffic through (CVE-2025-52889, CVE-2025-52890).
fn incus_check(server: Result<&str, &str>) -> Check {
    const NAME: &str = "incus";
    let json = match server {
        Ok(json) => json,
        Err(err) => {
            return Check::fail(
                NAME,
                format!("the Incus daemon does not answer: {err}"),
                "start incusd (systemctl start incus)",
            );
        }
    };
    let Ok(server) = serde_json::from_str::<Server>(json) else {
        return Check::fail(
            NAME,
            "`incus query /1.0` did not print JSON",
            "incus query /1.0",
        );
    };
    let env = server.environment;
    let version = if env.server_version.is_empty() {
        "(version unknown)".to_string()
    } else {
        env.server_version.clone()
    };
    if env.firewall.is_empty() {
        return Check::fail(
            NAME,
            format!("Incus {version} has no firewall driver: tenants are not isolated"),
            "apt-get install nftables, then restart incusd",
        );
    }
    if ["6.12", "6.13"]
        .iter()
        .any(|bad| version == *bad || version.starts_with(&format!("{bad}.")))
    {
        return Check::fail(
            NAME,
            format!("Incus {version} lets traffic past network ACLs (CVE-2025-52889/52890)"),
            "upgrade Incus (6.0 LTS or 6.14 and later)",
        );
    }
    Check::ok(NAME, format!("Incus {version}, firewall {}", env.firewall))
}

// ---------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------

fn sshd_running_check(pid: Option<i32>, pid_file: &Path) -> Check {
    match pid {
        Some(pid) => Check::ok(
            "sshd-running",
            format!("pid {pid} ({})", pid_file.display()),
        ),
        None => Check::fail(
            "sshd-running",
            format!(
                "{} does not name a running sshd of root's",
                pid_file.display()
            ),
            "systemctl start ssh",
        ),
    }
}

/// sshd_config reads sshd_config.d, our drop-in is there and is what this
/// version writes, and no Match block is read before it.
fn dropin_check(
    config: &Path,
    main_config: Option<&str>,
    dropin_path: &Path,
    dropin: Option<&str>,
    wanted: &str,
    earlier: Option<String>,
) -> Check {
    const NAME: &str = "sshd-dropin";
    let (config_shown, dropin_shown) = (config.display(), dropin_path.display());
    let Some(main_config) = main_config else {
        return Check::fail(
            NAME,
            format!("{config_shown} not found"),
            "apt-get install openssh-server",
        );
    };
    if !sshd::includes_dropins(main_config) {
        return Check::fail(
            NAME,
            format!("{config_shown} does not read sshd_config.d"),
            format!("add `Include /etc/ssh/sshd_config.d/*.conf` at the top of {config_shown}"),
        );
    }
    if let Some(reason) = earlier {
        return Check::fail(
            NAME,
            format!("{reason}: it overrides containarium's policy for jump accounts"),
            format!("move it after {dropin_shown} or remove it"),
        );
    }
    match dropin {
        None => Check::fail(NAME, format!("{dropin_shown} is missing"), HOST_INIT),
        Some(text) if !text.starts_with(sshd::MARKER) => Check::fail(
            NAME,
            format!("{dropin_shown} was not written by containarium"),
            format!(
                "mv --backup=numbered -t /root/ {} && {HOST_INIT}",
                shell_quote(&dropin_path.to_string_lossy())
            ),
        ),
        Some(text) if text != wanted => Check::fail(
            NAME,
            format!("{dropin_shown} differs from what containarium writes"),
            HOST_INIT,
        ),
        Some(_) => Check::ok(NAME, format!("{dropin_shown}, included by {config_shown}")),
    }
}

/// `sshd -T` for a jump account from each sample address shows every
/// setting of our Match block.
fn policy_check(user: Option<&str>, answers: &[(&str, Result<String, String>)]) -> Check {
    const NAME: &str = "sshd-policy";
    let Some(user) = user else {
        return Check::ok(NAME, "no jump account yet to ask sshd -T about");
    };
    for (addr, answer) in answers {
        match answer {
            Err(err) => return Check::fail(NAME, err.clone(), "sshd -t"),
            Ok(text) => {
                let wrong = sshd::policy_mismatches(&sshd::parse_effective(text));
                if !wrong.is_empty() {
                    return Check::fail(
                        NAME,
                        format!(
                            "sshd would not apply containarium's policy to {user} from {addr}: {}",
                            wrong.join(", ")
                        ),
                        HOST_INIT,
                    );
                }
            }
        }
    }
    let addrs: Vec<&str> = answers.iter().map(|(a, _)| *a).collect();
    Check::ok(
        NAME,
        format!(
            "our Match block applies to {user} from {}",
            addrs.join(", ")
        ),
    )
}

// ---------------------------------------------------------------------------
// Key directory and key files
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What a key path's metadata says, not following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileFacts {
    kind: Kind,
    uid: u32,
    mode: u32,
}

fn file_facts(path: &Path) -> Option<FileFacts> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let kind = if meta.file_type().is_symlink() {
        Kind::Symlink
    } else if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Some(FileFacts {
        kind,
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
    })
}

/// Each entry of the key directory: its facts and, for a regular file,
/// its text.
type KeyFiles = BTreeMap<String, (FileFacts, Option<String>)>;

fn read_key_files(dir: &Path) -> KeyFiles {
    let mut out = KeyFiles::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(facts) = file_facts(&path) {
            let text = (facts.kind == Kind::File)
                .then(|| std::fs::read_to_string(&path).ok())
                .flatten();
            out.insert(name, (facts, text));
        }
    }
    out
}

/// What is wrong with a path only root may change: sshd trusts whatever
/// it finds there.
fn ownership_problems(path: &Path, facts: &FileFacts, want: Kind) -> Vec<Problem> {
    let shown = path.display();
    let quoted = shell_quote(&path.to_string_lossy());
    if facts.kind != want {
        let what = match facts.kind {
            Kind::Symlink => "is a symlink",
            Kind::Dir => "is a directory",
            _ => "is not a regular file",
        };
        return vec![problem(
            Status::Fail,
            format!("{shown} {what}"),
            // Moved aside, not deleted: it may be someone's.
            Some(format!("mv --backup=numbered -t /root/ {quoted} && {SYNC}")),
        )];
    }
    let mut found = Vec::new();
    if facts.uid != 0 {
        found.push(problem(
            Status::Fail,
            format!("{shown} is owned by UID {}, not root", facts.uid),
            Some(format!("chown root:root {quoted}")),
        ));
    }
    if facts.mode & 0o022 != 0 {
        found.push(problem(
            Status::Fail,
            format!(
                "{shown} is writable by group or others (mode {:04o})",
                facts.mode
            ),
            Some(format!("chmod go-w {quoted}")),
        ));
    }
    found
}

fn key_dir_check(dir: &Path, facts: Option<&FileFacts>) -> Check {
    const NAME: &str = "key-dir";
    let Some(facts) = facts else {
        return Check::fail(NAME, format!("{} is missing", dir.display()), HOST_INIT);
    };
    let mut problems = ownership_problems(dir, facts, Kind::Dir);
    if facts.kind == Kind::Symlink {
        problems = vec![problem(
            Status::Fail,
            format!("{} is a symlink", dir.display()),
            Some(format!(
                "mv --backup=numbered -t /root/ {} && {HOST_INIT} && {SYNC}",
                shell_quote(&dir.to_string_lossy())
            )),
        )];
    }
    verdict(
        NAME,
        problems,
        format!("{} is root's and not writable by others", dir.display()),
    )
}

fn key_files_check(dir: &Path, files: &KeyFiles) -> Check {
    let problems: Vec<Problem> = files
        .iter()
        .flat_map(|(name, (facts, _))| ownership_problems(&dir.join(name), facts, Kind::File))
        .collect();
    verdict(
        "key-files",
        problems,
        format!(
            "{} key files, root's and not writable by others",
            files.len()
        ),
    )
}

// ---------------------------------------------------------------------------
// Jump accounts against Incus
// ---------------------------------------------------------------------------

/// One line of /etc/passwd.
#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    gid: u32,
    shell: String,
}

/// The local account database, and the GID of our group in it.
#[derive(Debug, Default)]
struct AccountDb {
    users: BTreeMap<String, PasswdEntry>,
    group_gid: Option<u32>,
}

impl AccountDb {
    fn parse(passwd: &str, group: &str) -> AccountDb {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let [name, _, _, gid, _, _, shell] = fields[..] else {
                    return None;
                };
                let entry = PasswdEntry {
                    name: name.to_string(),
                    gid: gid.parse().ok()?,
                    shell: shell.to_string(),
                };
                Some((entry.name.clone(), entry))
            })
            .collect();
        let group_gid = group.lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == accounts::GROUP)
                .then(|| fields.nth(1)?.parse().ok())
                .flatten()
        });
        AccountDb { users, group_gid }
    }

    /// Accounts whose primary group is ours: the jump accounts.
    fn jump_accounts(&self) -> impl Iterator<Item = &PasswdEntry> {
        self.users
            .values()
            .filter(|u| Some(u.gid) == self.group_gid)
    }
}

/// Every instance carrying our owner key (in any project) records as its
/// owner the user its name says. One that names somebody else (a restored
/// backup edited to do so, an `incus config set`) is skipped by every verb,
/// never acted on for that other user: it is failed here, with the fix for
/// when it really is its named user's.
fn owners_check(all: &[Instance]) -> Check {
    let mut problems = Vec::new();
    for instance in all {
        let Some(recorded) = instance.foreign_owner() else {
            continue;
        };
        let incus = Incus::new(Some(instance.project.clone()).filter(|p| p != "default"));
        let name = instance.name.as_str();
        let fix = match crate::names::user_of_container(name) {
            Some(user) => incus.config_set_cmd(name, crate::incus::key::OWNER, user.as_str()),
            None => incus.cmd(["config", "unset", name, crate::incus::key::OWNER]),
        };
        problems.push(problem(
            Status::Fail,
            format!(
                "{name} records owner \"{}\", not the user its name says: every verb skips it",
                recorded.escape_debug()
            ),
            Some(fix.to_string()),
        ));
    }
    let managed = all.iter().filter(|i| i.owner().is_some()).count();
    verdict(
        "owners",
        problems,
        format!("{managed} containers, each recording the user its name says"),
    )
}

/// Every managed container's owner has a jump account of ours with the
/// shell and key file `sync-accounts` gives it; every jump account and key
/// file belongs to a managed container (in any project).
fn jump_accounts_check(
    managed: &[&Instance],
    endpoints: &Endpoints,
    owners: &BTreeSet<&str>,
    db: &AccountDb,
    key_files: &KeyFiles,
    keys_dir: &Path,
) -> Check {
    let mut problems = Vec::new();
    let sync = || Some(SYNC.to_string());
    for instance in managed {
        let user = instance.owner().unwrap_or_default();
        match db.users.get(user) {
            None => problems.push(problem(
                Status::Fail,
                format!("{} has no jump account {user}", instance.name),
                sync(),
            )),
            Some(account) if Some(account.gid) != db.group_gid => problems.push(problem(
                Status::Fail,
                format!(
                    "host account {user} of {} was not made by containarium",
                    instance.name
                ),
                None,
            )),
            Some(account) if account.shell != accounts::SHELL => problems.push(problem(
                Status::Fail,
                format!("jump account {user} has shell {}", account.shell),
                Some(format!("usermod --shell {} -- {user}", accounts::SHELL)),
            )),
            Some(_) => {}
        }
        let wanted = match (endpoints.get(&instance.name), instance.keys()) {
            (Some(Ok(to)), Ok(keys)) => accounts::jump_key_file(&to.to_string(), &keys),
            (Some(Err(why)), _) => {
                problems.push(problem(Status::Fail, why.clone(), None));
                continue;
            }
            (None, _) => {
                problems.push(problem(
                    Status::Fail,
                    format!("{}: where its tunnels go is unknown", instance.name),
                    None,
                ));
                continue;
            }
            (_, Err(err)) => {
                problems.push(problem(Status::Fail, err.to_string(), None));
                continue;
            }
        };
        match key_files.get(user) {
            None => problems.push(problem(
                Status::Fail,
                format!("{user} has no key file"),
                sync(),
            )),
            Some((_, Some(text))) if *text == wanted => {}
            Some((_, Some(_))) => problems.push(problem(
                Status::Fail,
                format!("{user}'s key file differs from Incus metadata"),
                sync(),
            )),
            // Not a regular file: key-files says what it is.
            Some((_, None)) => {}
        }
    }
    for account in db
        .jump_accounts()
        .filter(|a| !owners.contains(a.name.as_str()))
    {
        let name = &account.name;
        problems.push(problem(
            Status::Fail,
            format!("jump account {name} has no container"),
            Some(format!(
                "userdel -- {name} && rm -f {}",
                shell_quote(&keys_dir.join(name).to_string_lossy())
            )),
        ));
    }
    for name in key_files.keys().filter(|n| !owners.contains(n.as_str())) {
        if db.jump_accounts().any(|a| a.name == *name) {
            continue; // said above, with the account
        }
        problems.push(problem(
            Status::Fail,
            format!("key file {name} has no container"),
            Some(format!(
                "rm -f {}",
                shell_quote(&keys_dir.join(name).to_string_lossy())
            )),
        ));
    }
    verdict(
        "jump-accounts",
        problems,
        format!(
            "{} containers, each with its jump account and key file",
            managed.len()
        ),
    )
}

/// Where each managed container's tunnels go, by name, as
/// [`network::Endpoints::computed`] says (or why it cannot say).
type Endpoints = BTreeMap<String, Result<SocketAddrV4, String>>;

/// The `ssh` device is what containarium publishes: none off a cluster, on
/// one exactly `create`'s, listening at the computed endpoint. A snapshot
/// or a backup can bring back one that listens anywhere on the host; key
/// files are computed and never follow it, but Incus still listens there.
fn ssh_devices_check(incus: &Incus, managed: &[&Instance], endpoints: &Endpoints) -> Check {
    let mut problems = Vec::new();
    for instance in managed {
        let name = instance.name.as_str();
        let Some(Ok(at)) = endpoints.get(name) else {
            continue; // jump-accounts says why
        };
        let Some(why) = network::proxy_problem(instance, *at) else {
            continue;
        };
        let mut fix = Vec::new();
        if instance
            .expanded_devices
            .contains_key(crate::incus::PROXY_DEVICE)
        {
            fix.push(incus.proxy_remove_cmd(name).to_string());
        }
        if let (Some(_), Some(ip)) = (instance.member(), instance.pinned_ipv4()) {
            fix.push(incus.proxy_add_cmd(name, at, ip).to_string());
        }
        problems.push(problem(Status::Fail, why, Some(fix.join(" && "))));
    }
    verdict(
        "ssh-devices",
        problems,
        format!(
            "{} containers, each published only where containarium publishes it",
            managed.len()
        ),
    )
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// Unprivileged, as `create` makes them: none of what `restore`'s
/// allow-list refuses (security.privileged, raw.*, an ID map onto low host
/// IDs, devices create does not add). Other keys create does not set are
/// a warning: an admin may have set them, and they give no root.
fn privilege_check(incus: &Incus, managed: &[&Instance]) -> Check {
    let mut problems = Vec::new();
    for instance in managed {
        let name = instance.name.as_str();
        // A running container keeps what it started with until restarted.
        let unset = |key: &str| {
            let unset = incus.cmd(["config", "unset", name, key]).to_string();
            Some(if instance.is_running() {
                format!("{unset} && {}", incus.cmd(["restart", name]))
            } else {
                unset
            })
        };
        for (key, value) in &instance.expanded_config {
            if key == "security.privileged" {
                if value == "true" {
                    problems.push(problem(
                        Status::Fail,
                        format!("{name} is privileged (security.privileged=true)"),
                        unset(key),
                    ));
                }
            } else if key.starts_with("raw.") {
                problems.push(problem(
                    Status::Fail,
                    format!("{name} sets {key}"),
                    unset(key),
                ));
            } else if let Some(id) = super::restore::low_host_id(key, value) {
                problems.push(problem(
                    Status::Fail,
                    format!("{name}'s {key} maps it onto host ID {id}"),
                    None,
                ));
            } else if !super::restore::config_allowed(key) && instance.config.contains_key(key) {
                problems.push(problem(
                    Status::Warn,
                    format!("{name} sets {key}, which containarium never does"),
                    None,
                ));
            }
        }
        for (device, spec) in &instance.expanded_devices {
            if let Err(why) = super::restore::device_allowed(device, spec) {
                problems.push(problem(
                    Status::Fail,
                    format!("{name}: {why}"),
                    Some(
                        incus
                            .cmd(["config", "device", "remove", name, device])
                            .to_string(),
                    ),
                ));
            }
        }
    }
    verdict(
        "privilege",
        problems,
        format!("{} containers unprivileged", managed.len()),
    )
}

/// limits.cpu, limits.memory and the root disk's size are set.
fn quotas_check(managed: &[&Instance], defaults: Option<&Defaults>) -> Check {
    let mut problems = Vec::new();
    for instance in managed {
        let mut flags = Vec::new();
        let cpu_ok = instance
            .config_value("limits.cpu")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n >= 1);
        let memory_ok = instance
            .config_value("limits.memory")
            .is_some_and(|v| v.parse::<ByteSize>().is_ok());
        let disk_ok = instance
            .root_size()
            .is_some_and(|v| v.parse::<ByteSize>().is_ok());
        let value = |f: fn(&Defaults) -> String, placeholder: &str| {
            defaults.map_or(placeholder.to_string(), f)
        };
        let mut missing = Vec::new();
        if !cpu_ok {
            missing.push("limits.cpu");
            flags.push(format!("--cpu {}", value(|d| d.cpu.to_string(), "N")));
        }
        if !memory_ok {
            missing.push("limits.memory");
            flags.push(format!(
                "--memory {}",
                value(|d| d.memory.to_string(), "SIZE")
            ));
        }
        if !disk_ok {
            missing.push("the root disk size");
            flags.push(format!("--disk {}", value(|d| d.disk.to_string(), "SIZE")));
        }
        if !missing.is_empty() {
            let user = instance.owner().unwrap_or_default();
            problems.push(problem(
                Status::Fail,
                format!("{} has no {}", instance.name, missing.join(", ")),
                Some(format!("containarium resize {user} {}", flags.join(" "))),
            ));
        }
    }
    verdict(
        "quotas",
        problems,
        format!(
            "{} containers with CPU, memory and disk limits",
            managed.len()
        ),
    )
}

/// limits.processes is set: without it a fork bomb is bounded only by
/// memory. `sync-accounts` gives config.toml's to every tenant without one.
fn processes_check(managed: &[&Instance]) -> Check {
    let problems = managed
        .iter()
        .filter(|i| i.config_value("limits.processes").is_none())
        .map(|i| {
            let what = format!("{} has no limits.processes", i.name);
            problem(Status::Fail, what, Some(SYNC.to_string()))
        })
        .collect();
    verdict(
        "processes",
        problems,
        format!("{} containers with a process limit", managed.len()),
    )
}

/// eth0 on the tenant network, its address pinned, and filtered.
fn nic_check(incus: &Incus, managed: &[&Instance], net: &TenantNet) -> Check {
    let mut problems = Vec::new();
    for instance in managed {
        let name = &instance.name;
        let network = instance
            .expanded_devices
            .get("eth0")
            .and_then(|d| d.get("network"));
        if network != Some(&net.name) {
            problems.push(problem(
                Status::Fail,
                format!("{name}'s eth0 is not on tenant network {}", net.name),
                None,
            ));
            continue;
        }
        if instance.pinned_ipv4().is_none() {
            problems.push(problem(
                Status::Fail,
                format!("{name}'s eth0 has no pinned address"),
                None,
            ));
        }
        if let Some(cmd) = network::nic_fix_cmd(incus, instance, net) {
            let missing: Vec<&str> = cmd
                .args
                .iter()
                .skip_while(|a| *a != "eth0")
                .skip(1)
                .map(String::as_str)
                .collect();
            problems.push(problem(
                Status::Fail,
                format!("{name}'s eth0 lacks {}", missing.join(" ")),
                Some(cmd.to_string()),
            ));
        }
    }
    verdict(
        "nic-isolation",
        problems,
        format!(
            "{} containers pinned and filtered on {}",
            managed.len(),
            net.name
        ),
    )
}

/// No pinned address is one dnsmasq would lease to whoever asks first (a
/// made-up MAC from inside a tenant): the network has a DHCP range, and no
/// container of ours is pinned inside it.
fn dhcp_check(managed: &[&Instance], net: &TenantNet) -> Check {
    const NAME: &str = "dhcp-range";
    if let Some(why) = net.dhcp_problem() {
        return Check::fail(
            NAME,
            format!("tenant network {} {why}", net.name),
            HOST_INIT,
        );
    }
    let inside: Vec<String> = managed
        .iter()
        .filter_map(|i| Some((i, i.pinned_ipv4()?)))
        .filter(|(_, ip)| net.leasable(*ip))
        .map(|(i, ip)| format!("{} ({ip})", i.name))
        .collect();
    if !inside.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "pinned inside the DHCP range of {}, where anyone may lease them: {}",
                net.name,
                inside.join(", ")
            ),
            format!(
                "incus network set {} ipv4.dhcp.ranges=START-END (a range none of them is in)",
                net.name
            ),
        );
    }
    let ranges: Vec<String> = net
        .dhcp_ranges
        .iter()
        .flatten()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect();
    Check::ok(
        NAME,
        format!(
            "{} leases only {}; every pinned address is outside it",
            net.name,
            ranges.join(",")
        ),
    )
}

/// `create` sets boot.autostart unless told `--no-autostart`, which Incus
/// does not record: a container that will not come back after a reboot is
/// a warning, not a failure.
fn autostart_check(incus: &Incus, managed: &[&Instance]) -> Check {
    let problems = managed
        .iter()
        .filter(|i| !i.autostart())
        .map(|i| {
            problem(
                Status::Warn,
                format!("{} does not start at boot", i.name),
                Some(
                    incus
                        .cmd(["config", "set", i.name.as_str(), "boot.autostart=true"])
                        .to_string(),
                ),
            )
        })
        .collect();
    verdict(
        "autostart",
        problems,
        format!("{} containers start at boot", managed.len()),
    )
}

// ---------------------------------------------------------------------------
// The tenant network
// ---------------------------------------------------------------------------

/// Our ACL is on the tenant network (with a firewall: `require_acl`) and
/// holds the rules `host init` writes.
fn acl_check(
    net: &str,
    guard: Result<(), String>,
    current: Result<Option<AclRules>, String>,
    wanted: &AclRules,
) -> Check {
    const NAME: &str = "tenant-acl";
    if let Err(why) = guard {
        return Check::fail(NAME, why, HOST_INIT);
    }
    match current {
        Err(err) => Check::fail(NAME, err, HOST_INIT),
        Ok(None) => Check::fail(NAME, format!("{} does not exist", network::ACL), HOST_INIT),
        Ok(Some(rules)) if rules != *wanted => {
            let shown = |r: &AclRules| {
                r.egress
                    .iter()
                    .map(|r| format!("{} {}", r.action, r.destination).trim().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Check::fail(
                NAME,
                format!(
                    "{}'s rules differ from what host init writes: egress is [{}], not [{}]",
                    network::ACL,
                    shown(&rules),
                    shown(wanted)
                ),
                HOST_INIT,
            )
        }
        Ok(Some(_)) => Check::ok(NAME, format!("{} on {net}", network::ACL)),
    }
}

/// The tenant network gives tenants no IPv6, which the ACL would not cover
/// (`TenantNet::require_ipv4_only`); `host init` cannot fix that, so the
/// fix is Incus's own command.
fn ipv6_check(net: &TenantNet) -> Check {
    const NAME: &str = "tenant-ipv6";
    if net.ipv6 {
        Check::fail(
            NAME,
            network::ipv6_problem(&net.name),
            network::ipv6_fix(&net.name),
        )
    } else {
        Check::ok(NAME, format!("no IPv6 on {}", net.name))
    }
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

/// The default profile's root pool, where `create` puts containers when
/// config.toml names none.
fn profile_pool(incus: &Incus) -> Option<String> {
    incus.default_pool().ok().flatten()
}

/// What was learned about one storage pool.
#[derive(Debug)]
struct PoolProbe {
    name: String,
    /// `Err`: Incus could not describe it.
    driver: Result<String, String>,
    /// ZFS: `zpool status -x POOL` and `zfs get -H -o value compression`.
    zpool_status: Option<Result<String, String>>,
    compression: Option<Result<String, String>>,
    /// Others: `incus query /1.0/storage-pools/POOL/resources`.
    resources: Option<Result<String, String>>,
}

fn probe_pool(incus: &Incus, name: &str) -> PoolProbe {
    let run = |cmd: Cmd| exec::run(&cmd).map(|o| o.stdout).map_err(|e| e.to_string());
    let described = run(incus.query_cmd(&format!("/1.0/storage-pools/{name}")));
    let pool: Result<serde_json::Value, String> =
        described.and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()));
    let mut probe = PoolProbe {
        name: name.to_string(),
        driver: pool
            .as_ref()
            .map(|p| p["driver"].as_str().unwrap_or_default().to_string())
            .map_err(Clone::clone),
        zpool_status: None,
        compression: None,
        resources: None,
    };
    match &pool {
        Ok(p) if p["driver"] == "zfs" => {
            let dataset = p["config"]["zfs.pool_name"]
                .as_str()
                .unwrap_or(name)
                .to_string();
            let zpool = dataset.split('/').next().unwrap_or_default().to_string();
            probe.zpool_status = Some(run(Cmd::new("zpool").args(["status", "-x", &zpool])));
            probe.compression = Some(run(Cmd::new("zfs").args([
                "get",
                "-H",
                "-o",
                "value",
                "compression",
                &dataset,
            ])));
        }
        Ok(_) => {
            probe.resources = Some(run(
                incus.query_cmd(&format!("/1.0/storage-pools/{name}/resources"))
            ));
        }
        Err(_) => {}
    }
    probe
}

/// `zpool status -x POOL` prints "pool 'POOL' is healthy" (or "all pools
/// are healthy") and nothing else when all is well.
fn zpool_problem(pool: &str, status: &Result<String, String>) -> Option<Problem> {
    match status {
        Ok(text)
            if text.trim().ends_with("is healthy") || text.trim() == "all pools are healthy" =>
        {
            None
        }
        Ok(text) => {
            let state = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("state:"))
                .map_or("not healthy".to_string(), |s| s.trim().to_string());
            Some(problem(
                Status::Fail,
                format!("ZFS pool of {pool} is {state}"),
                Some(format!("zpool status -v {}", shell_quote(pool))),
            ))
        }
        Err(err) => Some(problem(Status::Fail, err.clone(), None)),
    }
}

/// A tenant's disk quota counts compressed bytes: without compression the
/// pool fills faster than it needs to.
fn compression_problem(pool: &str, value: &Result<String, String>) -> Option<Problem> {
    match value {
        Ok(v) if v.trim() == "off" => Some(problem(
            Status::Warn,
            format!("ZFS compression is off on {pool}"),
            Some(format!("zfs set compression=lz4 {}", shell_quote(pool))),
        )),
        Ok(_) => None,
        Err(err) => Some(problem(Status::Warn, err.clone(), None)),
    }
}

/// Free space from Incus's pool resources: a warning under 10 %, a failure
/// under 2 % (writes in every container start failing).
fn space_problem(pool: &str, resources: &Result<String, String>) -> Option<Problem> {
    #[derive(Deserialize)]
    struct Resources {
        space: Space,
    }
    #[derive(Deserialize)]
    struct Space {
        used: u64,
        total: u64,
    }
    let text = match resources {
        Ok(text) => text,
        Err(err) => return Some(problem(Status::Fail, err.clone(), None)),
    };
    let Ok(res) = serde_json::from_str::<Resources>(text) else {
        return Some(problem(
            Status::Fail,
            format!("could not read {pool}'s resources"),
            None,
        ));
    };
    let Space { used, total } = res.space;
    if total == 0 {
        return None;
    }
    let free = total.saturating_sub(used);
    let percent = free as f64 * 100.0 / total as f64;
    let status = match percent {
        p if p < 2.0 => Status::Fail,
        p if p < 10.0 => Status::Warn,
        _ => return None,
    };
    Some(problem(
        status,
        format!(
            "pool {pool} has {percent:.1}% free ({} of {})",
            crate::size::human(free),
            crate::size::human(total)
        ),
        Some(format!("incus storage info {}", shell_quote(pool))),
    ))
}

fn storage_check(pools: Vec<PoolProbe>) -> Check {
    let mut problems = Vec::new();
    for pool in &pools {
        if let Err(err) = &pool.driver {
            problems.push(problem(Status::Fail, err.clone(), None));
        }
        problems.extend(
            pool.zpool_status
                .as_ref()
                .and_then(|s| zpool_problem(&pool.name, s)),
        );
        problems.extend(
            pool.compression
                .as_ref()
                .and_then(|c| compression_problem(&pool.name, c)),
        );
        problems.extend(
            pool.resources
                .as_ref()
                .and_then(|r| space_problem(&pool.name, r)),
        );
    }
    let names: Vec<String> = pools
        .iter()
        .map(|p| format!("{} ({})", p.name, p.driver.as_deref().unwrap_or("?")))
        .collect();
    verdict(
        "storage",
        problems,
        if names.is_empty() {
            "no storage pool in use".into()
        } else {
            format!("{} healthy", names.join(", "))
        },
    )
}

// ---------------------------------------------------------------------------
// fail2ban
// ---------------------------------------------------------------------------

/// What `fail2ban-client status sshd` did.
#[derive(Debug)]
enum Fail2banProbe {
    NotInstalled,
    Ran {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
}

fn probe_fail2ban() -> Fail2banProbe {
    match exec::run_unchecked(&fail2ban::status()) {
        Err(err) if err.not_found => Fail2banProbe::NotInstalled,
        Err(err) => Fail2banProbe::Ran {
            code: None,
            stdout: String::new(),
            stderr: err.to_string(),
        },
        Ok(out) => Fail2banProbe::Ran {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        },
    }
}

/// fail2ban runs and our jail `sshd` is active, unless config.toml
/// switched it off.
fn fail2ban_check(enabled: bool, probe: &Fail2banProbe) -> Check {
    const NAME: &str = "fail2ban";
    if !enabled {
        return Check::warn(
            NAME,
            "switched off in config.toml ([fail2ban] enabled = false): nothing bans brute force",
            None,
        );
    }
    let (code, stdout, stderr) = match probe {
        Fail2banProbe::NotInstalled => {
            return Check::fail(
                NAME,
                "fail2ban-client is not installed: nothing bans brute force",
                format!("apt-get install fail2ban && {HOST_INIT}"),
            );
        }
        Fail2banProbe::Ran {
            code,
            stdout,
            stderr,
        } => (code, stdout, stderr),
    };
    let both = format!("{stdout}{stderr}");
    if *code == Some(0) {
        return match fail2ban::parse_status(stdout) {
            Ok(jail) => Check::ok(
                NAME,
                format!(
                    "jail sshd active: {} banned, {} failing now",
                    jail.currently_banned, jail.currently_failed
                ),
            ),
            Err(err) => Check::fail(NAME, err.to_string(), "fail2ban-client status sshd"),
        };
    }
    match fail2ban::Trouble::of(&both) {
        Some(fail2ban::Trouble::NoJail) => {
            return Check::fail(NAME, "fail2ban runs but has no sshd jail", HOST_INIT);
        }
        Some(fail2ban::Trouble::NotRunning) => {
            return Check::fail(NAME, "fail2ban is not running", "systemctl start fail2ban");
        }
        None => {}
    }
    let tail = both
        .trim()
        .lines()
        .last()
        .unwrap_or("no output")
        .to_string();
    Check::fail(
        NAME,
        format!("fail2ban-client status sshd failed: {tail}"),
        "fail2ban-client status sshd",
    )
}

/// The algorithms the bastion's sshd offers every client (`sshd -T`): any
/// an auditor fails is a warning, fixed by the hardening drop-in.
fn algorithms_check(global: Result<&str, String>) -> Check {
    const NAME: &str = "sshd-algorithms";
    let text = match global {
        Ok(text) => text,
        Err(err) => return Check::fail(NAME, format!("sshd -T failed: {err}"), "sshd -t"),
    };
    let weak = sshd::weak_algorithms(&sshd::parse_effective(text));
    if weak.is_empty() {
        return Check::ok(
            NAME,
            "no weak key exchange, host key, cipher or MAC offered",
        );
    }
    Check::warn(
        NAME,
        format!("offers {}", weak.join(", ")),
        Some("containarium host init --harden"),
    )
}

/// The kernel limits a host of many containers needs (src/sysctl.rs).
fn kernel_limits_check(wanted: &[(&str, u64, bool)]) -> Check {
    const NAME: &str = "kernel-limits";
    let low: Vec<String> = wanted
        .iter()
        .filter(|w| w.2)
        .map(|(key, value, _)| format!("{key} below {value}"))
        .collect();
    if low.is_empty() {
        return Check::ok(NAME, "inotify, key quotas and neighbour tables have room");
    }
    Check::fail(NAME, low.join(", "), HOST_INIT)
}

// ---------------------------------------------------------------------------
// The clock
// ---------------------------------------------------------------------------

/// When this binary was built, near enough: its file's modification time.
/// A clock before it has certainly gone back (a dead RTC battery, a VM
/// restored from an old snapshot), and then certificates, fail2ban's ban
/// times and `audit`'s records are all wrong.
fn built() -> Option<SystemTime> {
    std::fs::metadata(std::env::current_exe().ok()?)
        .ok()?
        .modified()
        .ok()
}

/// `timedatectl show -p NTPSynchronized --value` (yes/no); `None` without
/// systemd, where NTP is not checked.
fn ntp_synchronized() -> Option<String> {
    let cmd = Cmd::new("timedatectl").args(["show", "-p", "NTPSynchronized", "--value"]);
    exec::run(&cmd).ok().map(|o| o.stdout.trim().to_string())
}

fn clock_check(now: SystemTime, built: Option<SystemTime>, ntp: Option<String>) -> Check {
    const NAME: &str = "clock";
    // A day's slack: a binary built on a machine whose clock ran ahead.
    if let Some(built) = built
        && now + Duration::from_secs(86_400) < built
    {
        let days = built.duration_since(now).unwrap_or_default().as_secs() / 86_400;
        return Check::fail(
            NAME,
            format!("the system clock is {days} days behind this binary's build time"),
            "timedatectl set-ntp true (or chronyc makestep)",
        );
    }
    match ntp.as_deref() {
        Some("no") => Check {
            name: NAME,
            status: Status::Warn,
            detail: "the clock is not synchronised by NTP".into(),
            fix: Some("timedatectl set-ntp true".into()),
        },
        Some("yes") => Check::ok(NAME, "synchronised by NTP"),
        _ => Check::ok(
            NAME,
            "not behind this binary's build time (no timedatectl: NTP not checked)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::incus::parse_instances;

    fn status(check: &Check) -> (Status, Option<&str>) {
        (check.status, check.fix.as_deref())
    }

    /// The e2e container (Incus 6.0, `incus list --format json`) made
    /// privileged behind the tool's back, and the same container as
    /// `create` left it (the key removed again).
    fn privileged() -> Instance {
        parse_instances(&fixture("doctor-incus-list-privileged.json"))
            .unwrap()
            .remove(0)
    }

    fn healthy() -> Instance {
        let mut instance = privileged();
        instance.config.remove("security.privileged");
        instance.expanded_config.remove("security.privileged");
        instance
    }

    #[test]
    fn the_report_line_and_json_have_stable_fields() {
        let check = Check::fail("key-files", "x is writable", "chmod go-w x");
        assert_eq!(
            check.to_string(),
            "FAIL key-files: x is writable; fix: chmod go-w x"
        );
        assert_eq!(Check::ok("clock", "fine").to_string(), "ok   clock: fine");
        assert_eq!(
            serde_json::to_value(&check).unwrap(),
            serde_json::json!({"name": "key-files", "status": "fail",
                "detail": "x is writable", "fix": "chmod go-w x"})
        );
    }

    #[test]
    fn verdict_takes_the_worst_status_and_each_fix_once() {
        let problems = vec![
            problem(Status::Warn, "a", Some("fix-a".into())),
            problem(Status::Fail, "b", Some(SYNC.into())),
            problem(Status::Fail, "c", Some(SYNC.into())),
        ];
        let check = verdict("x", problems, "fine".into());
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.detail, "a; b; c");
        assert_eq!(
            check.fix.as_deref(),
            Some("fix-a && containarium sync-accounts")
        );
        assert_eq!(
            verdict("x", Vec::new(), "fine".into()),
            Check::ok("x", "fine")
        );
    }

    #[test]
    fn incus_answers_with_a_version_and_a_firewall() {
        let real = fixture("doctor-incus-server.json");
        let check = incus_check(Ok(&real));
        assert_eq!(check.status, Status::Ok, "{check}");
        assert!(check.detail.starts_with("Incus 6.0."), "{check}");
        assert!(check.detail.ends_with("firewall nftables"), "{check}");

        let mut server: serde_json::Value = serde_json::from_str(&real).unwrap();
        server["environment"]["firewall"] = "".into();
        let check = incus_check(Ok(&server.to_string()));
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("no firewall driver"), "{check}");

        server["environment"]["firewall"] = "nftables".into();
        server["environment"]["server_version"] = "6.13".into();
        let check = incus_check(Ok(&server.to_string()));
        assert!(check.detail.contains("CVE-2025-52889"), "{check}");

        let down = "`incus query /1.0` failed with exit code 1: Error: Get \"http://unix.socket/1.0\": dial unix /var/lib/incus/unix.socket: connect: no such file or directory";
        assert_eq!(incus_check(Err(down)).status, Status::Fail);
    }

    #[test]
    fn sshd_must_run() {
        let pid_file = Path::new("/run/sshd.pid");
        assert_eq!(sshd_running_check(Some(42), pid_file).status, Status::Ok);
        let check = sshd_running_check(None, pid_file);
        assert_eq!(status(&check), (Status::Fail, Some("systemctl start ssh")));
    }

    /// Debian 12's own sshd_config (captured from this machine).
    #[test]
    fn the_dropin_is_ours_current_and_read() {
        let main = fixture("doctor-sshd_config");
        let (config, path) = (
            Path::new("/etc/ssh/sshd_config"),
            Path::new("/etc/ssh/sshd_config.d/00-containarium.conf"),
        );
        let ours = sshd::dropin(true, false);
        let check = |main: &str, dropin: Option<&str>, earlier: Option<String>| {
            dropin_check(config, Some(main), path, dropin, &ours, earlier)
        };
        assert_eq!(check(&main, Some(&ours), None).status, Status::Ok);
        let missing = check(&main, None, None);
        assert_eq!(status(&missing), (Status::Fail, Some(HOST_INIT)));
        assert!(missing.detail.ends_with("is missing"), "{missing}");
        let old = ours.replace("MaxSessions 0", "MaxSessions 10");
        assert_eq!(
            status(&check(&main, Some(&old), None)),
            (Status::Fail, Some(HOST_INIT))
        );
        let foreign = check(&main, Some("Match User *\n  ForceCommand x\n"), None);
        assert_eq!(
            foreign.fix.as_deref(),
            Some(
                "mv --backup=numbered -t /root/ /etc/ssh/sshd_config.d/00-containarium.conf && containarium host init"
            )
        );
        let no_include = main.replace("Include /etc/ssh/sshd_config.d/*.conf", "");
        assert!(
            check(&no_include, Some(&ours), None)
                .detail
                .contains("does not read sshd_config.d")
        );
        let earlier = sshd::earlier_match(
            &main,
            &[("00-aaa.conf".into(), "Match Address 10.0.0.0/8\n".into())],
        );
        assert_eq!(check(&main, Some(&ours), earlier).status, Status::Fail);
    }

    /// Real `sshd -T` output: our block in effect, and beaten by an earlier
    /// Match block.
    #[test]
    fn policy_from_real_sshd_t_output() {
        let good = fixture("sshd-T-jump.txt");
        let answers: Vec<(&str, Result<String, String>)> = sshd::SAMPLE_ADDRS
            .iter()
            .map(|a| (*a, Ok(good.clone())))
            .collect();
        assert_eq!(policy_check(Some("alice"), &answers).status, Status::Ok);
        let mut hostile = answers.clone();
        hostile[1].1 = Ok(fixture("sshd-T-hostile-match.txt"));
        let check = policy_check(Some("alice"), &hostile);
        assert_eq!(status(&check), (Status::Fail, Some(HOST_INIT)));
        assert!(check.detail.contains("from 10.0.0.1"), "{check}");
        assert!(check.detail.contains("forcecommand"), "{check}");
        assert_eq!(policy_check(None, &[]).status, Status::Ok);
    }

    /// Real files and their real metadata: a key file others may write, one
    /// owned by someone else and a symlink each fail with their fix; the
    /// root-owned 0644 file beside them is the control.
    #[test]
    fn key_files_are_root_s_and_not_writable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path();
        std::fs::set_permissions(keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        let write = |name: &str, mode: u32| {
            std::fs::write(keys.join(name), "# key\n").unwrap();
            std::fs::set_permissions(keys.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        };
        write("alice", 0o644);
        assert_eq!(
            key_files_check(keys, &read_key_files(keys)).status,
            Status::Ok
        );
        assert_eq!(
            key_dir_check(keys, file_facts(keys).as_ref()).status,
            Status::Ok
        );

        write("bob", 0o646);
        let check = key_files_check(keys, &read_key_files(keys));
        let bob = keys.join("bob").display().to_string();
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.fix, Some(format!("chmod go-w {bob}")));
        assert!(
            check
                .detail
                .contains("writable by group or others (mode 0646)"),
            "{check}"
        );

        write("bob", 0o644);
        nix::unistd::chown(&keys.join("bob"), Some(1234.into()), None).unwrap();
        let check = key_files_check(keys, &read_key_files(keys));
        assert_eq!(check.fix, Some(format!("chown root:root {bob}")));

        std::fs::remove_file(keys.join("bob")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", keys.join("bob")).unwrap();
        let check = key_files_check(keys, &read_key_files(keys));
        assert!(check.detail.ends_with("bob is a symlink"), "{check}");
        assert_eq!(
            check.fix,
            Some(format!("mv --backup=numbered -t /root/ {bob} && {SYNC}"))
        );

        std::fs::set_permissions(keys, std::fs::Permissions::from_mode(0o777)).unwrap();
        let check = key_dir_check(keys, file_facts(keys).as_ref());
        assert_eq!(check.fix, Some(format!("chmod go-w {}", keys.display())));
        assert_eq!(
            key_dir_check(&keys.join("nope"), None).fix.as_deref(),
            Some(HOST_INIT)
        );
    }

    /// /etc/passwd and /etc/group lines as useradd and groupadd wrote them
    /// on the e2e host.
    fn db() -> AccountDb {
        AccountDb::parse(&fixture("doctor-passwd"), &fixture("doctor-group"))
    }

    /// Off a cluster: the pinned address, port 22.
    fn endpoints(instances: &[&Instance]) -> Endpoints {
        instances
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    Ok(SocketAddrV4::new(i.pinned_ipv4().unwrap(), 22)),
                )
            })
            .collect()
    }

    fn key_file_for(instance: &Instance) -> (FileFacts, Option<String>) {
        let to = endpoints(&[instance])[&instance.name].clone().unwrap();
        let text = accounts::jump_key_file(&to.to_string(), &instance.keys().unwrap());
        let facts = FileFacts {
            kind: Kind::File,
            uid: 0,
            mode: 0o644,
        };
        (facts, Some(text))
    }

    /// A container relabelled as another user's (what a restored backup
    /// edited to `owner: bob` gives) fails `owners` with the fix, and is
    /// nobody's managed container; the control passes.
    #[test]
    fn an_owner_that_is_not_the_name_s_user_fails_owners() {
        let good = healthy();
        assert_eq!(good.owner(), Some("e2e-doc"));
        let check = owners_check(std::slice::from_ref(&good));
        assert_eq!(check.status, Status::Ok, "{check}");
        let mut relabelled = healthy();
        relabelled
            .config
            .insert(crate::incus::key::OWNER.into(), "bob".into());
        assert_eq!(relabelled.owner(), None);
        assert_eq!(relabelled.foreign_owner(), Some("bob"));
        assert_eq!(relabelled.named_user(), Some("e2e-doc"));
        let check = owners_check(&[good, relabelled]);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.detail,
            "e2e-doc-container records owner \"bob\", not the user its name says: every verb skips it"
        );
        assert_eq!(
            check.fix.as_deref(),
            Some(
                "incus --project ctme2e config set e2e-doc-container user.containarium.owner=e2e-doc"
            )
        );
    }

    #[test]
    fn every_container_has_its_jump_account_and_key_file_and_nothing_is_orphaned() {
        let instance = healthy();
        let user = instance.owner().unwrap().to_string();
        let owners = BTreeSet::from([user.as_str()]);
        let keys_dir = Path::new("/etc/containarium/keys");
        let mut files = KeyFiles::from([(user.clone(), key_file_for(&instance))]);
        let db = db();
        let check = |db: &AccountDb, files: &KeyFiles, owners: &BTreeSet<&str>| {
            jump_accounts_check(
                &[&instance],
                &endpoints(&[&instance]),
                owners,
                db,
                files,
                keys_dir,
            )
        };
        assert_eq!(check(&db, &files, &owners).status, Status::Ok);

        // userdel behind the tool's back.
        let mut gone = AccountDb::parse(&fixture("doctor-passwd"), &fixture("doctor-group"));
        gone.users.remove(&user);
        let failed = check(&gone, &files, &owners);
        assert_eq!(status(&failed), (Status::Fail, Some(SYNC)));
        assert!(
            failed
                .detail
                .contains(&format!("has no jump account {user}"))
        );

        // A key file with a key Incus does not have.
        let other =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi x";
        let (facts, text) = files[&user].clone();
        files.insert(
            user.clone(),
            (facts, Some(format!("{}{other}\n", text.unwrap()))),
        );
        let failed = check(&db, &files, &owners);
        assert_eq!(
            failed.detail,
            format!("{user}'s key file differs from Incus metadata")
        );
        files.remove(&user);
        assert_eq!(
            check(&db, &files, &owners).detail,
            format!("{user} has no key file")
        );

        // The container gone (in every project): account and key file are
        // orphans.
        files.insert(user.clone(), key_file_for(&instance));
        let failed = jump_accounts_check(
            &[],
            &Endpoints::new(),
            &BTreeSet::new(),
            &db,
            &files,
            keys_dir,
        );
        assert_eq!(
            failed.fix,
            Some(format!(
                "userdel -- {user} && rm -f /etc/containarium/keys/{user}"
            ))
        );
        let failed = jump_accounts_check(
            &[],
            &Endpoints::new(),
            &BTreeSet::new(),
            &gone,
            &files,
            keys_dir,
        );
        assert_eq!(failed.detail, format!("key file {user} has no container"));

        // A host account of that name that is not ours.
        let mut foreign = db;
        foreign.users.get_mut(&user).unwrap().gid = 0;
        let failed = check(
            &foreign,
            &KeyFiles::from([(user.clone(), key_file_for(&instance))]),
            &owners,
        );
        assert!(
            failed.detail.contains("was not made by containarium"),
            "{failed}"
        );
    }

    /// Real: the e2e container after `incus config set … security.privileged
    /// true`; the control is the same container without it.
    #[test]
    fn a_privileged_container_fails_with_the_command_that_undoes_it() {
        let incus = Incus::new(Some("ctme2e".into()));
        let evil = privileged();
        let check = privilege_check(&incus, &[&evil]);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .detail
                .contains("is privileged (security.privileged=true)")
        );
        let fix = check.fix.unwrap();
        assert!(
            fix.starts_with(&format!(
                "incus --project ctme2e config unset {} security.privileged",
                evil.name
            )),
            "{fix}"
        );
        let fine = healthy();
        assert_eq!(privilege_check(&incus, &[&fine]).status, Status::Ok);

        let mut raw = healthy();
        raw.expanded_config
            .insert("raw.lxc".into(), "lxc.apparmor.profile=unconfined".into());
        assert!(
            privilege_check(&incus, &[&raw])
                .detail
                .contains("sets raw.lxc")
        );
        let mut host_root = healthy();
        host_root.expanded_devices.insert(
            "hostroot".into(),
            BTreeMap::from([
                ("type".into(), "disk".into()),
                ("source".into(), "/".into()),
                ("path".into(), "/mnt".into()),
            ]),
        );
        let check = privilege_check(&incus, &[&host_root]);
        assert_eq!(
            check.fix.as_deref(),
            Some(
                format!(
                    "incus --project ctme2e config device remove {} hostroot",
                    fine.name
                )
                .as_str()
            )
        );
        let mut odd = healthy();
        odd.config
            .insert("limits.kernel.nofile".into(), "500".into());
        odd.expanded_config
            .insert("limits.kernel.nofile".into(), "500".into());
        assert_eq!(privilege_check(&incus, &[&odd]).status, Status::Warn);
        // What create sets is no surprise.
        let mut limited = healthy();
        for config in [&mut limited.config, &mut limited.expanded_config] {
            config.insert("limits.processes".into(), "4096".into());
        }
        assert_eq!(privilege_check(&incus, &[&limited]).status, Status::Ok);
    }

    /// Real `incus list` output: three tenants with all their limits; one
    /// without limits.cpu fails with the resize that sets it.
    #[test]
    fn quotas_are_set() {
        let all = parse_instances(&fixture("incus-list.json")).unwrap();
        let managed: Vec<&Instance> = all.iter().collect();
        assert_eq!(quotas_check(&managed, None).status, Status::Ok);
        let mut bare = all[0].clone();
        bare.config.remove("limits.cpu");
        bare.expanded_config.remove("limits.cpu");
        bare.expanded_devices
            .get_mut("root")
            .unwrap()
            .remove("size");
        let check = quotas_check(&[&bare], None);
        assert_eq!(
            check.detail,
            "ctme2e-alice-container has no limits.cpu, the root disk size"
        );
        assert_eq!(
            check.fix.as_deref(),
            Some("containarium resize ctme2e-alice --cpu N --disk SIZE")
        );
    }

    /// A tenant without limits.processes fails, naming sync-accounts; with
    /// any value (the admin's resize) it passes.
    #[test]
    fn process_limits_are_set() {
        let all = parse_instances(&fixture("incus-list.json")).unwrap();
        let check = processes_check(&all.iter().collect::<Vec<_>>());
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.fix.as_deref(), Some("containarium sync-accounts"));
        assert!(
            check
                .detail
                .starts_with("ctme2e-alice-container has no limits.processes; "),
            "{}",
            check.detail
        );
        let limited: Vec<Instance> = all
            .iter()
            .cloned()
            .map(|mut i| {
                i.expanded_config
                    .insert("limits.processes".into(), "100000".into());
                i
            })
            .collect();
        let check = processes_check(&limited.iter().collect::<Vec<_>>());
        assert_eq!(check.status, Status::Ok, "{}", check.detail);
    }

    fn net() -> TenantNet {
        TenantNet {
            name: "ctme2ebr0".into(),
            gateway: "10.197.83.1/24".parse().unwrap(),
            ipv6: false,
            acls: vec![network::ACL.into()],
            dhcp_ranges: Some(vec![(
                "10.197.83.247".parse().unwrap(),
                "10.197.83.254".parse().unwrap(),
            )]),
        }
    }

    /// A network with no DHCP range, or a container pinned inside it, is a
    /// failure: anyone may lease those addresses first.
    #[test]
    fn pinned_addresses_are_outside_the_dhcp_range() {
        let ok = dhcp_check(&[&healthy()], &net());
        assert_eq!(ok.status, Status::Ok, "{ok}");
        let mut unset = net();
        unset.dhcp_ranges = None;
        let check = dhcp_check(&[&healthy()], &unset);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.fix.as_deref(), Some(HOST_INIT));
        let mut around = net();
        let ip = healthy().pinned_ipv4().unwrap();
        around.dhcp_ranges = Some(vec![(ip, ip)]);
        let check = dhcp_check(&[&healthy()], &around);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains(&ip.to_string()), "{check}");
    }

    /// Real: the e2e container is pinned and filtered; the older fixture's
    /// containers lack the filters (alice) or even the pinned address (bob).
    #[test]
    fn nics_are_pinned_and_filtered() {
        let incus = Incus::new(Some("ctme2e".into()));
        assert_eq!(nic_check(&incus, &[&healthy()], &net()).status, Status::Ok);
        let old = parse_instances(&fixture("incus-list.json")).unwrap();
        let check = nic_check(&incus, &[&old[0]], &net());
        assert_eq!(
            check.detail,
            "ctme2e-alice-container's eth0 lacks security.port_isolation=true \
             security.mac_filtering=true security.ipv4_filtering=true"
        );
        assert!(check.fix.unwrap().starts_with(
            "incus --project ctme2e config device set ctme2e-alice-container eth0 security.port_isolation=true"
        ));
        let check = nic_check(&incus, &[&old[1]], &net());
        assert!(
            check
                .detail
                .starts_with("ctme2e-bob-container's eth0 has no pinned address")
        );
        let mut elsewhere = net();
        elsewhere.name = "other".into();
        assert!(
            nic_check(&incus, &[&healthy()], &elsewhere)
                .detail
                .contains("not on tenant network other")
        );
    }

    #[test]
    fn autostart_off_is_a_warning() {
        let incus = Incus::default();
        assert_eq!(autostart_check(&incus, &[&healthy()]).status, Status::Ok);
        let old = parse_instances(&fixture("incus-list.json")).unwrap();
        let check = autostart_check(&incus, &[&old[2]]);
        assert_eq!(check.status, Status::Warn);
        assert_eq!(
            check.fix.as_deref(),
            Some("incus config set ctme2e-carol-container boot.autostart=true")
        );
    }

    /// The real ACL Incus returned; a guard refusal, a missing ACL and
    /// different rules fail with host init.
    #[test]
    fn the_tenant_acl_is_there_with_our_rules() {
        let current: AclRules = serde_json::from_str(&fixture("incus-network-acl.json")).unwrap();
        let ok = acl_check("ctme2ebr0", Ok(()), Ok(Some(current.clone())), &current);
        assert_eq!(ok.status, Status::Ok);
        let wanted = network::acl_rules(&net(), &[], &[]);
        let differs = acl_check("ctme2ebr0", Ok(()), Ok(Some(current)), &wanted);
        assert_eq!(status(&differs), (Status::Fail, Some(HOST_INIT)));
        let missing = acl_check("ctme2ebr0", Ok(()), Ok(None), &wanted);
        assert_eq!(missing.detail, "containarium-tenants does not exist");
        let mut bare = net();
        bare.acls.clear();
        let guard = bare.require_guarded("nftables").map_err(|e| e.to_string());
        let unguarded = acl_check("ctme2ebr0", guard, Ok(Some(wanted.clone())), &wanted);
        assert!(
            unguarded
                .detail
                .contains("does not carry the containarium-tenants")
        );
    }

    /// A dual-stack tenant network fails with Incus's own fix, not host
    /// init's (which cannot take IPv6 away).
    #[test]
    fn a_tenant_network_with_ipv6_fails_with_its_fix() {
        assert_eq!(
            ipv6_check(&net()).to_string(),
            "ok   tenant-ipv6: no IPv6 on ctme2ebr0"
        );
        let mut dual = net();
        dual.ipv6 = true;
        let check = ipv6_check(&dual);
        assert_eq!(
            status(&check),
            (
                Status::Fail,
                Some("incus network set ctme2ebr0 ipv6.address=none")
            )
        );
        assert_eq!(
            check.detail,
            "tenant network ctme2ebr0 gives tenants IPv6, which containarium does not \
             filter (its ACL is IPv4 only)"
        );
    }

    fn pool(resources: Result<String, String>) -> PoolProbe {
        PoolProbe {
            name: "ctme2e".into(),
            driver: Ok("btrfs".into()),
            zpool_status: None,
            compression: None,
            resources: Some(resources),
        }
    }

    /// Real pool resources from the e2e btrfs pool; the same with the
    /// space nearly used up warns, then fails.
    #[test]
    fn storage_has_room() {
        let real = fixture("doctor-incus-pool-resources.json");
        assert_eq!(
            storage_check(vec![pool(Ok(real.clone()))]).status,
            Status::Ok
        );
        let mut res: serde_json::Value = serde_json::from_str(&real).unwrap();
        let total = res["space"]["total"].as_u64().unwrap();
        res["space"]["used"] = (total / 100 * 95).into();
        let check = storage_check(vec![pool(Ok(res.to_string()))]);
        assert_eq!(check.status, Status::Warn, "{check}");
        res["space"]["used"] = (total / 100 * 99).into();
        let check = storage_check(vec![pool(Ok(res.to_string()))]);
        assert_eq!(check.status, Status::Fail, "{check}");
        assert_eq!(check.fix.as_deref(), Some("incus storage info ctme2e"));
        assert_eq!(
            storage_check(vec![pool(Err("no".into()))]).status,
            Status::Fail
        );
    }

    /// ZFS: written in the exact format of `zpool status -x tank` and `zfs
    /// get -H -o value compression tank` (no ZFS module on these machines).
    #[test]
    fn zfs_pool_healthy_and_compressed() {
        let zfs = |status: &str, compression: &str| PoolProbe {
            name: "default".into(),
            driver: Ok("zfs".into()),
            zpool_status: Some(Ok(fixture(status))),
            compression: Some(Ok(compression.into())),
            resources: None,
        };
        assert_eq!(
            storage_check(vec![zfs("zpool-status-x-healthy.txt", "lz4\n")]).status,
            Status::Ok
        );
        let check = storage_check(vec![zfs("zpool-status-x-degraded.txt", "lz4\n")]);
        assert_eq!(check.detail, "ZFS pool of default is DEGRADED");
        assert_eq!(check.status, Status::Fail);
        let check = storage_check(vec![zfs("zpool-status-x-healthy.txt", "off\n")]);
        assert_eq!(
            status(&check),
            (Status::Warn, Some("zfs set compression=lz4 default"))
        );
    }

    fn ran(code: i32, stdout: &str, stderr: &str) -> Fail2banProbe {
        Fail2banProbe::Ran {
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// Real fail2ban-client 1.0.2 output: the jail's status, the unknown
    /// jail (exit 255) and no server running (exit 255).
    #[test]
    fn fail2ban_runs_with_our_jail() {
        let check = fail2ban_check(true, &ran(0, &fixture("fail2ban-status-sshd.txt"), ""));
        assert_eq!(
            check,
            Check::ok("fail2ban", "jail sshd active: 2 banned, 0 failing now")
        );
        // Switched off in config.toml: a warning, whatever fail2ban does.
        let off = fail2ban_check(false, &Fail2banProbe::NotInstalled);
        assert_eq!(off.status, Status::Warn);
        let check = fail2ban_check(true, &ran(255, &fixture("fail2ban-status-nojail.txt"), ""));
        assert_eq!(status(&check), (Status::Fail, Some(HOST_INIT)));
        let check = fail2ban_check(true, &ran(255, "", &fixture("fail2ban-not-running.txt")));
        assert_eq!(
            status(&check),
            (Status::Fail, Some("systemctl start fail2ban"))
        );
        assert_eq!(
            fail2ban_check(true, &Fail2banProbe::NotInstalled).status,
            Status::Fail
        );
    }

    /// Real `sshd -T` of OpenSSH 9.2: its defaults warn with the fix, the
    /// hardened sshd passes.
    #[test]
    fn weak_algorithms_warn_with_the_hardening_fix() {
        let check = algorithms_check(Ok(&fixture("sshd-T-default.txt")));
        assert_eq!(
            status(&check),
            (Status::Warn, Some("containarium host init --harden"))
        );
        assert!(
            check.detail.contains("kexalgorithms ecdh-sha2-nistp256"),
            "{check}"
        );
        let hardened = algorithms_check(Ok(&fixture("sshd-T-hardened.txt")));
        assert_eq!(hardened.status, Status::Ok, "{hardened}");
    }

    #[test]
    fn kernel_limits_below_ours_fail_with_host_init() {
        let check = kernel_limits_check(&[
            ("fs.inotify.max_user_instances", 1_048_576, true),
            ("kernel.keys.maxkeys", 2_000, false),
        ]);
        assert_eq!(status(&check), (Status::Fail, Some(HOST_INIT)));
        assert_eq!(check.detail, "fs.inotify.max_user_instances below 1048576");
        let fine = kernel_limits_check(&[("kernel.keys.maxkeys", 2_000, false)]);
        assert_eq!(fine.status, Status::Ok);
    }

    #[test]
    fn the_clock_is_not_behind_the_build() {
        let built = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let check = clock_check(built - Duration::from_secs(3 * 86_400), Some(built), None);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("3 days behind"), "{check}");
        let later = built + Duration::from_secs(60);
        assert_eq!(clock_check(later, Some(built), None).status, Status::Ok);
        assert_eq!(
            clock_check(later, Some(built), Some("no".into())).status,
            Status::Warn
        );
        assert_eq!(
            clock_check(later, None, Some("yes".into())).status,
            Status::Ok
        );
    }
}
