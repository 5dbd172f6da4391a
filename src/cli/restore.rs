//! `containarium restore FILE [--as USER --ssh-key FILE…]`: the container,
//! its address, the jump account and the keys, from a backup file.
//!
//! A backup file is hostile input: whoever handed it over may have edited
//! its `backup.yaml` to ask for `security.privileged`, `raw.lxc`, a disk
//! device with `source: /` or a proxy onto the Incus socket, any of which
//! is root on the host. So the file is first authenticated with the
//! bastions' backup key (the HMAC-SHA256 `backup` wrote beside it, checked
//! before anything else reads the file: the digest beside it is rewritten
//! by whoever edits the file), its member names are held to the export's
//! `backup/` tree, then it is checked against the digest `backup` recorded
//! beside it, imported stopped (nothing in it runs yet), and its
//! whole config and devices, snapshots included, are checked against what
//! `create` itself sets before anything starts; anything else is refused
//! (and the import deleted) unless `--strip` asks to drop it. Then our
//! quotas, a fresh MAC, the tenant NIC filters and a pinned address (the
//! backup's, unless it is taken or off the tenant subnet) are applied.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

use super::Env;
use crate::accounts;
use crate::config::Defaults;
use crate::error::Refused;
use crate::exec::{self, Cmd};
use crate::incus::{Incus, PROXY_DEVICE, key};
use crate::keys::{self, PublicKey};
use crate::names::{UserName, user_of_container};
use crate::network::{self, TenantNet};
use crate::plan::{Action, Facts, Plan, Step};

/// Bring a user's container back from a backup file
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `backup` or `delete --backup` (its FILE.hmac is
    /// checked before anything reads it)
    file: PathBuf,

    /// Restore it for this user instead of the one it belonged to
    #[arg(long = "as", value_name = "USER", requires = "ssh_keys")]
    as_user: Option<UserName>,

    /// The new user's public key file (repeatable; required with --as)
    #[arg(long = "ssh-key", value_name = "FILE")]
    ssh_keys: Vec<PathBuf>,

    /// Drop config keys and devices that containarium would not set,
    /// instead of refusing the backup
    #[arg(long)]
    strip: bool,

    /// Restore a file without a valid FILE.hmac (not written with this
    /// bastion's backup key): skips only that check, with a warning
    #[arg(long)]
    untrusted: bool,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the result as JSON: {"user", "container", "ipv4"}
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

impl RestoreArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let (owner, user) = self.target(env)?;
        let (_user_lock, lock) =
            super::lock_user(env, &user, &format!("restore {}", self.file.display()))?;
        let plan = self.plan(env, owner, &user)?;
        if self.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
        let mut facts = Facts::default();
        plan.apply_holding(lock, &mut facts)?;
        if self.json {
            super::print_json(&serde_json::json!({
                "user": user.as_str(),
                "container": user.container(),
                "ipv4": facts.ipv4.map(|ip| ip.to_string()),
            }));
        } else {
            crate::outln!("restored {} at {}", user.container(), facts.ipv4_text());
        }
        Ok(())
    }

    /// Checks the file and the flags; returns the user the backup belonged
    /// to and the one it is restored for. The HMAC comes first: nothing
    /// (not even tar) reads a file that is not authenticated.
    fn target(&self, env: &Env) -> Result<(UserName, UserName)> {
        let shown = self.file.display();
        match std::fs::symlink_metadata(&self.file) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {}
            _ => bail!(Refused(format!("{shown} is not a non-empty backup file"))),
        }
        authenticate(&env.paths, &self.file, self.untrusted)?;
        check_members(&self.file)?;
        check_digest(&self.file)?;
        let original = backup_instance_name(&self.file)?;
        let Some(owner) = user_of_container(&original) else {
            bail!(Refused(format!(
                "{shown} holds instance {original}, which containarium did not make"
            )));
        };
        if !self.ssh_keys.is_empty() && self.as_user.is_none() {
            bail!(Refused(
                "--ssh-key replaces the keys only together with --as USER".into()
            ));
        }
        let user = self.as_user.clone().unwrap_or_else(|| owner.clone());
        Ok((owner, user))
    }

    fn plan(&self, env: &Env, owner: UserName, user: &UserName) -> Result<Plan> {
        let user = user.clone();
        let name = user.container();
        let incus = &env.incus;
        match incus.instance(&name)? {
            None => {}
            // Under the user's lock: what a run that died half-way left.
            Some(existing) if super::create::is_pending(&existing) => bail!(Refused(format!(
                "{name} is pending: an earlier create or restore of {user} was interrupted; \
                 `containarium delete {user} --force` removes it, then restore again"
            ))),
            Some(_) => bail!(Refused(format!(
                "{name} already exists: `containarium delete {user}` first, or restore with \
                 --as USER"
            ))),
        }
        let all = network::all_instances(incus)?;
        super::refuse_claimed_elsewhere(env, &user, &all)?;
        let adopt = match accounts::lookup(user.as_str())? {
            None => false,
            Some(account) if accounts::is_ours(&account)? => true,
            Some(_) => bail!(Refused(format!(
                "host account {user} exists and was not made by containarium"
            ))),
        };
        let defaults = Defaults::load(&env.paths)?;
        let net = TenantNet::probe(incus, defaults.network.as_deref())?;
        let server = incus.server()?;
        net.require_guarded(&server.firewall)?;
        // The old owner's keys are never handed to a new person.
        let keys = if self.as_user.is_some() {
            keys::read_key_files(&self.ssh_keys)?
        } else {
            keys_in_backup(&self.file)?
        };

        let mut plan = super::host::plan(&env.paths, false)?.kept_on_failure();
        let file = self.file.to_string_lossy().into_owned();
        // Checked at plan time already; again just before the import, for
        // a file changed in between.
        let (paths, checked, untrusted) = (env.paths.clone(), self.file.clone(), self.untrusted);
        plan.push(Step::new(
            format!("authenticate {file} and check its members"),
            Action::check(
                if untrusted {
                    "not authenticated (--untrusted); tar --list: every member under backup/, \
                     no absolute name, no .., no hard link out"
                        .to_string()
                } else {
                    format!(
                        "HMAC-SHA256 of {file} with {} must match {}; tar --list: every member \
                         under backup/, no absolute name, no .., no hard link out",
                        env.paths.backup_key().display(),
                        super::backup::hmac_path(&self.file).display()
                    )
                },
                move |_| {
                    if !untrusted {
                        authenticate(&paths, &checked, false)?;
                    }
                    check_members(&checked)
                },
            ),
        ));
        // Imported stopped: nothing of the backup runs before the check.
        plan.push(
            Step::new(
                format!("import {name} from {file} (stopped)"),
                Action::run(
                    incus
                        .cmd(["import", "--", file.as_str(), name.as_str()])
                        .uninterruptible(),
                ),
            )
            .undo(incus.delete_action(&name))
            .undo_if_failed(),
        );
        let (probe, instance, strip, tenant_net, limits, clustered) = (
            incus.clone(),
            name.clone(),
            self.strip,
            net.clone(),
            defaults.clone(),
            server.clustered,
        );
        plan.push(Step::new(
            "check the imported config and devices; choose its address",
            Action::check(
                format!(
                    "refuse anything `create` would not set{}; quotas it lacks from config.toml; \
                     keep the backup's address unless another instance holds it or it is off {}",
                    if strip { " (--strip: drop it)" } else { "" },
                    net.gateway.network()
                ),
                move |facts| {
                    let ip = check_import(&probe, &instance, strip, &tenant_net, &limits)?;
                    facts.ipv4 = Some(ip);
                    // On a cluster `publish_steps` learns it.
                    if !clustered {
                        facts.endpoint = Some(SocketAddrV4::new(ip, 22));
                    }
                    Ok(())
                },
            ),
        ));
        let (nic, instance, nic_net) = (incus.clone(), name.clone(), net.clone());
        plan.push(Step::new(
            "pin the address, filter the NIC, give it a fresh MAC",
            Action::run_with(move |facts| nic_cmd(&nic, &instance, &nic_net, facts)),
        ));
        if server.clustered {
            plan.append(super::create::publish_steps(incus, &name, &net));
        }
        if user != owner {
            for (k, v) in [
                (key::OWNER, user.to_string()),
                (key::JUMP_ACCOUNT, user.to_string()),
                (key::KEYS, keys::to_lines(&keys)),
            ] {
                plan.push(Step::new(
                    format!("record {k}"),
                    Action::run(incus.config_set_cmd(&name, k, &v)),
                ));
            }
        }
        if adopt {
            plan.unchanged(format!("jump account {user}"));
        } else {
            plan.push(
                Step::new(
                    format!("create jump account {user}"),
                    Action::EditAccounts(accounts::useradd(&user)),
                )
                .undo(Action::EditAccounts(accounts::userdel(&user))),
            );
        }
        // No key may open an account our sshd policy does not cover.
        plan.push(super::host::policy_step(&env.paths, &user));
        plan.push(super::create::jump_keys_step(&env.paths, &user, keys.clone())?.releases_lock());
        plan.push(Step::new(
            format!("start {name}"),
            Action::run(incus.cmd(["start", name.as_str()])),
        ));
        if user != owner {
            for argv in rename_login(&owner, &user) {
                plan.push(Step::new(
                    format!("rename the login {owner} to {user} inside"),
                    Action::run(incus.exec_cmd(&name, argv)),
                ));
            }
            let (pusher, instance, login) = (incus.clone(), name.clone(), user.clone());
            let text = keys::to_lines(&keys);
            plan.push(Step::new(
                format!("give {user} their keys inside"),
                Action::check(
                    format!("write /home/{user}/.ssh/authorized_keys in {name}"),
                    move |_| push_authorized_keys(&pusher, &instance, &login, &text),
                ),
            ));
        }
        plan.push(super::create::sshd_ready_step(None));
        plan.push(Step::new(
            "mark the container ready",
            Action::run(incus.config_set_cmd(&name, key::STATE, "ready")),
        ));
        Ok(plan)
    }
}

/// What `create` sets on an instance: anything else in a backup is refused.
pub(super) fn config_allowed(key: &str) -> bool {
    const EXACT: [&str; 7] = [
        "limits.cpu",
        "limits.memory",
        "boot.autostart",
        "security.nesting",
        "security.syscalls.intercept.mknod",
        "security.syscalls.intercept.setxattr",
        "cloud-init.user-data",
    ];
    EXACT.contains(&key)
        || key.starts_with("user.containarium.")
        || key.starts_with("volatile.")
        || key.starts_with("image.")
}

/// The devices `create` gives an instance, and the keys each may have.
pub(super) fn device_allowed(name: &str, device: &BTreeMap<String, String>) -> Result<(), String> {
    let allowed: &[&str] = match (name, device.get("type").map(String::as_str)) {
        ("root", Some("disk")) => &["type", "path", "pool", "size"],
        ("eth0", Some("nic")) => &[
            "type",
            "name",
            "network",
            "ipv4.address",
            "hwaddr",
            "security.port_isolation",
            "security.mac_filtering",
            "security.ipv4_filtering",
            "security.ipv6_filtering",
        ],
        // Ours, from a cluster; always remade for where it lands.
        (PROXY_DEVICE, Some("proxy")) => &["type", "listen", "connect", "nat"],
        _ => {
            return Err(format!(
                "device {name} ({}) is not one containarium makes",
                device.get("type").map_or("no type", String::as_str)
            ));
        }
    };
    if name == "root" && device.get("path").map(String::as_str) != Some("/") {
        return Err("device root is not mounted at /".into());
    }
    match device.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("device {name} sets {k}")),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
struct Imported {
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    devices: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    name: String,
}

/// Everything in `instance` (or one of its snapshots) that `create` would
/// not have set, one line each.
fn disallowed(instance: &Imported) -> Vec<String> {
    let mut found = Vec::new();
    for key in instance.config.keys().filter(|k| !config_allowed(k)) {
        found.push(format!("config key {key}"));
    }
    for (key, value) in &instance.config {
        if let Some(id) = low_host_id(key, value) {
            found.push(format!("config key {key} (maps to host ID {id})"));
        }
    }
    for (name, device) in &instance.devices {
        if let Err(why) = device_allowed(name, device) {
            found.push(why);
        }
    }
    if instance.profiles.iter().any(|p| p != "default") {
        found.push(format!("profiles {}", instance.profiles.join(",")));
    }
    found
}

/// Incus keeps the container's ID map in `volatile.idmap.*` and applies
/// `volatile.idmap.next` at the next start: a backup that maps the
/// container onto host IDs below 65536 (root, system users) would make it
/// privileged in all but name. Returns the lowest such host ID.
pub(super) fn low_host_id(key: &str, value: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Hostid")]
        host_id: u64,
    }
    if !(key.starts_with("volatile.idmap.") || key == "volatile.last_state.idmap") {
        return None;
    }
    let lowest = if key == "volatile.idmap.base" {
        value.trim().parse::<u64>().ok()?
    } else {
        serde_json::from_str::<Vec<Entry>>(value)
            .ok()?
            .iter()
            .map(|e| e.host_id)
            .min()?
    };
    // An empty base ("0" on hosts with idmapped mounts) says nothing.
    (lowest < 65_536 && !(key == "volatile.idmap.base" && lowest == 0)).then_some(lowest)
}

/// Checks the imported instance and its snapshots, drops what `--strip`
/// allows, and returns the address it will have.
fn check_import(
    incus: &Incus,
    name: &str,
    strip: bool,
    net: &TenantNet,
    defaults: &Defaults,
) -> Result<Ipv4Addr> {
    // The backup says `ready`; until this restore is done, it is not.
    exec::run(&incus.config_set_cmd(name, key::STATE, "pending"))?;
    let out = exec::run(&incus.query_cmd(&format!("/1.0/instances/{name}")))?;
    let instance: Imported =
        serde_json::from_str(&out.stdout).context("parsing the imported instance")?;
    let out = exec::run(&incus.query_cmd(&format!("/1.0/instances/{name}/snapshots?recursion=1")))?;
    let snapshots: Vec<Imported> =
        serde_json::from_str(&out.stdout).context("parsing the imported snapshots")?;
    let in_snapshots: Vec<String> = snapshots
        .iter()
        .flat_map(|s| {
            disallowed(s)
                .into_iter()
                .map(move |p| format!("snapshot {}: {p}", s.name))
        })
        .collect();
    let mut problems = disallowed(&instance);
    problems.extend(in_snapshots.iter().cloned());
    if !problems.is_empty() {
        if !strip || !in_snapshots.is_empty() {
            bail!(Refused(format!(
                "the backup asks for what containarium never sets: {} (nothing was restored{})",
                problems.join("; "),
                if strip {
                    "; --strip cannot clean snapshots"
                } else {
                    "; --strip drops it"
                }
            )));
        }
        for (key, value) in &instance.config {
            if !config_allowed(key) || low_host_id(key, value).is_some() {
                exec::run(&incus.cmd(["config", "unset", name, key.as_str()]))?;
            }
        }
        for (device, spec) in &instance.devices {
            if device_allowed(device, spec).is_err() {
                exec::run(&incus.cmd(["config", "device", "remove", name, device.as_str()]))?;
            }
        }
        if instance.profiles.iter().any(|p| p != "default") {
            exec::run(&incus.cmd(["profile", "assign", name, "default"]))?;
        }
        crate::ui::note(&format!("dropped from the backup: {}", problems.join("; ")));
    }
    apply_quotas(incus, name, &instance, defaults)?;
    // Its member's address was the old cluster's: `publish_steps` makes
    // it again, for this member, from the address chosen here.
    if instance.devices.contains_key(PROXY_DEVICE) {
        exec::run(&incus.proxy_remove_cmd(name))?;
    }
    if !instance.devices.contains_key("eth0") {
        exec::run(&incus.cmd(["config", "device", "override", name, "eth0"]))?;
    }
    if instance.config.contains_key("volatile.eth0.hwaddr") {
        exec::run(&incus.cmd(["config", "unset", name, "volatile.eth0.hwaddr"]))?;
    }
    let wanted = instance
        .devices
        .get("eth0")
        .and_then(|d| d.get("ipv4.address"))
        .and_then(|a| a.parse::<Ipv4Addr>().ok());
    let all = network::all_instances(incus)?;
    let others: Vec<_> = all.into_iter().filter(|i| i.name != name).collect();
    let taken = network::taken(net, &others);
    match wanted {
        Some(ip) if net.hosts().any(|h| h == ip) && !taken.contains(&ip) => Ok(ip),
        _ => {
            let ip = network::allocate(net, &taken)?;
            crate::ui::note(&format!(
                "the backup's address {} is taken or off {}; {name} gets {ip}",
                wanted.map_or("(none)".into(), |ip| ip.to_string()),
                net.gateway.network()
            ));
            Ok(ip)
        }
    }
}

/// eth0 as every tenant has it: the pinned address, the filters, and no
/// MAC of the backup's (Incus makes a fresh one).
fn nic_cmd(incus: &Incus, name: &str, net: &TenantNet, facts: &Facts) -> Cmd {
    let mut cmd = incus
        .cmd(["config", "device", "set", name, "eth0"])
        .arg(format!("ipv4.address={}", facts.ipv4_text()))
        .arg("hwaddr=");
    for (key, value) in net.nic_security() {
        cmd = cmd.arg(format!("{key}={value}"));
    }
    cmd
}

/// A backup never brings a container without quotas: limits it lacks (or
/// that do not parse) come from config.toml.
fn apply_quotas(incus: &Incus, name: &str, instance: &Imported, defaults: &Defaults) -> Result<()> {
    let cpu_ok = instance
        .config
        .get("limits.cpu")
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|n| n >= 1);
    let memory_ok = instance
        .config
        .get("limits.memory")
        .is_some_and(|v| v.parse::<crate::size::ByteSize>().is_ok());
    let mut set = Vec::new();
    if !cpu_ok {
        set.push(format!("limits.cpu={}", defaults.cpu));
    }
    if !memory_ok {
        set.push(format!("limits.memory={}", defaults.memory));
    }
    if !set.is_empty() {
        exec::run(&incus.cmd(["config", "set", name]).args(set))?;
    }
    let disk_ok = instance
        .devices
        .get("root")
        .and_then(|d| d.get("size"))
        .is_some_and(|v| v.parse::<crate::size::ByteSize>().is_ok());
    if !disk_ok {
        let verb = if instance.devices.contains_key("root") {
            "set"
        } else {
            "override"
        };
        exec::run(
            &incus
                .cmd(["config", "device", verb, name, "root"])
                .arg(format!("size={}", defaults.disk)),
        )?;
    }
    Ok(())
}

/// Writes the new owner's keys as their authorized_keys, owned by them.
fn push_authorized_keys(incus: &Incus, name: &str, user: &UserName, keys: &str) -> Result<()> {
    // passwd_entry has checked that uid and gid are numbers.
    let entry = incus
        .passwd_entry(name, user.as_str())?
        .with_context(|| format!("{user} does not exist in {name} after the rename"))?;
    let path = format!("/home/{user}/.ssh/authorized_keys");
    let cmd = incus
        .push_file_cmd(name, &path, (&entry[2], &entry[3]), "0600")?
        .stdin(keys);
    exec::run(&cmd)?;
    Ok(())
}

/// Refuses `file` unless its HMAC (written by `backup` beside it) matches
/// under this bastion's backup key; with `untrusted`, only warns.
fn authenticate(paths: &crate::config::Paths, file: &Path, untrusted: bool) -> Result<()> {
    if untrusted {
        crate::ui::note(&format!(
            "warning: --untrusted: {} is not authenticated; whoever handed it over chose its \
             contents (its config is checked all the same)",
            file.display()
        ));
        return Ok(());
    }
    let key_path = paths.backup_key();
    let Some(key) = super::backup::read_key(&key_path)? else {
        bail!(Refused(format!(
            "{} (restore --untrusted skips the check)",
            super::backup::no_key(&key_path)
        )));
    };
    super::backup::verify_hmac(&key, file)
}

/// Refuses a tarball with a member Incus's unpacking could put outside the
/// instance: read with `tar --list` (never unpacked), held to
/// [`member_problem`].
fn check_members(file: &Path) -> Result<()> {
    // --quoting-style=c: names and link targets in double quotes with C
    // escapes, so a name holding " -> " or " link to " (or a newline)
    // cannot pass for a link or a second line. --absolute-names: list
    // names as stored (tar strips a leading / or ../ from what it shows
    // otherwise, with a warning).
    let cmd = Cmd::new("tar").args([
        "--list",
        "--verbose",
        "--numeric-owner",
        "--force-local",
        "--quoting-style=c",
        "--absolute-names",
        "-f",
        &file.to_string_lossy(),
    ]);
    let listing = exec::run(&cmd).map_err(|_| {
        anyhow::Error::from(Refused(format!(
            "{} is not an incus export (tar cannot list it)",
            file.display()
        )))
    })?;
    if let Some(why) = listing.stdout.lines().find_map(member_problem) {
        bail!(Refused(format!(
            "{}: {why}; nothing was imported",
            file.display()
        )));
    }
    Ok(())
}

/// What is wrong with one line of `tar --list --verbose --quoting-style=c`,
/// if anything: a name that is absolute, has a `..` component or is not
/// under `backup/`, or a hard link whose target is absolute or has `..`.
///
/// Device files and symbolic links are not refused: a container's rootfs
/// holds them legitimately (Docker's overlay2 whiteouts are character
/// devices 0,0; a container may keep nodes in /dev; /etc/alternatives
/// links are absolute), Incus unpacks the rootfs as the container's own
/// unprivileged IDs, and a symlink's target is resolved inside the
/// container, not on the host.
fn member_problem(line: &str) -> Option<String> {
    let Some(start) = line.find('"') else {
        return Some(format!("unexpected tar listing line {:?}", line));
    };
    let kind = line.chars().next().unwrap_or('?');
    let Some((name, rest)) = c_quoted(&line[start..]) else {
        return Some(format!("unexpected tar listing line {:?}", line));
    };
    let shown = name.escape_debug();
    if name.starts_with('/') {
        return Some(format!("member \"{shown}\" is an absolute path"));
    }
    if name.split('/').any(|c| c == "..") {
        return Some(format!("member \"{shown}\" has a .. component"));
    }
    if name != "backup" && !name.starts_with("backup/") {
        return Some(format!("member \"{shown}\" is not under backup/"));
    }
    if kind == 'h' {
        let target = rest
            .strip_prefix(" link to ")
            .and_then(c_quoted)
            .filter(|(_, tail)| tail.is_empty())
            .map(|(target, _)| target);
        let Some(target) = target else {
            return Some(format!("unexpected tar listing line {:?}", line));
        };
        if target.starts_with('/') || target.split('/').any(|c| c == "..") {
            return Some(format!(
                "hard link \"{shown}\" points out of the tree, to \"{}\"",
                target.escape_debug()
            ));
        }
    }
    None
}

/// A C-quoted string at the start of `text` (as `tar --quoting-style=c`
/// writes it), unescaped, and what follows it.
fn c_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut out = Vec::new();
    let mut bytes = body.bytes().enumerate();
    while let Some((i, b)) = bytes.next() {
        match b {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..])),
            b'\\' => {
                let (_, e) = bytes.next()?;
                out.push(match e {
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            let (_, d) = bytes.next()?;
                            if !(b'0'..=b'7').contains(&d) {
                                return None;
                            }
                            v = v * 8 + u32::from(d - b'0');
                        }
                        u8::try_from(v).ok()?
                    }
                    other => other,
                });
            }
            other => out.push(other),
        }
    }
    None
}

/// Refuses a file whose digest (written by `backup` beside it) does not
/// match; says so when there is none.
fn check_digest(file: &Path) -> Result<()> {
    let digest_file = super::backup::digest_path(file);
    match crate::files::read_optional(&digest_file)? {
        Some(text) => {
            let recorded = text.split_whitespace().next().unwrap_or_default();
            let actual = super::backup::sha256_file(file)?;
            if recorded != actual {
                bail!(Refused(format!(
                    "{} does not match its digest {} (sha256 {actual}, recorded {recorded}): \
                     it was changed after containarium wrote it",
                    file.display(),
                    digest_file.display()
                )));
            }
        }
        None => crate::ui::note(&format!(
            "warning: {} has no digest beside it ({}): containarium did not write it, or it \
             was moved without it; its config is checked all the same",
            file.display(),
            digest_file.display()
        )),
    }
    Ok(())
}

/// The commands that rename the in-container login user and what refers to
/// it, as argv lists (names are validated `UserName`s).
fn rename_login(from: &UserName, to: &UserName) -> Vec<Vec<String>> {
    let (from, to) = (from.as_str(), to.as_str());
    vec![
        vec![
            "usermod".into(),
            "--login".into(),
            to.into(),
            "--move-home".into(),
            "--home".into(),
            format!("/home/{to}"),
            "--".into(),
            from.into(),
        ],
        vec![
            "groupmod".into(),
            "--new-name".into(),
            to.into(),
            "--".into(),
            from.into(),
        ],
        vec![
            "sed".into(),
            "-i".into(),
            format!("s/^{from} /{to} /"),
            "/etc/sudoers.d/90-cloud-init-users".into(),
        ],
    ]
}

/// Reads one member of the export without unpacking it. `--force-local`:
/// a file named `host:x.tar.gz` is a file, not a remote tape.
fn read_member(file: &Path, member: &str) -> Result<String> {
    let cmd = Cmd::new("tar").args(["--force-local", "-xzOf", &file.to_string_lossy(), member]);
    exec::run(&cmd).map(|out| out.stdout).map_err(|_| {
        Refused(format!(
            "{} is not an incus export (no {member})",
            file.display()
        ))
        .into()
    })
}

/// The instance name recorded in the export's index.yaml.
fn backup_instance_name(file: &Path) -> Result<String> {
    let index = read_member(file, "backup/index.yaml")?;
    index
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .map(|n| n.trim().to_string())
        .with_context(|| format!("{}: index.yaml names no instance", file.display()))
}

/// The keys recorded in the exported instance's config.
fn keys_in_backup(file: &Path) -> Result<Vec<PublicKey>> {
    let yaml = read_member(file, "backup/container/backup.yaml")?;
    let keys = parse_yaml_keys(&yaml);
    if keys.is_empty() {
        bail!(Refused(format!(
            "{}: the backup records no {}",
            file.display(),
            key::KEYS
        )));
    }
    Ok(keys)
}

/// `user.containarium.keys` from backup.yaml: a YAML block scalar whose
/// lines are keys, or a quoted one-line value. Only key lines are taken.
fn parse_yaml_keys(yaml: &str) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    let mut lines = yaml.lines();
    while let Some(line) = lines.next() {
        let Some(value) = line.trim_start().strip_prefix(&format!("{}:", key::KEYS)) else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let value = value.trim();
        if value.starts_with('|') {
            for next in lines.by_ref() {
                if next.len() - next.trim_start().len() <= indent {
                    break;
                }
                if let Ok(k) = PublicKey::parse_line(next.trim(), "backup") {
                    keys.push(k);
                }
            }
        } else if let Ok(text) = serde_json::from_str::<String>(value) {
            keys.extend(
                text.lines()
                    .filter_map(|l| PublicKey::parse_line(l, "backup").ok()),
            );
        } else {
            keys.extend(PublicKey::parse_line(value, "backup"));
        }
        break;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop";

    #[test]
    fn reads_keys_from_backup_yaml() {
        let block = format!(
            "container:\n  config:\n    user.containarium.keys: |\n      {K}\n    user.containarium.owner: alice\n"
        );
        assert_eq!(parse_yaml_keys(&block).len(), 1);
        let quoted = format!("    user.containarium.keys: \"{K}\\n\"\n");
        assert_eq!(parse_yaml_keys(&quoted).len(), 1);
        assert!(parse_yaml_keys("config: {}\n").is_empty());
    }

    /// Captured from GNU tar 1.34 (Debian 12), `tar --list --verbose
    /// --numeric-owner --force-local --quoting-style=c --absolute-names -f`:
    /// a tree as an export holds it, then hostile members.
    #[test]
    fn tar_members_stay_in_the_backup_tree() {
        let good = r#"drwxr-xr-x 0/0               0 2026-12-07 22:03 "backup/"
-rw-r--r-- 0/0               3 2026-12-07 22:03 "backup/index.yaml"
drwxr-xr-x 0/0               0 2026-12-07 22:03 "backup/container/"
drwxr-xr-x 0/0               0 2026-12-07 22:03 "backup/container/rootfs/"
crw-r--r-- 0/0             0,0 2026-12-07 22:03 "backup/container/rootfs/wh"
lrwxrwxrwx 0/0               0 2026-12-07 22:03 "backup/container/rootfs/bin" -> "/usr/bin"
-rw-r--r-- 0/0               1 2026-12-07 22:03 "backup/container/q\"\\x01 link to z"
hrw-r--r-- 0/0               0 2026-12-07 22:03 "backup/container/h a -> b" link to "backup/index.yaml"
-rw-r--r-- 1000/1000         5 2026-12-07 22:03 "backup/container/rootfs/home/a/\303\251t\303\251\n..""#;
        for line in good.lines() {
            assert_eq!(member_problem(line), None, "{line}");
        }
        let bad = r#"-rw-r--r-- 0/0               1 1970-01-01 00:00 "/etc/x"
-rw-r--r-- 0/0               1 1970-01-01 00:00 "../x"
-rw-r--r-- 0/0               1 1970-01-01 00:00 "backup/../../y"
-rw-r--r-- 0/0               1 1970-01-01 00:00 "etc/cron.d/x"
hrw-r--r-- 0/0               0 1970-01-01 00:00 "backup/hl" link to "/etc/shadow"
hrw-r--r-- 0/0               0 1970-01-01 00:00 "backup/hl" link to "backup/../../etc/shadow"
-rw-r--r-- 0/0               1 1970-01-01 00:00 backup/unquoted
-rw-r--r-- 0/0               1 1970-01-01 00:00 "backup/unterminated"#;
        let found: Vec<String> = bad.lines().filter_map(member_problem).collect();
        assert_eq!(
            found,
            [
                r#"member "/etc/x" is an absolute path"#,
                r#"member "../x" has a .. component"#,
                r#"member "backup/../../y" has a .. component"#,
                r#"member "etc/cron.d/x" is not under backup/"#,
                r#"hard link "backup/hl" points out of the tree, to "/etc/shadow""#,
                r#"hard link "backup/hl" points out of the tree, to "backup/../../etc/shadow""#,
                r#"unexpected tar listing line "-rw-r--r-- 0/0               1 1970-01-01 00:00 backup/unquoted""#,
                r#"unexpected tar listing line "-rw-r--r-- 0/0               1 1970-01-01 00:00 \"backup/unterminated""#,
            ]
        );
        // A newline or a quote in a name is escaped, never a second line.
        assert_eq!(
            c_quoted(r#""a\nb\"\101" -> "x""#),
            Some(("a\nb\"A".to_string(), r#" -> "x""#))
        );
    }

    #[test]
    fn renames_by_argv() {
        let argv = rename_login(&"alice".parse().unwrap(), &"bob".parse().unwrap());
        assert_eq!(
            argv[0].join(" "),
            "usermod --login bob --move-home --home /home/bob -- alice"
        );
        assert_eq!(argv[2][2], "s/^alice /bob /");
    }

    fn imported(json: &str) -> Imported {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn what_create_sets_passes_the_allow_list() {
        // The shape of a container `create` made, from Incus 6.0.
        let ok = imported(
            r##"{"name":"a-container","profiles":["default"],
            "config":{"limits.cpu":"1","limits.memory":"1GiB","boot.autostart":"true",
              "security.nesting":"true","security.syscalls.intercept.mknod":"true",
              "security.syscalls.intercept.setxattr":"true","cloud-init.user-data":"#cloud-config",
              "user.containarium.owner":"a","volatile.eth0.hwaddr":"10:66:6a:00:00:01",
              "image.os":"Debian"},
            "devices":{"root":{"type":"disk","path":"/","pool":"p","size":"3GiB"},
              "eth0":{"type":"nic","name":"eth0","network":"br","ipv4.address":"10.0.0.5",
                "security.ipv4_filtering":"true"}}}"##,
        );
        assert_eq!(disallowed(&ok), Vec::<String>::new());
    }

    #[test]
    fn root_on_the_host_is_refused_key_by_key() {
        let evil = imported(
            r#"{"name":"a-container","profiles":["default","privileged"],
            "config":{"security.privileged":"true","raw.lxc":"lxc.apparmor.profile=unconfined",
              "raw.idmap":"both 0 0","user.containarium.owner":"a"},
            "devices":{"root":{"type":"disk","path":"/","pool":"p"},
              "host":{"type":"disk","source":"/","path":"/mnt/host"},
              "sock":{"type":"proxy","listen":"unix:/s","connect":"unix:/var/lib/incus/unix.socket"},
              "eth0":{"type":"nic","network":"br","nictype":"macvlan","parent":"eth0"}}}"#,
        );
        let found = disallowed(&evil);
        for expected in [
            "config key raw.idmap",
            "config key raw.lxc",
            "config key security.privileged",
            "device eth0 sets nictype",
            "device host (disk) is not one containarium makes",
            "device sock (proxy) is not one containarium makes",
            "profiles default,privileged",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "{expected} not in {found:?}"
            );
        }
        let moved_root =
            imported(r#"{"devices":{"root":{"type":"disk","path":"/x","pool":"p","source":"/"}}}"#);
        assert_eq!(disallowed(&moved_root), ["device root is not mounted at /"]);
    }
}
