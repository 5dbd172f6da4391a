//! `containarium host init`: the group, the key directory and the sshd
//! drop-in that jump accounts need, then proof from `sshd -T` that the
//! drop-in's policy is what sshd applies to a jump account. `create`,
//! `restore` and `sync-accounts` run the same plan; `create` checks the
//! policy with the account it makes.
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
use crate::exec::Cmd;
use crate::files::{self, FileWrite};
use crate::names::UserName;
use crate::network::{self, TenantNet};
use crate::plan::{Action, Facts, Plan, Step};
use crate::sshd;

/// Prepare this host as a bastion
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create the containarium group, key directory and sshd drop-in, and
    /// guard the tenant network with our ACL
    Init(InitArgs),
    Doctor(super::doctor::DoctorArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl HostCommand {
    pub fn run(self, env: &Env) -> Result<()> {
        match self {
            HostCommand::Init(args) => {
                let lock = super::lock(env, "host init")?;
                let mut plan = plan(&env.paths)?;
                plan.append(network_plan(env)?);
                match existing_jump_account(&env.paths)? {
                    Some(user) => plan.push(policy_step(&env.paths, &user)),
                    None => plan.unchanged(
                        "sshd policy check (no jump account to check with yet; create checks its own)",
                    ),
                }
                if args.dry_run {
                    print!("{}", plan.describe());
                    return Ok(());
                }
                plan.apply_holding(lock, &mut Facts::default())
            }
            HostCommand::Doctor(args) => args.run(env),
        }
    }
}

/// What guards tenants on the network `create` uses: our ACL there with
/// today's rules (the bastion's addresses, `deny-egress`), attached to it.
/// Fails closed: a host whose Incus has no firewall driver is refused.
pub fn network_plan(env: &Env) -> Result<Plan> {
    let incus = &env.incus;
    let defaults = crate::config::Defaults::load(&env.paths)?;
    let net = TenantNet::probe(incus, defaults.network.as_deref())?;
    network::require_firewall(&incus.firewall()?)?;
    let wanted = network::acl_rules(&net, &network::host_addresses(), &defaults.deny_egress);
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

/// The steps still missing on this host; satisfied ones are `unchanged`.
/// Refuses when another sshd Match block is read before ours.
pub fn plan(paths: &Paths) -> Result<Plan> {
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
    sshd_steps(paths, &mut plan)?;
    Ok(plan)
}

/// Our drop-in, first in sshd_config.d, the old one gone, then `sshd -t`
/// and a reload when anything changed.
fn sshd_steps(paths: &Paths, plan: &mut Plan) -> Result<()> {
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
    if let Some(reason) = sshd::earlier_match(&main_config, &other_dropins(paths)?) {
        bail!(Refused(format!(
            "{reason}: it would override containarium's policy for jump accounts; \
             move it after {} or remove it",
            dropin.display()
        )));
    }
    if let Some(text) = files::read_optional(&dropin)?
        && !text.starts_with(sshd::MARKER)
    {
        return Err(Refused(format!(
            "{} exists and was not written by containarium; move it aside first",
            dropin.display()
        ))
        .into());
    }
    let write = FileWrite {
        path: dropin.clone(),
        mode: 0o644,
        contents: sshd::dropin(),
    };
    let mut changed = false;
    match Step::write_file("install the sshd drop-in", write)? {
        Some(step) => {
            plan.push(step);
            changed = true;
        }
        None => plan.unchanged(format!("sshd drop-in {}", dropin.display())),
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

/// The other `*.conf` files of sshd_config.d (what sshd's Include reads),
/// name and text.
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
            others.push((name, config::read(&entry.path())?));
        }
    }
    Ok(others)
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
/// jump account `user`; fails (and the plan undoes itself) when not.
pub fn policy_step(paths: &Paths, user: &UserName) -> Step {
    let config = paths.sshd_config();
    let others = sshd::SAMPLE_ADDRS[1..].join(", ");
    let description = format!(
        "{} (and from {others}) shows every setting of our Match block",
        sshd::effective_cmd(&config, user.as_str(), sshd::SAMPLE_ADDRS[0])
    );
    let user = user.clone();
    Step::new(
        "check sshd's effective policy for jump accounts",
        Action::check(description, move |_| {
            sshd::check_policy(&config, user.as_str())
        }),
    )
}
