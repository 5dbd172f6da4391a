//! `containarium host init`: the group, the key directory and the sshd
//! drop-in that jump accounts need. `create` runs the same plan when any of
//! it is missing.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Env;
use crate::accounts;
use crate::config::Paths;
use crate::error::Refused;
use crate::exec::Cmd;
use crate::files::{self, FileWrite};
use crate::network::{self, TenantNet};
use crate::plan::{Action, Facts, Plan, Step};
use crate::sshd;

/// Prepare this host as a bastion
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create the containarium group, key directory and sshd drop-in, and
    /// guard the tenant network with our ACL
    Init(InitArgs),
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
                let mut plan = plan(&env.paths)?;
                plan.append(network_plan(env)?);
                if args.dry_run {
                    print!("{}", plan.describe());
                    return Ok(());
                }
                plan.apply(env.paths.lock_file(), &mut Facts::default())
            }
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
    if incus.firewall()?.is_empty() {
        return Err(Refused(
            "Incus has no firewall driver on this host: install nftables and restart incusd, \
             or tenants cannot be isolated"
                .into(),
        )
        .into());
    }
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
            .undo(Action::EditAccounts(
                Cmd::new("groupdel").arg(accounts::GROUP),
            )),
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
    let Some(step) = Step::write_file("install the sshd drop-in", write)? else {
        plan.unchanged(format!("sshd drop-in {}", dropin.display()));
        return Ok(plan);
    };
    plan.push(step);
    // systemd's ssh.service makes it at start; a host without systemd, or
    // whose sshd never ran, has none.
    let privsep = paths.sshd_privsep_dir();
    if !privsep.is_dir() {
        plan.push(Step::new(
            "create sshd's privilege separation directory",
            Action::run(Cmd::new("install").args(["-d", "-m", "0755", &privsep.to_string_lossy()])),
        ));
    }
    plan.push(Step::new(
        "validate the sshd configuration",
        Action::run(sshd::validate(&config)),
    ));
    match sshd::running_pid(&paths.sshd_pid_file()) {
        Some(pid) => plan.push(Step::new("reload sshd", Action::run(sshd::reload(pid)))),
        None => plan.unchanged("sshd is not running; it reads the drop-in when it starts"),
    }
    Ok(plan)
}
