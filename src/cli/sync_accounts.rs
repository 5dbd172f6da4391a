//! `containarium sync-accounts`: rebuilds every jump account, key file and
//! the sshd drop-in from Incus metadata alone.
//!
//! This is the recovery path when a spot bastion comes back with a fresh
//! root disk but the same Incus storage: the containers (and their
//! `user.containarium.*` keys) survived, the accounts did not. Containers
//! need not be running. Idempotent; never touches an account it did not make.
//! It also brings tenants up to what `create` sets now: NIC filters and
//! `limits.processes`, each reported as a change.

use std::net::SocketAddrV4;

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::accounts;
use crate::files::FileWrite;
use crate::incus::Instance;
use crate::keys::PublicKey;
use crate::names::UserName;
use crate::network;
use crate::plan::{Action, Facts, Plan, Step};
use crate::ui;

/// Rebuild jump accounts and key files from Incus metadata
#[derive(Debug, Args)]
pub struct SyncAccountsArgs {
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the summary as JSON: {"checked", "changes", "failed": [USER]}
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

impl SyncAccountsArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        // Held from the probes to the last user: a concurrent delete cannot
        // have its account recreated from what was probed before it ran.
        let lock = super::lock(env, "sync-accounts")?;
        let mut host = super::host::plan(&env.paths, false)?;
        // Tenants made before the network was guarded get the ACL and
        // their NIC filters here, each reported as a change. A network we
        // cannot guard (IPv6, no firewall) fails the run, but only at the
        // end: it never holds back a revocation or a key change.
        let network = match super::host::network_plan(env) {
            Ok(plan) => {
                host.append(plan);
                None
            }
            Err(err) => Some(err),
        };
        let net = super::tenant_net(env)?;
        let processes = crate::config::Defaults::load(&env.paths)?.processes;
        // Jump accounts are host-wide: a name that owns containers in two
        // projects has no one right answer, so it is left alone.
        let all = env.incus.instances_config(true)?;
        let endpoints = network::Endpoints::new(&env.incus, || Ok(net.clone()));
        let mut users = Vec::new();
        // A container whose `ssh` device is not ours: its key file is left
        // as it is, and the run fails naming it.
        let mut refused = Vec::new();
        for instance in env.incus.instances_config(false)? {
            // The name is the identity: an instance whose recorded owner
            // names someone else has no user here (warned when listed).
            let Some(user) = instance.user() else {
                continue;
            };
            let owner = user.as_str();
            if let Some(other) = all
                .iter()
                .find(|i| i.project != instance.project && i.owner() == Some(owner))
            {
                ui::note(&format!(
                    "warning: {owner} is claimed in Incus projects {} and {} ({}); skipped: \
                     one user name, one owner",
                    instance.project, other.project, other.name
                ));
                continue;
            }
            let to = match endpoints.computed(&instance) {
                Ok(to) => to,
                Err(err) => {
                    ui::note(&format!("warning: {err:#}; skipped"));
                    continue;
                }
            };
            if let Some(why) = network::proxy_problem(&instance, to) {
                ui::note(&format!(
                    "error: {user}: {why}; jump account and key file left as they are \
                     (see `containarium host doctor`)"
                ));
                refused.push(user.to_string());
                continue;
            }
            // One user's bad key metadata must not hold back everyone
            // else's, nor this user's network filter.
            let mut plan = match instance.keys() {
                Ok(keys) => jump_plan(env, &user, to, &keys)?,
                Err(err) => {
                    ui::note(&format!(
                        "warning: {err}; {user} skipped: jump account and key file left as they are"
                    ));
                    Plan::default()
                }
            };
            if let Some(cmd) = network::nic_fix_cmd(&env.incus, &instance, &net) {
                plan.push(Step::new(
                    format!("filter {}'s eth0", instance.name),
                    Action::run(cmd),
                ));
            }
            if let Some(step) = process_limit_step(env, &instance, processes) {
                plan.push(step);
            }
            users.push((user, plan));
        }
        // On a cluster an account outlives its container when the user was
        // deleted through another bastion: revoke it here too. Only a user
        // no instance of any project claims, and only an account of ours.
        // An instance whose recorded owner is in doubt keeps its named
        // user's account: skipped, not revoked (host doctor fails it).
        let claimed: std::collections::BTreeSet<&str> =
            all.iter().filter_map(|i| i.named_user()).collect();
        if let Some(gid) = accounts::group_gid()? {
            let passwd = crate::files::read_optional(&env.paths.passwd())?.unwrap_or_default();
            for name in accounts::members_of(&passwd, gid) {
                let Ok(user) = name.parse::<UserName>() else {
                    continue;
                };
                if claimed.contains(name.as_str()) {
                    continue;
                }
                let mut plan = Plan::default();
                let account = accounts::lookup(&name)?
                    .filter(|a| a.gid == gid)
                    .map(|a| a.uid);
                let key_file = env.paths.key_file(&user);
                super::delete::revocation_steps(
                    &user,
                    key_file.exists().then_some(key_file),
                    account,
                    &mut plan,
                );
                users.push((user, plan));
            }
        }
        if self.dry_run {
            crate::out!("{}", host.describe());
            for (_, plan) in &users {
                crate::out!("{}", plan.describe());
            }
            return Ok(());
        }
        host.apply_under(&lock, &mut Facts::default())?;
        // Users are independent: one that fails (its own steps undone) does
        // not hold back the others; a rerun retries only what is missing.
        let (checked, mut changes, mut failed) = (users.len() + refused.len(), 0, refused);
        for (user, plan) in users {
            let steps = plan.steps.len();
            match plan.apply_under(&lock, &mut Facts::default()) {
                Ok(()) => changes += steps,
                Err(err) => {
                    ui::note(&format!("error: {user}: {err:#}"));
                    failed.push(user.to_string());
                }
            }
        }
        if self.json {
            super::print_json(
                &serde_json::json!({"checked": checked, "changes": changes, "failed": failed}),
            );
        } else {
            crate::outln!("{checked} users checked, {changes} changes made");
        }
        match network {
            Some(err) if failed.is_empty() => return Err(err),
            Some(err) => ui::note(&format!("error: {err:#}")),
            None => {}
        }
        if !failed.is_empty() {
            anyhow::bail!("could not sync {}; see above", failed.join(", "));
        }
        Ok(())
    }
}

/// Tenants made before containarium set `limits.processes` get config.toml's,
/// live; one that has any value (the admin's `resize --processes`) keeps it.
fn process_limit_step(env: &Env, instance: &Instance, processes: u32) -> Option<Step> {
    if instance.config_value("limits.processes").is_some() {
        return None;
    }
    Some(Step::new(
        format!("limit {} to {processes} processes", instance.name),
        Action::run(
            env.incus
                .cmd(["config", "set", instance.name.as_str()])
                .arg(format!("limits.processes={processes}")),
        ),
    ))
}

/// The steps that make `user`'s jump account and key file what Incus says:
/// the account if it is missing, the key file if it differs.
pub(super) fn jump_plan(
    env: &Env,
    user: &UserName,
    to: SocketAddrV4,
    keys: &[PublicKey],
) -> Result<Plan> {
    let mut plan = Plan::default();
    match accounts::lookup(user.as_str())? {
        None => plan.push(
            Step::new(
                format!("create jump account {user}"),
                Action::EditAccounts(accounts::useradd(user)),
            )
            .undo(Action::EditAccounts(accounts::userdel(user))),
        ),
        Some(account) if accounts::is_ours(&account)? => {
            plan.unchanged(format!("jump account {user}"))
        }
        Some(_) => {
            ui::note(&format!(
                "warning: host account {user} exists and was not made by containarium; left alone"
            ));
            return Ok(plan);
        }
    }
    let path = env.paths.key_file(user);
    let (_, had) =
        accounts::parse_jump_key_file(&crate::files::read_optional(&path)?.unwrap_or_default());
    let write = FileWrite {
        path,
        mode: 0o644,
        contents: accounts::jump_key_file(&to.to_string(), keys),
    };
    match Step::write_file(format!("write {user}'s jump keys"), write)? {
        Some(step) => plan.push(step),
        None => plan.unchanged(format!("{user}'s jump keys")),
    }
    // A key removed through another bastion of a cluster: its sessions
    // here end as they would have there.
    let kept: Vec<String> = keys.iter().map(PublicKey::fingerprint).collect();
    if had.iter().any(|k| !kept.contains(&k.fingerprint()))
        && let Some(account) = accounts::lookup(user.as_str())?
        && accounts::is_ours(&account)?
    {
        plan.push(super::delete::end_sessions_step(
            format!("end {user}'s live jump sessions (a key of theirs was removed)"),
            user,
            account.uid,
        ));
    }
    Ok(plan)
}
