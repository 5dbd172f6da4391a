//! `containarium snapshot create|list|restore|delete USER [NAME]`.
//!
//! A restore brings back the container's disk and config as they were,
//! including `user.containarium.keys`; the jump key file is then rewritten
//! from that metadata so both ends of the tunnel agree again.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::{Env, print_json};
use crate::error::Refused;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

/// Create, list, restore or delete snapshots of a user's container
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot (named snap-TIMESTAMP unless NAME is given)
    Create(NamedArgs),
    /// List snapshots
    List(ListArgs),
    /// Roll the container back to a snapshot
    Restore(NamedArgs),
    /// Delete a snapshot
    Delete(NamedArgs),
}

#[derive(Debug, Args)]
pub struct NamedArgs {
    /// User name
    user: UserName,
    /// Snapshot name (letters, digits, '-', '.', '_')
    name: Option<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// User name
    user: UserName,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Deserialize)]
struct Snapshot {
    name: String,
    #[serde(default)]
    created_at: String,
}

impl SnapshotCommand {
    pub fn run(self, env: &Env) -> Result<()> {
        let args = match self {
            SnapshotCommand::List(args) => return list(env, &args),
            SnapshotCommand::Create(ref args)
            | SnapshotCommand::Restore(ref args)
            | SnapshotCommand::Delete(ref args) => args,
        };
        let instance = super::managed(env, &args.user)?;
        let container = instance.name.as_str();
        let existing = snapshots(env, container)?;
        let mut plan = Plan::default();
        match &self {
            SnapshotCommand::Create(_) => {
                let name = match &args.name {
                    Some(name) => valid(name)?,
                    None => format!(
                        "snap-{}",
                        super::create::created_timestamp()
                            .replace([':', '-'], "")
                            .to_lowercase()
                    ),
                };
                if existing.iter().any(|s| s.name == name) {
                    return Err(
                        Refused(format!("{container} already has a snapshot {name}")).into(),
                    );
                }
                plan.push(Step::new(
                    format!("snapshot {container} as {name}"),
                    Action::run(
                        env.incus
                            .cmd(["snapshot", "create", container, name.as_str()]),
                    ),
                ));
            }
            SnapshotCommand::Restore(_) | SnapshotCommand::Delete(_) => {
                let Some(name) = &args.name else {
                    return Err(Refused(
                        "give the snapshot's NAME (see `containarium snapshot list`)".into(),
                    )
                    .into());
                };
                if !existing.iter().any(|s| &s.name == name) {
                    return Err(Refused(format!(
                        "{container} has no snapshot \"{}\"",
                        name.escape_debug()
                    ))
                    .into());
                }
                let restore = matches!(self, SnapshotCommand::Restore(_));
                let verb = if restore { "restore" } else { "delete" };
                plan.push(Step::new(
                    format!("{verb} snapshot {name} of {container}"),
                    Action::run(env.incus.cmd(["snapshot", verb, container, name.as_str()])),
                ));
            }
            SnapshotCommand::List(_) => unreachable!("handled above"),
        }
        if args.dry_run {
            print!("{}", plan.describe());
            return Ok(());
        }
        plan.apply(env.paths.lock_file(), &mut Facts::default())?;
        if matches!(self, SnapshotCommand::Restore(_)) {
            resync_jump_keys(env, &args.user)?;
        }
        Ok(())
    }
}

/// After a restore: the key file follows the restored metadata.
fn resync_jump_keys(env: &Env, user: &UserName) -> Result<()> {
    let instance = super::managed(env, user)?;
    let Some(ip) = instance.pinned_ipv4() else {
        return Ok(());
    };
    let mut plan = super::sync_accounts::jump_plan(env, user, ip, &instance.keys()?)?;
    // A snapshot from before the NIC filters brings the old NIC back.
    let net = crate::network::TenantNet::probe(
        &env.incus,
        crate::config::Defaults::load(&env.paths)?
            .network
            .as_deref(),
    )?;
    if let Some(cmd) = crate::network::nic_fix_cmd(&env.incus, &instance, &net) {
        plan.push(Step::new(
            format!("filter {}'s eth0 again", instance.name),
            Action::run(cmd),
        ));
    }
    plan.apply(env.paths.lock_file(), &mut Facts::default())
}

fn list(env: &Env, args: &ListArgs) -> Result<()> {
    let instance = super::managed(env, &args.user)?;
    let snaps = snapshots(env, &instance.name)?;
    if args.json {
        let rows: Vec<_> = snaps
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "created_at": s.created_at}))
            .collect();
        print_json(&rows.into());
    } else {
        for s in snaps {
            println!("{}  {}", s.name, s.created_at);
        }
    }
    Ok(())
}

fn snapshots(env: &Env, container: &str) -> Result<Vec<Snapshot>> {
    let out = env.incus.probe(
        &env.incus
            .cmd(["snapshot", "list", container, "--format", "json"]),
    )?;
    Ok(serde_json::from_str(&out.stdout)?)
}

fn valid(name: &str) -> Result<String, Refused> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(name.to_string())
    } else {
        Err(Refused(format!(
            "invalid snapshot name \"{}\": use letters, digits, '-', '.', '_'",
            name.escape_debug()
        )))
    }
}
