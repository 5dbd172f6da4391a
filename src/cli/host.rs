//! `containarium host init`: the group, the key directory and the sshd
//! drop-in that jump accounts need, then proof from `sshd -T` that the
//! drop-in's policy is what sshd applies to a jump account. `create`,
//! `restore` and `sync-accounts` run the same plan; `create` checks the
//! policy with the account it makes. `host init` alone also makes the
//! backup key (`backup::key_plan`), the kernel limits, the jail and the ACL.
//!
//! `sshd -T` can only answer for a real account in group containarium, and
//! we make none just to ask: on a host without a jump account yet, the
//! check waits for the first `create`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::Env;
use crate::accounts;
use crate::config::{self, Paths};
use crate::error::Refused;
use crate::exec::{self, Cmd};
use crate::fail2ban::{self, Backend};
use crate::files::{self, FileWrite};
use crate::names::UserName;
use crate::network::{self, TenantNet};
use crate::plan::{Action, Facts, Plan, Step};
use crate::sshd;
use crate::sysctl;

/// Prepare this host as a bastion
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create the containarium group, key directory, sshd drop-in and
    /// backup key, guard the tenant network with our ACL and write our
    /// fail2ban jail
    Init(InitArgs),
    Doctor(super::doctor::DoctorArgs),
    Sign(SignArgs),
}

/// Sign this bastion's ed25519 host key with the bastions' host CA, and
/// make sshd present the certificate (`host init`'s drop-in)
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The host CA's private key (keep it off the disk: a tmpfs file,
    /// removed afterwards)
    #[arg(long, value_name = "FILE")]
    ca_key: std::path::PathBuf,

    /// The names users reach this bastion by: its own, the other
    /// bastions' shared name, the load balancer's (comma-separated)
    #[arg(long, value_name = "NAME,...", value_parser = parse_principals)]
    principals: String,

    /// How long the certificate is valid, as ssh-keygen -V takes it
    /// (`+52w`) [default: no expiry; provisioning signs again at boot and
    /// when the CA or the names change]
    #[arg(long, value_name = "INTERVAL", value_parser = parse_validity)]
    validity: Option<String>,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

/// Host names or addresses, comma-separated: what a certificate's
/// principals may be.
fn parse_principals(text: &str) -> Result<String, String> {
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c))
    };
    if text.split(',').all(valid) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{:?} is not a comma-separated list of host names",
            text.escape_debug().to_string()
        ))
    }
}

/// `+52w`, `-1d:+52w`, `20260101:20270101`: what ssh-keygen -V accepts,
/// with nothing else in it.
fn parse_validity(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && !text.starts_with("--")
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-:".contains(c));
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{:?} is not a validity interval such as +52w",
            text.escape_debug().to_string()
        ))
    }
}

impl SignArgs {
    fn run(self, env: &Env) -> Result<()> {
        let lock = super::lock(env, "host sign")?;
        let ca = self.ca_key.to_string_lossy().into_owned();
        if !self.ca_key.is_file() {
            bail!(Refused(format!("--ca-key {ca}: no such file")));
        }
        let key = env.paths.host_key();
        if !key.is_file() {
            bail!(Refused(format!(
                "{} not found: sshd has no ed25519 host key (ssh-keygen -A makes one)",
                key.display()
            )));
        }
        let identity = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "bastion".into());
        let mut sign = Cmd::new("ssh-keygen").args([
            "-q",
            "-s",
            ca.as_str(),
            "-h",
            "-I",
            identity.as_str(),
            "-n",
            self.principals.as_str(),
        ]);
        if let Some(validity) = &self.validity {
            sign = sign.args(["-V", validity.as_str()]);
        }
        let sign = sign.args(["--", key.to_string_lossy().as_ref()]);
        if self.dry_run {
            crate::outln!("sign the host key: {sign}");
            crate::outln!("then `containarium host init`'s sshd steps, with HostCertificate");
            return Ok(());
        }
        exec::run(&sign)?;
        crate::outln!(
            "signed {} for {}: {}",
            key.display(),
            self.principals,
            env.paths.host_cert().display()
        );
        // The drop-in now names the certificate; sshd reloads to present it.
        plan(&env.paths, false)?.apply_holding(lock, &mut Facts::default())
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Also restrict the bastion sshd's key exchange, host key, cipher and
    /// MAC algorithms to ones ssh-audit passes (a drop-in for every
    /// connection, not only jump accounts; kept by later runs)
    #[arg(long)]
    harden: bool,
}

impl HostCommand {
    pub fn run(self, env: &Env) -> Result<()> {
        match self {
            HostCommand::Init(args) => {
                let lock = super::lock(env, "host init")?;
                // sshd's plan first, so its refusals come before any
                // probe; its steps last, because sshd's reload cannot be
                // undone: it follows every other step that may fail.
                let sshd = plan(&env.paths, args.harden)?;
                let mut plan = sysctl_plan(&env.paths)?;
                plan.append(super::backup::key_plan(&env.paths)?);
                plan.append(fail2ban_plan(&env.paths)?);
                plan.append(network_plan(env)?);
                plan.append(sshd);
                match existing_jump_account(&env.paths)? {
                    Some(user) => plan.push(policy_step(&env.paths, &user)),
                    None => plan.unchanged(
                        "sshd policy check (no jump account to check with yet; create checks its own)",
                    ),
                }
                if args.dry_run {
                    crate::out!("{}", plan.describe());
                    return Ok(());
                }
                plan.apply_holding(lock, &mut Facts::default())
            }
            HostCommand::Doctor(args) => args.run(env),
            HostCommand::Sign(args) => args.run(env),
        }
    }
}

/// What guards tenants on the network `create` uses: our ACL there with
/// today's rules (the bastion's addresses, `deny-egress`), attached to it.
/// Fails closed: a host whose Incus has no firewall driver is refused, and
/// so is a tenant network with IPv6, which the ACL does not cover.
pub fn network_plan(env: &Env) -> Result<Plan> {
    let incus = &env.incus;
    let defaults = crate::config::Defaults::load(&env.paths)?;
    let net = TenantNet::probe(incus, defaults.network.as_deref())?;
    net.require_ipv4_only()?;
    let server = incus.server()?;
    network::require_firewall(&server.firewall)?;
    let guarded = network::guarded_addresses(incus, &server)?;
    let wanted = network::acl_rules(&net, &guarded, &defaults.deny_egress);
    let mut plan = Plan::default();
    match network::current_acl(incus)? {
        None => plan.push(Step::new(
            format!("create network ACL {}", network::ACL),
            Action::run(network::write_acl_cmd(incus, "create", &wanted)),
        )),
        Some(current) if current == wanted => {
            plan.unchanged(format!("network ACL {}", network::ACL))
        }
        Some(_) => plan.push(Step::new(
            format!("update network ACL {}", network::ACL),
            Action::run(network::write_acl_cmd(incus, "edit", &wanted)),
        )),
    }
    // Pinned addresses stay out of what dnsmasq leases to whoever asks.
    match &net.dhcp_ranges {
        Some(_) => plan.unchanged(format!("DHCP range of tenant network {}", net.name)),
        None => {
            let (a, b) = net.dynamic_range();
            plan.push(Step::new(
                format!(
                    "lease only {a}-{b} on tenant network {} (tenants get pinned addresses \
                     below it)",
                    net.name
                ),
                Action::run(network::dhcp_range_cmd(incus, &net)),
            ));
        }
    }
    if net.is_guarded() {
        plan.unchanged(format!("{} on tenant network {}", network::ACL, net.name));
    } else {
        plan.push(Step::new(
            format!("attach {} to tenant network {}", network::ACL, net.name),
            Action::run(network::attach_acl_cmd(incus, &net)),
        ));
    }
    Ok(plan)
}

/// Our fail2ban sshd jail from config.toml's `[fail2ban]` table, the
/// filter override that also watches `sshd-session`, and a reload when
/// either changed. A host without fail2ban is warned about, not refused:
/// the bastion works without it, only unguarded against brute force.
fn fail2ban_plan(paths: &Paths) -> Result<Plan> {
    let settings = config::Defaults::load(paths)?.fail2ban;
    let mut plan = Plan::default();
    if !paths.fail2ban_dir().join("jail.d").is_dir() {
        plan.unchanged(if settings.enabled {
            "fail2ban jail (warning: fail2ban is not installed, so nothing bans clients \
             that fail to log in to sshd: install it (apt-get install fail2ban) and run \
             `containarium host init` again)"
        } else {
            "fail2ban jail (disabled in config.toml; fail2ban is not installed)"
        });
        return Ok(plan);
    }
    let ports = match &settings.port {
        Some(ports) => ports.clone(),
        None => sshd_ports(paths, &mut plan),
    };
    let backend = match settings.backend {
        Backend::Auto if paths.journal_socket().exists() && paths.python_systemd().exists() => {
            Backend::Systemd
        }
        Backend::Auto => Backend::Polling,
        chosen => chosen,
    };
    let switch = if settings.enabled { "on" } else { "off" };
    let mut files = vec![
        (
            "install the fail2ban filter override (sshd-session)".to_string(),
            paths.fail2ban_filter_override(),
            fail2ban::filter_override(),
        ),
        (
            "install the fail2ban sshd jail".to_string(),
            paths.fail2ban_jail(),
            fail2ban::jail(&settings, backend, &ports),
        ),
        (
            format!("switch the fail2ban sshd jail {switch}"),
            paths.fail2ban_jail_switch(),
            fail2ban::jail_switch(settings.enabled),
        ),
    ];
    for (path, keys) in overriding_jails(paths)? {
        plan.unchanged(format!(
            "fail2ban jail (warning: {} sets {} for [sshd] and is read after our jail, \
             so its values win: move them to config.toml's [fail2ban] table)",
            path.display(),
            keys.join(", ")
        ));
    }
    // Refuse before planning anything, so a refusal changes nothing. An
    // admin's own filter.d/sshd.local is a common customisation: kept, with
    // a warning, rather than refused.
    let filter = paths.fail2ban_filter_override();
    if is_foreign(&filter)? {
        plan.unchanged(format!(
            "fail2ban filter override (warning: {} is not ours and is kept: unless it \
             matches sshd-session, OpenSSH 9.8 and later go unwatched)",
            filter.display()
        ));
        files.retain(|(_, path, _)| *path != filter);
    }
    for (_, path, _) in &files {
        refuse_foreign(path)?;
    }
    let mut changed = false;
    for (synopsis, path, contents) in files {
        let write = FileWrite {
            path: path.clone(),
            mode: 0o644,
            contents,
        };
        match Step::write_file(synopsis, write)? {
            Some(step) => {
                plan.push(step);
                changed = true;
            }
            None => plan.unchanged(format!("fail2ban file {}", path.display())),
        }
    }
    if changed {
        if fail2ban::server_running() {
            // A fail2ban that cannot reload (an admin's broken jail
            // elsewhere) is warned about: it must not undo the bastion's
            // sshd setup or block every later host init.
            plan.push(Step::new(
                "reload fail2ban",
                Action::check(format!("{}", fail2ban::reload()), |_| {
                    if let Err(err) = crate::exec::run(&fail2ban::reload()) {
                        eprintln!("warning: fail2ban did not reload: {err}");
                    }
                    Ok(())
                }),
            ));
        } else {
            plan.unchanged("fail2ban-server is not running; it reads the jail when it starts");
        }
    }
    Ok(plan)
}

/// Other fail2ban files that fail2ban reads after our jail and that set
/// `[sshd]` keys, with those keys: `jail.d/*.conf` sorting after ours and
/// `jail.local` (all but `enabled`, which our `.local` sets later still),
/// and every other `jail.d/*.local` (everything, when it sorts after ours).
fn overriding_jails(paths: &Paths) -> Result<Vec<(std::path::PathBuf, Vec<String>)>> {
    let name_of = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    let (jail, switch) = (paths.fail2ban_jail(), paths.fail2ban_jail_switch());
    let jail_d = paths.fail2ban_dir().join("jail.d");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&jail_d)
        .with_context(|| format!("reading {}", jail_d.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| *p != jail && *p != switch)
        .filter(|p| {
            p.is_file() && (name_of(p).ends_with(".conf") || name_of(p).ends_with(".local"))
        })
        .collect();
    files.push(paths.fail2ban_dir().join("jail.local"));
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let name = name_of(&path);
        let after_switch = name.ends_with(".local")
            && path.parent() == Some(jail_d.as_path())
            && name.as_str() > name_of(&switch).as_str();
        let read_after_us = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("conf") => name.as_str() > name_of(&jail).as_str(),
            Some("local") => true,
            _ => false,
        };
        // What cannot be read as text is fail2ban's problem, not a reason
        // to stop setting up the bastion.
        let Ok(Some(text)) = files::read_optional(&path) else {
            continue;
        };
        let keys: Vec<String> = fail2ban::sshd_section_keys(&text)
            .into_iter()
            .filter(|k| after_switch || k != "enabled")
            .collect();
        if read_after_us && !keys.is_empty() {
            found.push((path, keys));
        }
    }
    Ok(found)
}

/// The ports sshd listens on, from `sshd -T`; 22, with a note, when sshd
/// cannot say (no privilege separation directory yet, say).
fn sshd_ports(paths: &Paths, plan: &mut Plan) -> Vec<u16> {
    let cmd = Cmd::new("sshd").args(["-T", "-f", &paths.sshd_config().to_string_lossy()]);
    let ports = exec::run(&cmd)
        .map(|out| fail2ban::parse_sshd_ports(&out.stdout))
        .unwrap_or_default();
    if ports.is_empty() {
        plan.unchanged(format!(
            "fail2ban jail port (`{cmd}` named no port; using 22: set `port` in [fail2ban])"
        ));
        return vec![22];
    }
    ports
}

/// The steps still missing on this host; satisfied ones are `unchanged`.
/// Refuses when another sshd Match block is read before ours.
pub fn plan(paths: &Paths, harden: bool) -> Result<Plan> {
    let mut plan = Plan::default();
    if accounts::group_gid()?.is_some() {
        plan.unchanged(format!("group {}", accounts::GROUP));
    } else {
        plan.push(
            Step::new(
                format!("create group {}", accounts::GROUP),
                Action::EditAccounts(accounts::groupadd()),
            )
            .undo(Action::EditAccounts(accounts::groupdel())),
        );
    }

    let keys_dir = paths.keys_dir();
    if keys_dir.is_dir() {
        plan.unchanged(format!("key directory {}", keys_dir.display()));
    } else {
        let dir = keys_dir.to_string_lossy().into_owned();
        plan.push(
            Step::new(
                "create the jump-key directory",
                Action::run(
                    Cmd::new("install")
                        .args(["-d", "-m", "0755", "-o", "root", "-g", "root", &dir]),
                ),
            )
            .undo(Action::run(Cmd::new("rmdir").arg(&dir))),
        );
    }
    sshd_steps(paths, harden, &mut plan)?;
    Ok(plan)
}

/// Our drop-in, first in sshd_config.d, the old one gone, the hardening
/// drop-in when asked for, then `sshd -t` and a reload when anything
/// changed.
fn sshd_steps(paths: &Paths, harden: bool, plan: &mut Plan) -> Result<()> {
    let config = paths.sshd_config();
    let main_config = files::read_optional(&config)?.ok_or_else(|| {
        Refused(format!(
            "{} not found: is openssh-server installed?",
            config.display()
        ))
    })?;
    if !sshd::includes_dropins(&main_config) {
        return Err(Refused(format!(
            "{} does not read sshd_config.d: add `Include /etc/ssh/sshd_config.d/*.conf` at its top",
            config.display()
        ))
        .into());
    }
    let dropin = paths.sshd_dropin();
    let main_config = sshd::resolve_includes(&main_config, &|p| paths.at(p))
        .map_err(|why| Refused(format!("{}: {why}", config.display())))?;
    if let Some(reason) = sshd::earlier_match(&main_config, &other_dropins(paths)?) {
        bail!(Refused(format!(
            "{reason}: it would override containarium's policy for jump accounts; \
             move it after {} or remove it",
            dropin.display()
        )));
    }
    let mut changed = write_ours(
        plan,
        "sshd drop-in",
        &dropin,
        sshd::dropin(sshd::supports_per_source(), paths.host_cert().exists()),
    )?;
    let hardening = paths.sshd_dropin_dir().join(sshd::HARDENING_NAME);
    if harden {
        changed |= write_ours(
            plan,
            "sshd hardening drop-in",
            &hardening,
            sshd::hardening(),
        )?;
    } else if hardening.exists() {
        plan.unchanged(format!(
            "sshd hardening drop-in {} (kept; `host init --harden` updates it)",
            hardening.display()
        ));
    }
    // The old name sorted after other drop-ins; one we wrote goes, anyone
    // else's file of that name stays (it now sorts after ours).
    let old = paths.sshd_old_dropin();
    if let Some(text) = files::read_optional(&old)?
        && text.starts_with(sshd::MARKER)
    {
        plan.push(
            Step::new(
                format!("remove the old sshd drop-in {}", old.display()),
                Action::Remove(old.clone()),
            )
            .undo(Action::write(FileWrite {
                path: old,
                mode: 0o644,
                contents: text,
            })),
        );
        changed = true;
    }
    // systemd's ssh.service makes it at start; a host without systemd, or
    // whose sshd never ran, has none, and `sshd -t`/`-T` fail without it.
    let privsep = paths.sshd_privsep_dir();
    if !privsep.is_dir() {
        plan.push(Step::new(
            "create sshd's privilege separation directory",
            Action::run(Cmd::new("install").args(["-d", "-m", "0755", &privsep.to_string_lossy()])),
        ));
    }
    if !changed {
        return Ok(());
    }
    plan.push(Step::new(
        "validate the sshd configuration",
        Action::run(sshd::validate(&config)),
    ));
    let pid_file = paths.sshd_pid_file();
    match sshd::running_pid(Path::new("/proc"), &pid_file) {
        Some(pid) => plan.push(Step::new(
            "reload sshd",
            Action::check(
                format!("kill -HUP {pid} (after checking again that it is sshd)"),
                move |_| sshd::reload(&pid_file),
            ),
        )),
        None => plan.unchanged("sshd is not running; it reads the drop-in when it starts"),
    }
    Ok(())
}

/// Refuses a file at one of our paths that does not carry our marker.
fn refuse_foreign(path: &Path) -> Result<()> {
    if is_foreign(path)? {
        return Err(Refused(format!(
            "{} exists and was not written by containarium; move it aside first",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// A file is at `path` and does not carry our marker.
fn is_foreign(path: &Path) -> Result<bool> {
    Ok(files::read_optional(path)?.is_some_and(|text| !text.starts_with(sshd::MARKER)))
}

/// Writes `contents` to our file `path` unless it holds them already;
/// refuses a file there that we did not write. Whether it will change.
fn write_ours(plan: &mut Plan, what: &str, path: &Path, contents: String) -> Result<bool> {
    refuse_foreign(path)?;
    let write = FileWrite {
        path: path.to_path_buf(),
        mode: 0o644,
        contents,
    };
    match Step::write_file(format!("install the {what}"), write)? {
        Some(step) => {
            plan.push(step);
            Ok(true)
        }
        None => {
            plan.unchanged(format!("{what} {}", path.display()));
            Ok(false)
        }
    }
}

/// Kernel limits for many containers (src/sysctl.rs): the sysctl.d file
/// kept, and `sysctl -p` on it when a limit is below ours right now.
pub fn sysctl_plan(paths: &Paths) -> Result<Plan> {
    let mut plan = Plan::default();
    let proc_sys = paths.proc_sys();
    let wanted = sysctl::wanted(|key| {
        let text = std::fs::read_to_string(sysctl::proc_path(&proc_sys, key)).ok()?;
        sysctl::parse(&text)
    });
    if wanted.is_empty() {
        return Ok(plan);
    }
    let path = paths.sysctl_file();
    let changed = write_ours(
        &mut plan,
        "kernel limits for many containers",
        &path,
        sysctl::file(&wanted),
    )?;
    let low: Vec<&str> = wanted.iter().filter(|w| w.2).map(|w| w.0).collect();
    if changed || !low.is_empty() {
        plan.push(Step::new(
            format!(
                "raise kernel limits ({})",
                if low.is_empty() {
                    "none below ours".to_string()
                } else {
                    low.join(", ")
                }
            ),
            Action::run(Cmd::new("sysctl").args(["-q", "-p", &path.to_string_lossy()])),
        ));
    }
    Ok(plan)
}

/// The other `*.conf` files of sshd_config.d (what sshd's Include reads),
/// name and text, each with what it includes in its place.
pub(super) fn other_dropins(paths: &Paths) -> Result<Vec<(String, String)>> {
    let dir = paths.sshd_dropin_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    };
    let mut others = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".conf") && !name.starts_with('.') && name != sshd::DROPIN_NAME {
            let text = config::read(&entry.path())?;
            let text = sshd::resolve_includes(&text, &|p| paths.at(p))
                .map_err(|why| Refused(format!("{}/{name}: {why}", dir.display())))?;
            others.push((name, text));
        }
    }
    Ok(others)
}

/// An address for each `Match Address` of sshd's whole configuration
/// (sshd_config, what it includes, the drop-ins), for `sshd -T`.
fn match_addresses(paths: &Paths) -> Vec<String> {
    let main = files::read_optional(&paths.sshd_config())
        .ok()
        .flatten()
        .unwrap_or_default();
    let main = sshd::resolve_includes(&main, &|p| paths.at(p)).unwrap_or_default();
    sshd::match_addresses(&main, &other_dropins(paths).unwrap_or_default())
}

/// A jump account to ask sshd about: the first key file's, if its account
/// exists and is ours (`sshd -T` needs a real member of the group).
pub fn existing_jump_account(paths: &Paths) -> Result<Option<UserName>> {
    let Ok(entries) = std::fs::read_dir(paths.keys_dir()) else {
        return Ok(None);
    };
    let mut names: Vec<UserName> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    for user in names {
        if let Some(account) = accounts::lookup(user.as_str())?
            && accounts::is_ours(&account)?
        {
            return Ok(Some(user));
        }
    }
    Ok(None)
}

/// Proves with `sshd -T` that sshd applies our whole Match block to the
/// jump account `user`, from sample addresses and from one of each `Match
/// Address` of the configuration; fails (and the plan undoes itself) when
/// not.
pub fn policy_step(paths: &Paths, user: &UserName) -> Step {
    let config = paths.sshd_config();
    let more = match_addresses(paths);
    let others = sshd::SAMPLE_ADDRS[1..]
        .iter()
        .map(|a| a.to_string())
        .chain(more.iter().cloned())
        .collect::<Vec<_>>()
        .join(", ");
    let description = format!(
        "{} (and from {others}) shows every setting of our Match block",
        sshd::effective_cmd(&config, user.as_str(), sshd::SAMPLE_ADDRS[0])
    );
    let user = user.clone();
    Step::new(
        "check sshd's effective policy for jump accounts",
        Action::check(description, move |_| {
            sshd::check_policy(&config, user.as_str(), &more)
        }),
    )
}
