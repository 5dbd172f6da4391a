//! `containarium snapshot create|list|restore|delete USER [NAME]`.
//!
//! A restore brings back the container's disk and config as they were,
//! including `user.containarium.keys` and authorized_keys. Keys removed since
//! the snapshot (a lost laptop's) must not come back unnoticed: by default
//! the current keys are re-applied to authorized_keys, the jump key file and
//! the metadata, with a warning naming the snapshot's extra keys;
//! `--keep-snapshot-keys` keeps the snapshot's keys (and warns that removed
//! keys work again). Either way both ends of the tunnel agree afterwards.

use std::net::SocketAddrV4;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::{Env, print_json};
use crate::error::Refused;
use crate::incus::{Incus, PROXY_DEVICE};
use crate::keys::PublicKey;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};
use crate::ui;

/// Create, list, restore or delete snapshots of a user's container
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot (named snap-TIMESTAMP unless NAME is given)
    Create(NamedArgs),
    /// List snapshots
    List(ListArgs),
    /// Roll the container back to a snapshot
    Restore(RestoreArgs),
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
pub struct RestoreArgs {
    #[command(flatten)]
    named: NamedArgs,
    /// Keep the snapshot's keys instead of re-applying the current ones
    /// (keys removed since the snapshot work again)
    #[arg(long)]
    keep_snapshot_keys: bool,
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
            | SnapshotCommand::Restore(RestoreArgs {
                named: ref args, ..
            })
            | SnapshotCommand::Delete(ref args) => args,
        };
        let lock = super::lock(env, &format!("snapshot {}", args.user))?;
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
                // A snapshot holds the published sshd as it was, on the
                // member the container was on then (see `move`).
                if restore
                    && instance.expanded_devices.contains_key(PROXY_DEVICE)
                    && let Some(at) = instance.ssh_endpoint()
                {
                    plan.push(republish_step(&env.incus, container, at));
                }
                // Incus restarts a running container to restore it: done
                // when it answers again, as `restart` is.
                if restore && instance.is_running() {
                    plan.push(super::create::sshd_ready_step(instance.ssh_endpoint()));
                }
            }
            SnapshotCommand::List(_) => unreachable!("handled above"),
        }
        // For a restore: whether to keep the snapshot's keys, and the keys now.
        let keep = match &self {
            SnapshotCommand::Restore(restore) => {
                Some((restore.keep_snapshot_keys, instance.keys()?))
            }
            _ => None,
        };
        if args.dry_run {
            crate::out!("{}", plan.describe());
            match keep {
                Some((false, _)) => crate::outln!("then: re-apply the current keys"),
                Some((true, _)) => {
                    crate::outln!("then: write the jump keys from the snapshot's keys")
                }
                None => {}
            }
            return Ok(());
        }
        plan.apply_under(&lock, &mut Facts::default())?;
        if let Some((keep, current)) = keep {
            let name = args.name.as_deref().unwrap_or_default();
            after_restore(env, &lock, &args.user, name, &current, keep)?;
        }
        Ok(())
    }
}

/// After a snapshot restore on a cluster: `name`'s sshd published at `at`
/// again, where it is now (the device comes back as the snapshot had it).
fn republish_step(incus: &Incus, name: &str, at: SocketAddrV4) -> Step {
    let (incus, name) = (incus.clone(), name.to_string());
    Step::new(
        format!("publish {name}'s sshd at {at} again"),
        Action::check(
            format!(
                "{} (or add it, should the snapshot have none)",
                incus.proxy_listen_cmd(&name, at)
            ),
            move |_| {
                let restored = incus
                    .instance(&name)?
                    .with_context(|| format!("{name} is gone"))?;
                let cmd = if restored.expanded_devices.contains_key(PROXY_DEVICE) {
                    incus.proxy_listen_cmd(&name, at)
                } else {
                    let ip = restored
                        .pinned_ipv4()
                        .with_context(|| format!("{name} has no pinned address"))?;
                    incus.proxy_add_cmd(&name, at, ip)
                };
                crate::exec::run(&cmd)?;
                Ok(())
            },
        ),
    )
}

/// After a restore: warns about keys the snapshot brings back, then makes
/// authorized_keys, the jump key file and the metadata hold the current keys
/// (or, with `keep`, the jump key file the snapshot's).
fn after_restore(
    env: &Env,
    lock: &crate::lock::Lock,
    user: &UserName,
    snapshot: &str,
    current: &[PublicKey],
    keep: bool,
) -> Result<()> {
    let restored = super::managed(env, user)?;
    let snapshot_keys = restored.keys()?;
    let returned: Vec<String> = snapshot_keys
        .iter()
        .filter(|k| !current.iter().any(|c| c.fingerprint() == k.fingerprint()))
        .map(|k| format!("{} ({})", k.fingerprint(), k.comment()))
        .collect();
    if !returned.is_empty() {
        let what = if keep {
            "brought back keys removed since it was taken; they work again"
        } else {
            "holds keys removed since it was taken; re-applying the current keys \
             (--keep-snapshot-keys keeps them)"
        };
        ui::note(&format!(
            "warning: snapshot {snapshot} {what}: {}",
            returned.join(", ")
        ));
    }
    let Some(to) = restored.ssh_endpoint() else {
        return Ok(());
    };
    // A snapshot from before the NIC filters brings the old NIC back:
    // filter it again first.
    let net = super::tenant_net(env)?;
    if let Some(cmd) = crate::network::nic_fix_cmd(&env.incus, &restored, &net) {
        let mut plan = Plan::default();
        plan.push(Step::new(
            format!("filter {}'s eth0 again", restored.name),
            Action::run(cmd),
        ));
        plan.apply_under(lock, &mut Facts::default())?;
    }
    let same = fingerprints(&snapshot_keys) == fingerprints(current);
    let keys = if keep || same {
        snapshot_keys
    } else {
        super::keys::apply_plan(env, user, &restored, current, super::keys::Sessions::Keep)?
            .apply_under(lock, &mut Facts::default())?;
        current.to_vec()
    };
    // The jump account too, should it be missing.
    super::sync_accounts::jump_plan(env, user, to, &keys)?.apply_under(lock, &mut Facts::default())
}

fn fingerprints(keys: &[PublicKey]) -> Vec<String> {
    let mut out: Vec<String> = keys.iter().map(PublicKey::fingerprint).collect();
    out.sort();
    out
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
            crate::outln!("{}  {}", s.name, s.created_at);
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
