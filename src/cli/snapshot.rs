//! `containarium snapshot create|list|restore|delete USER [NAME]`.
//!
//! A restore brings back the container's disk as it was, and only the disk:
//! `incus snapshot restore` also copies the snapshot's config and devices,
//! which are re-authored right after (see [`restore_plan`]). The disk holds
//! authorized_keys as it was, and the snapshot's config its keys. Keys removed since
//! the snapshot (a lost laptop's) must not come back unnoticed: by default
//! the current keys are re-applied to authorized_keys, the jump key file and
//! the metadata, with a warning naming the snapshot's extra keys;
//! `--keep-snapshot-keys` keeps the snapshot's keys (and warns that removed
//! keys work again). Either way both ends of the tunnel agree afterwards.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::{Env, print_json};
use crate::error::Refused;
use crate::incus::{Authored, Instance, PROXY_DEVICE, key};
use crate::keys::PublicKey;
use crate::names::UserName;
use crate::network;
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
                match &self {
                    SnapshotCommand::Restore(restore) => plan.append(restore_plan(
                        env,
                        &args.user,
                        &instance,
                        name,
                        restore.keep_snapshot_keys,
                    )?),
                    _ => plan.push(Step::new(
                        format!("delete snapshot {name} of {container}"),
                        Action::run(env.incus.cmd([
                            "snapshot",
                            "delete",
                            container,
                            name.as_str(),
                        ])),
                    )),
                }
            }
            SnapshotCommand::List(_) => unreachable!("handled above"),
        }
        if args.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
        plan.apply_under(&lock, &mut Facts::default())
    }
}

/// `incus snapshot restore` copies the snapshot's config and devices into
/// the instance: whatever it held then (an older MAC and address, other
/// quotas, owner or expiry, keys removed since) or whatever a backup file
/// put into it (an `ssh` device listening anywhere on the host). So the
/// restore is re-authored: stopped, restored, then its own config and
/// devices made what they are now ([`Incus::converge_cmds`] from the
/// snapshot's, read before), with eth0 pinned to its current address and
/// MAC and filtered, the `ssh` device recomputed (none off a cluster), and
/// the keys the current ones (or with `keep` the snapshot's, parsed); then
/// started if it ran, and the keys inside and the jump key file made to
/// agree, the key's `permitopen` computed, never read from a device.
fn restore_plan(
    env: &Env,
    user: &UserName,
    instance: &Instance,
    snapshot: &str,
    keep: bool,
) -> Result<Plan> {
    let incus = &env.incus;
    let name = instance.name.as_str();
    let path = format!("/1.0/instances/{name}/snapshots/{snapshot}");
    let out = incus.probe(&incus.query_cmd(&path))?;
    let have: Authored = serde_json::from_str(&out.stdout)
        .with_context(|| format!("parsing `incus query {path}`"))?;
    let current = instance.keys()?;
    let origin = format!("snapshot {snapshot}'s {}", key::KEYS);
    let snapshot_keys: Vec<PublicKey> = have
        .config
        .get(key::KEYS)
        .map(String::as_str)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| PublicKey::parse_line(l, &origin))
        .collect::<Result<_, Refused>>()?;
    let keys = if keep {
        snapshot_keys.clone()
    } else {
        current.clone()
    };
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

    let net = super::tenant_net(env)?;
    let endpoints = network::Endpoints::new(incus, || Ok(net.clone()));
    // Computed from the pinned address (and member): the device, whatever
    // it says now, is made again below.
    let to = endpoints.computed(instance)?;
    let ip = instance
        .pinned_ipv4()
        .with_context(|| format!("{name} has no pinned address"))?;
    let mut want = Authored {
        config: instance.config.clone(),
        devices: instance.devices.clone(),
    };
    want.config
        .insert(key::KEYS.to_string(), crate::keys::to_lines(&keys));
    // As it is in effect (its own, or the profile's with our overrides).
    let mut eth0 = instance
        .expanded_devices
        .get("eth0")
        .cloned()
        .with_context(|| format!("{name} has no eth0"))?;
    for (k, v) in net.nic_security() {
        eth0.insert(k.to_string(), v.to_string());
    }
    // The MAC it has now: a snapshot's older one would leave a DHCP lease
    // behind that keeps its address from it.
    if let Some(mac) = instance.config.get("volatile.eth0.hwaddr") {
        eth0.insert("hwaddr".to_string(), mac.clone());
    }
    want.devices.insert("eth0".to_string(), eth0);
    want.devices.remove(PROXY_DEVICE);
    if instance.member().is_some() {
        want.devices
            .insert(PROXY_DEVICE.to_string(), network::proxy_device(to, ip));
    }

    let mut plan = Plan::default();
    let running = instance.is_running();
    // Not started again should a later step fail: half re-authored, it
    // may hold what the snapshot brought back. Left stopped, a rerun
    // restores and re-authors it again.
    if running {
        plan.push(Step::new(
            format!("stop {name}"),
            Action::run(incus.cmd(["stop", name])),
        ));
    }
    // Should a step after it fail, the config and devices are made what
    // they were before (from whatever they are by then): never left half
    // the snapshot's, which a rerun would take for the container's own.
    let (undoer, container, wanted) = (incus.clone(), name.to_string(), want.clone());
    plan.push(
        Step::new(
            format!("restore snapshot {snapshot} of {name}"),
            Action::run(incus.cmd(["snapshot", "restore", name, snapshot])),
        )
        .undo(Action::check(
            format!("make {name}'s config and devices what they were before the restore"),
            move |_| {
                let now = undoer
                    .instance(&container)?
                    .with_context(|| format!("{container} is gone"))?;
                let now = Authored {
                    config: now.config,
                    devices: now.devices,
                };
                for cmd in undoer.converge_cmds(&container, &now, &wanted) {
                    crate::exec::run(&cmd)?;
                }
                Ok(())
            },
        )),
    );
    for cmd in incus.converge_cmds(name, &have, &want) {
        plan.push(Step::new(
            format!(
                "{name} as it is now, not as the snapshot has it: {}",
                what(&cmd)
            ),
            Action::run(cmd),
        ));
    }
    if running {
        plan.push(Step::new(
            format!("start {name}"),
            Action::run(incus.cmd(["start", name])),
        ));
        plan.push(super::create::sshd_ready_step(Some(to)));
    }
    let same = fingerprints(&snapshot_keys) == fingerprints(&current);
    if !keep && !same {
        plan.push(super::keys::authorized_keys_step(
            env,
            user,
            name,
            snapshot_keys,
            current,
        ));
    }
    // The jump account too, should it be missing.
    plan.append(super::sync_accounts::jump_plan(env, user, to, &keys)?);
    Ok(plan)
}

/// What a converging command changes, for its step's synopsis: its words
/// after `config`, without the instance's name or any value.
fn what(cmd: &crate::exec::Cmd) -> String {
    let words: Vec<&str> = cmd
        .args
        .iter()
        .skip_while(|a| *a != "config")
        .skip(1)
        .enumerate()
        .filter(|(i, _)| {
            // The instance: `config VERB NAME` or `config device VERB NAME`.
            let device = cmd.args.iter().any(|a| a == "device");
            *i != if device { 2 } else { 1 }
        })
        .map(|(_, a)| a.split_once('=').map_or(a.as_str(), |(k, _)| k))
        .collect();
    words.join(" ")
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
