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
//! `backup/` tree, and its `index.yaml` and `backup.yaml` are parsed and
//! held to each other (Incus takes the pool and the snapshots from one, the
//! instance from the other). Everything is decided then, before `incus
//! import`: what `create` would never set is refused (`--strip`: dropped;
//! a snapshot holding it is deleted, saying which), and the instance is
//! **re-authored**, not filtered: its config and devices become what
//! `create` sets for this user, from our own inputs (the user name,
//! config.toml, the admin's flags, the keys after parsing), whatever the
//! file said. The file contributes its root filesystem, its snapshots, its
//! keys (unless `--as`), its cloud-init user-data (served only to the guest)
//! and whether it runs Docker. It is imported stopped into the configured
//! pool, checked to be what the file said, re-authored, and only then
//! started.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

use super::Env;
use crate::accounts;
use crate::cohort::Expiry;
use crate::config::Defaults;
use crate::error::Refused;
use crate::exec::{self, Cmd};
use crate::incus::{Authored, Incus, PROXY_DEVICE, key};
use crate::keys::{self, PublicKey};
use crate::names::{UserName, user_of_container};
use crate::network::{self, TenantNet};
use crate::plan::{Action, Facts, Plan, Step};
use crate::time::{Span, Time};

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

    #[command(flatten)]
    limits: super::LimitArgs,

    /// When the restored container ends (as `create --expires`)
    #[arg(long, value_name = "DATE|DURATION", value_parser = Expiry::parse)]
    expires: Option<Expiry>,

    /// Stop the container after this long without an SSH connection (as
    /// `create --idle-stop`)
    #[arg(long, value_name = "DURATION")]
    idle_stop: Option<Span>,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the result as JSON: {"user", "container", "ipv4"}
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

impl RestoreArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let (backup, user) = self.target(env)?;
        let (_user_lock, lock) =
            super::lock_user(env, &user, &format!("restore {}", self.file.display()))?;
        let (plan, mut facts) = self.plan(env, &backup, &user)?;
        if self.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
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

    /// Checks the file and the flags; returns what the file holds and the
    /// user it is restored for. The HMAC comes first: nothing (not even
    /// tar) reads a file that is not authenticated.
    fn target(&self, env: &Env) -> Result<(Backup, UserName)> {
        let shown = self.file.display();
        match std::fs::symlink_metadata(&self.file) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {}
            _ => bail!(Refused(format!("{shown} is not a non-empty backup file"))),
        }
        authenticate(&env.paths, &self.file, self.untrusted)?;
        check_members(&self.file)?;
        check_digest(&self.file)?;
        let backup = Backup::read(&self.file)?;
        if !self.ssh_keys.is_empty() && self.as_user.is_none() {
            bail!(Refused(
                "--ssh-key replaces the keys only together with --as USER".into()
            ));
        }
        let user = self.as_user.clone().unwrap_or_else(|| backup.owner.clone());
        Ok((backup, user))
    }

    fn plan(&self, env: &Env, backup: &Backup, user: &UserName) -> Result<(Plan, Facts)> {
        let user = user.clone();
        let owner = &backup.owner;
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
            backup.keys(&self.file)?
        };
        // What create would never set: refused, or with --strip dropped
        // (the instance's by re-authoring it; a snapshot's by deleting it).
        let (problems, bad_snapshots) = backup.problems();
        if !problems.is_empty() && !self.strip {
            bail!(Refused(format!(
                "the backup asks for what containarium never sets: {} (nothing was restored; \
                 --strip drops it{})",
                problems.join("; "),
                if bad_snapshots.is_empty() {
                    String::new()
                } else {
                    format!(" and deletes snapshots {}", bad_snapshots.join(", "))
                }
            )));
        }
        if !problems.is_empty() {
            crate::ui::note(&format!("--strip drops: {}", problems.join("; ")));
        }
        let pool = match &defaults.storage_pool {
            Some(pool) => pool.clone(),
            None => incus.default_pool()?.context(
                "the default profile has no root disk: set `storage-pool` in config.toml",
            )?,
        };
        // The backup's address, unless another instance holds it or it is
        // off the tenant network; decided now, under our lock.
        let wanted = backup.container.pinned_ipv4();
        let taken = network::taken(&net, &all);
        let ip = match wanted {
            Some(ip) if net.hosts().any(|h| h == ip) && !taken.contains(&ip) => ip,
            _ => {
                let ip = network::allocate(&net, &taken)?;
                crate::ui::note(&format!(
                    "the backup's address {} is taken or off {}; {name} gets {ip}",
                    wanted.map_or("(none)".into(), |ip| ip.to_string()),
                    net.gateway.network()
                ));
                ip
            }
        };
        let limits = Limits {
            cpu: self.limits.cpu.unwrap_or(defaults.cpu),
            memory: self.limits.memory.unwrap_or(defaults.memory),
            disk: self.limits.disk.unwrap_or(defaults.disk),
            processes: self.limits.processes.unwrap_or(defaults.processes),
        };
        let want = self.authored(backup, &user, &keys, &net, &pool, ip, &limits);
        let (had, wanted) = (quotas(&backup.container.own), quotas(&want));
        if had != wanted {
            crate::ui::note(&format!(
                "quotas from config.toml and the flags: {wanted} (the backup had {had})"
            ));
        }

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
        // Imported stopped (nothing of the backup runs before it is
        // re-authored), into the pool config.toml names.
        plan.push(
            Step::new(
                format!("import {name} from {file} into pool {pool} (stopped)"),
                Action::run(
                    incus
                        .cmd(["import", "--storage", pool.as_str(), "--", file.as_str()])
                        .arg(name.as_str())
                        .uninterruptible(),
                ),
            )
            .undo(incus.delete_action(&name))
            .undo_if_failed(),
        );
        // The backup says `ready`; until this restore is done, it is not.
        plan.push(Step::new(
            format!("mark {name} pending"),
            Action::run(incus.config_set_cmd(&name, key::STATE, "pending")),
        ));
        let (probe, instance, expected) = (incus.clone(), name.clone(), backup.clone());
        plan.push(Step::new(
            "check that Incus imported what the file says",
            Action::check(
                format!(
                    "{}; and its snapshots: the same config, devices and profiles as parsed",
                    incus.query_cmd(&format!("/1.0/instances/{name}"))
                ),
                move |_| expected.matches_import(&probe, &instance),
            ),
        ));
        for snapshot in &bad_snapshots {
            plan.push(Step::new(
                format!("delete snapshot {snapshot} (--strip)"),
                Action::run(incus.cmd(["snapshot", "delete", name.as_str(), snapshot.as_str()])),
            ));
        }
        let mut have = backup.container.own.clone();
        have.config
            .insert(key::STATE.to_string(), "pending".to_string());
        for cmd in incus.converge_cmds(&name, &have, &want) {
            plan.push(Step::new(
                format!("re-author {name}: {}", converge_synopsis(&cmd)),
                Action::run(cmd),
            ));
        }
        // No MAC of the backup's: Incus makes a fresh one.
        if backup
            .container
            .own
            .config
            .contains_key("volatile.eth0.hwaddr")
        {
            plan.push(Step::new(
                "forget the backup's MAC",
                Action::run(incus.cmd(["config", "unset", name.as_str(), "volatile.eth0.hwaddr"])),
            ));
        }
        // On a cluster `publish_steps` learns the endpoint.
        if server.clustered {
            plan.append(super::create::publish_steps(incus, &name, &net));
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
        if user != *owner {
            for argv in rename_login(owner, &user) {
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
        let facts = Facts {
            ipv4: Some(ip),
            endpoint: (!server.clustered).then(|| SocketAddrV4::new(ip, 22)),
        };
        Ok((plan, facts))
    }

    /// The config and devices `create` would give `user` (except the `ssh`
    /// device, which a cluster's `publish_steps` adds): from our inputs,
    /// and of the file only its user-data, its image's description, its
    /// Docker or not, and the keys already parsed.
    #[allow(clippy::too_many_arguments)]
    fn authored(
        &self,
        backup: &Backup,
        user: &UserName,
        keys: &[PublicKey],
        net: &TenantNet,
        pool: &str,
        ip: Ipv4Addr,
        limits: &Limits,
    ) -> Authored {
        let file = &backup.container.own.config;
        let now = Time::now();
        let mut config: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            config.insert(k.to_string(), v);
        };
        set("limits.cpu", limits.cpu.to_string());
        set("limits.memory", limits.memory.to_string());
        set("limits.processes", limits.processes.to_string());
        set("boot.autostart", "true".into());
        set(key::OWNER, user.to_string());
        set(key::JUMP_ACCOUNT, user.to_string());
        set(key::STATE, "pending".into());
        set(key::CREATED, now.to_string());
        set(key::KEYS, keys::to_lines(keys));
        // Both are what `create` makes; Docker needs nesting.
        let docker = file.get(key::DOCKER).map(String::as_str) == Some("true");
        set(key::DOCKER, docker.to_string());
        if docker {
            set("security.nesting", "true".into());
            set("security.syscalls.intercept.mknod", "true".into());
            set("security.syscalls.intercept.setxattr", "true".into());
        }
        if let Some(expires) = &self.expires {
            set(key::EXPIRES, expires.at(now).to_string());
            set(key::EXPIRES_SET, now.to_string());
        }
        if let Some(idle) = &self.idle_stop {
            set(key::IDLE_STOP, idle.to_string());
        }
        // Names that describe the file's root filesystem, kept only as
        // plain names.
        for k in [key::TEMPLATE, key::IMAGE] {
            if let Some(v) = file.get(k).filter(|v| plain_name(v)) {
                set(k, v.clone());
            }
        }
        // Served to the guest only. Rewriting it would make cloud-init run
        // again inside (new host keys): it is the guest's own data.
        for (k, v) in file {
            if k == "cloud-init.user-data" || k.starts_with("image.") {
                set(k, v.clone());
            }
        }
        let mut eth0: BTreeMap<String, String> = [
            ("type", "nic".to_string()),
            ("name", "eth0".to_string()),
            ("network", net.name.clone()),
            ("ipv4.address", ip.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in net.nic_security() {
            eth0.insert(k.to_string(), v.to_string());
        }
        let root = [
            ("type", "disk".to_string()),
            ("path", "/".to_string()),
            ("pool", pool.to_string()),
            ("size", limits.disk.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Authored {
            config,
            devices: [("eth0".to_string(), eth0), ("root".to_string(), root)].into(),
        }
    }
}

/// The quotas a restore sets: the flags', else config.toml's.
struct Limits {
    cpu: u32,
    memory: crate::size::ByteSize,
    disk: crate::size::ByteSize,
    processes: u32,
}

/// A short synopsis for a re-authoring command: what it changes.
fn converge_synopsis(cmd: &Cmd) -> String {
    // incus [--project P] config [device] VERB INSTANCE [DEVICE] ARGS...
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    let at = args.iter().position(|a| *a == "config").unwrap_or(0);
    let rest = &args[at + 1..];
    let (what, verb, tail) = match rest {
        ["device", verb, _, device, tail @ ..] => (format!("device {device}"), *verb, tail),
        [verb, _, tail @ ..] => ("config".to_string(), *verb, tail),
        _ => return cmd.to_string(),
    };
    let keys: Vec<&str> = tail
        .iter()
        .map(|a| a.split_once('=').map_or(*a, |(k, _)| k))
        .collect();
    match verb {
        "remove" => format!("remove {what}"),
        "add" => format!("add {what}"),
        _ => format!("{verb} {what} {}", keys.join(" ")),
    }
}

/// A name of the kind `create` records (an image alias, a template): at
/// most 128 of letters, digits and `._:/@+-`.
fn plain_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b))
}

/// What `create` sets on an instance: anything else in a backup is refused.
pub(super) fn config_allowed(key: &str) -> bool {
    const EXACT: [&str; 8] = [
        "limits.cpu",
        "limits.memory",
        "limits.processes",
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

/// One instance or snapshot as Incus exports it (in `backup.yaml`, in
/// `index.yaml`) or describes it (`incus query`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(super) struct Exported {
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    own: Authored,
    #[serde(default, deserialize_with = "crate::incus::null_as_default")]
    profiles: Vec<String>,
}

impl Exported {
    fn pinned_ipv4(&self) -> Option<Ipv4Addr> {
        self.own
            .devices
            .get("eth0")?
            .get("ipv4.address")?
            .parse()
            .ok()
    }

    /// What Incus made of it, compared with what the file said: its own
    /// config (Incus's volatile keys and our state aside), devices (the
    /// root disk's pool is the one we import into) and profiles.
    fn same_as(&self, imported: &Exported) -> bool {
        fn plain(e: &Exported) -> (Authored, Vec<String>) {
            let mut own = e.own.clone();
            own.config
                .retain(|k, _| !k.starts_with("volatile.") && k != key::STATE);
            if let Some(root) = own.devices.get_mut("root") {
                root.remove("pool");
            }
            (own, e.profiles.clone())
        }
        plain(self) == plain(imported)
    }
}

/// The quotas an instance's config asks for, as a person reads them.
fn quotas(own: &Authored) -> String {
    let get = |v: Option<&String>| v.map_or("none".to_string(), |v| v.escape_debug().to_string());
    format!(
        "cpu {}, memory {}, disk {}, processes {}",
        get(own.config.get("limits.cpu")),
        get(own.config.get("limits.memory")),
        get(own.devices.get("root").and_then(|d| d.get("size"))),
        get(own.config.get("limits.processes"))
    )
}

/// What `incus export` wrote: `backup/index.yaml` (the name, pool and
/// snapshot list Incus imports by, and a copy of the config) and
/// `backup/container/backup.yaml` (the instance and snapshots Incus
/// builds), parsed and held to each other.
#[derive(Debug, Clone)]
pub(super) struct Backup {
    /// The user the instance's name says it belonged to.
    owner: UserName,
    container: Exported,
    snapshots: Vec<Exported>,
}

#[derive(Deserialize)]
struct Index {
    name: String,
    #[serde(default)]
    pool: String,
    #[serde(default, deserialize_with = "crate::incus::null_as_default")]
    snapshots: Vec<String>,
    #[serde(default)]
    optimized: Option<bool>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    config: Option<Contents>,
}

#[derive(Deserialize, PartialEq)]
struct Contents {
    container: Option<Exported>,
    #[serde(default, deserialize_with = "crate::incus::null_as_default")]
    snapshots: Vec<Exported>,
    #[serde(default)]
    pool: Option<PoolName>,
}

#[derive(Deserialize, PartialEq)]
struct PoolName {
    name: String,
}

impl Backup {
    fn read(file: &Path) -> Result<Backup> {
        let shown = file.display();
        let refuse = |why: String| -> anyhow::Error { Refused(format!("{shown}: {why}")).into() };
        let index: Index = from_yaml(&read_member(file, "backup/index.yaml")?)
            .map_err(|e| refuse(format!("backup/index.yaml does not parse: {e}")))?;
        let contents: Contents = from_yaml(&read_member(file, "backup/container/backup.yaml")?)
            .map_err(|e| refuse(format!("backup/container/backup.yaml does not parse: {e}")))?;
        if index.kind.as_deref().is_some_and(|k| k != "container") {
            return Err(refuse("it is not a container's backup".into()));
        }
        if index.optimized == Some(true) {
            return Err(refuse(
                "it is an optimized (storage driver) backup, whose contents containarium cannot \
                 read; back up again without --optimized-storage"
                    .into(),
            ));
        }
        let Some(container) = contents.container.clone() else {
            return Err(refuse("backup.yaml holds no container".into()));
        };
        if container.name != index.name {
            return Err(refuse(format!(
                "index.yaml names {:?} and backup.yaml {:?}",
                index.name.escape_debug().to_string(),
                container.name.escape_debug().to_string()
            )));
        }
        let listed: Vec<&str> = contents.snapshots.iter().map(|s| s.name.as_str()).collect();
        if listed
            != index
                .snapshots
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            return Err(refuse(
                "index.yaml and backup.yaml list different snapshots".into(),
            ));
        }
        let pools = [
            Some(index.pool.as_str()).filter(|p| !p.is_empty()),
            contents.pool.as_ref().map(|p| p.name.as_str()),
            container
                .own
                .devices
                .get("root")
                .and_then(|d| d.get("pool"))
                .map(String::as_str),
        ];
        let mut named = pools.iter().flatten();
        if let Some(first) = named.next()
            && named.any(|p| p != first)
        {
            return Err(refuse(
                "index.yaml and backup.yaml name different storage pools".into(),
            ));
        }
        if index.config.as_ref().is_some_and(|copy| *copy != contents) {
            return Err(refuse(
                "index.yaml's copy of the config differs from backup.yaml".into(),
            ));
        }
        let Some(owner) = user_of_container(&container.name) else {
            return Err(refuse(format!(
                "it holds instance {}, which containarium did not make",
                container.name.escape_debug()
            )));
        };
        Ok(Backup {
            owner,
            container,
            snapshots: contents.snapshots,
        })
    }

    /// The keys recorded in the instance's config, parsed.
    fn keys(&self, file: &Path) -> Result<Vec<PublicKey>> {
        let text = self
            .container
            .own
            .config
            .get(key::KEYS)
            .map(String::as_str)
            .unwrap_or_default();
        let keys: Vec<PublicKey> = text
            .lines()
            .filter_map(|l| PublicKey::parse_line(l, "backup").ok())
            .collect();
        if keys.is_empty() {
            bail!(Refused(format!(
                "{}: the backup records no {}",
                file.display(),
                key::KEYS
            )));
        }
        Ok(keys)
    }

    /// What `create` would never set, one line each; and the snapshots
    /// that hold some (which `--strip` deletes: Incus cannot edit a
    /// snapshot's config).
    fn problems(&self) -> (Vec<String>, Vec<String>) {
        let mut found = disallowed(&self.container);
        let mut bad = Vec::new();
        for snapshot in &self.snapshots {
            let in_it = disallowed(snapshot);
            if !in_it.is_empty() {
                bad.push(snapshot.name.clone());
            }
            found.extend(
                in_it
                    .into_iter()
                    .map(|p| format!("snapshot {}: {p}", snapshot.name)),
            );
        }
        (found, bad)
    }

    /// Fails unless Incus imported what the file says: the parsers (ours,
    /// Incus's) read the same file the same way.
    fn matches_import(&self, incus: &Incus, name: &str) -> Result<()> {
        let out = exec::run(&incus.query_cmd(&format!("/1.0/instances/{name}")))?;
        let instance: Exported =
            serde_json::from_str(&out.stdout).context("parsing the imported instance")?;
        let out =
            exec::run(&incus.query_cmd(&format!("/1.0/instances/{name}/snapshots?recursion=1")))?;
        let mut snapshots: Vec<Exported> =
            serde_json::from_str(&out.stdout).context("parsing the imported snapshots")?;
        for s in &mut snapshots {
            // Incus names a snapshot INSTANCE/NAME here.
            if let Some((_, short)) = s.name.rsplit_once('/') {
                s.name = short.to_string();
            }
        }
        let same = self.container.same_as(&instance)
            && snapshots.len() == self.snapshots.len()
            && self.snapshots.iter().all(|want| {
                snapshots
                    .iter()
                    .any(|got| got.name == want.name && want.same_as(got))
            });
        if !same {
            bail!(Refused(format!(
                "Incus imported {name} otherwise than its backup.yaml reads (nothing was \
                 restored)"
            )));
        }
        Ok(())
    }
}

/// One YAML document read into `T`: parsed by yaml-rust2 (pure Rust; a
/// duplicated key is an error, as in Incus's parser), then held to `T`'s
/// shape through JSON (anchors are expanded, as Incus's parser does). Keys
/// that are not strings, or a value of another type than `T` has, are
/// refused.
fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use yaml_rust2::Yaml;
    fn json(node: &Yaml) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        Ok(match node {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(r.clone()), Value::Number),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Array(items) => Value::Array(items.iter().map(json).collect::<Result<_, _>>()?),
            Yaml::Hash(map) => {
                let mut out = serde_json::Map::new();
                for (key, value) in map {
                    let Yaml::String(key) = key else {
                        return Err(format!("a key that is not a string: {key:?}"));
                    };
                    out.insert(key.clone(), json(value)?);
                }
                Value::Object(out)
            }
            Yaml::Alias(_) => return Err("YAML aliases are not accepted".into()),
            Yaml::BadValue => return Err("an unreadable value".into()),
        })
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let [doc] = docs.as_slice() else {
        return Err(format!("{} YAML documents, not one", docs.len()));
    };
    serde_json::from_value(json(doc)?).map_err(|e| e.to_string())
}

/// Everything in `instance` (or one of its snapshots) that `create` would
/// not have set, one line each.
fn disallowed(instance: &Exported) -> Vec<String> {
    let mut found = Vec::new();
    for key in instance.own.config.keys().filter(|k| !config_allowed(k)) {
        found.push(format!("config key {key}"));
    }
    for (key, value) in &instance.own.config {
        if let Some(id) = low_host_id(key, value) {
            found.push(format!("config key {key} (maps to host ID {id})"));
        }
    }
    for (name, device) in &instance.own.devices {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// What an export's YAML holds reads as Incus wrote it; what Incus's
    /// parser would refuse or read otherwise is refused.
    #[test]
    fn backup_yaml_is_read_strictly() {
        let index: Index = from_yaml(
            "name: a-container\nbackend: btrfs\npool: p\noptimized: false\ntype: container\n\
             snapshots:\n- s0\n",
        )
        .unwrap();
        assert_eq!(
            (index.name.as_str(), index.snapshots.len()),
            ("a-container", 1)
        );
        assert_eq!(index.optimized, Some(false));
        let contents: Contents = from_yaml(
            "container:\n  name: a-container\n  config:\n    limits.cpu: \"1\"\n    \
             user.containarium.keys: |\n      ssh-ed25519 AAAA x\n  devices:\n    root:\n      \
             path: /\n      type: disk\n  profiles:\n  - default\n  status_code: 103\n",
        )
        .unwrap();
        let c = contents.container.unwrap();
        assert_eq!(
            c.own.config["user.containarium.keys"],
            "ssh-ed25519 AAAA x\n"
        );
        assert_eq!(c.own.devices["root"]["path"], "/");
        for bad in [
            "container:\n  config:\n    a: \"1\"\n    a: \"2\"\n",
            "container:\n  config:\n    limits.cpu: 64\n",
            "container: {}\n---\ncontainer: {}\n",
            "container:\n  config: [\n",
        ] {
            assert!(from_yaml::<Contents>(bad).is_err(), "{bad}");
        }
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

    fn imported(json: &str) -> Exported {
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
