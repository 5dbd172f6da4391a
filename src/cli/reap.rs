//! `containarium reap`: environments that end by themselves, without a
//! daemon (a systemd timer runs it every few minutes: systemd/).
//!
//! A container past its `user.containarium.expires` is stopped, and
//! deleted once `--delete-after` has passed as well. A running container
//! with `user.containarium.idle-stop` is stopped once nobody has had an SSH
//! connection to it for that long: connections are read from the kernel on
//! the bastion (see [`crate::activity`]), and the last time one was seen is
//! recorded as `user.containarium.last-active`. A user another containarium
//! run is working on is left for the next round.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{Env, print_json};
use crate::activity;
use crate::exec;
use crate::incus::{Instance, key};
use crate::names::UserName;
use crate::network::Endpoints;
use crate::time::{Span, Time};

/// Stop idle and expired containers, and delete long-expired ones
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Say what would be done and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the decisions as JSON
    #[arg(long)]
    json: bool,

    /// How long after it expired a container is deleted
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    delete_after: Span,

    /// Export a container into DIR before deleting it
    #[arg(long, value_name = "DIR")]
    backup: Option<PathBuf>,

    /// Keep running an idle container that uses more than PERCENT of a CPU
    /// (a long job); off unless given
    #[arg(long, value_name = "PERCENT")]
    busy_cpu: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deed {
    Stop,
    Delete,
    Keep,
}

#[derive(Debug, PartialEq, Eq)]
struct Decision {
    deed: Deed,
    why: String,
    /// Someone is connected: record the time as last-active.
    active: bool,
    /// The expiry has no record of when it was set: record now, which its
    /// grace period runs from.
    dates_expiry: bool,
}

impl Decision {
    fn new(deed: Deed, why: String) -> Decision {
        Decision {
            deed,
            why,
            active: false,
            dates_expiry: false,
        }
    }
}

/// What to do with `instance` at `now`; `connections` are the SSH
/// connections to it (looked up only for a running container with an
/// idle-stop). `None`: nothing to say about it.
fn decide(
    instance: &Instance,
    now: Time,
    grace: &Span,
    connections: Option<usize>,
) -> Option<Decision> {
    if super::create::is_pending(instance) {
        return None;
    }
    let running = instance.is_running();
    if let Some(expired) = instance.config_value(key::EXPIRES).and_then(Time::parse)
        && now >= expired
    {
        // The grace period runs from the expiry, or from when it was set
        // if that was later (an expiry set in the past, or by a file we did
        // not write): never from a date alone. Unrecorded: from now, and
        // now is recorded.
        let set = instance
            .config_value(key::EXPIRES_SET)
            .and_then(Time::parse);
        let end = expired.max(set.unwrap_or(now)).plus_secs(grace.seconds);
        let expiry = match set {
            Some(set) if set > expired => format!("expired at {expired} (set at {set})"),
            Some(_) => format!("expired at {expired}"),
            None => format!("expired at {expired} (set at an unrecorded time: grace from now)"),
        };
        let mut decision = if now >= end {
            Decision::new(
                Deed::Delete,
                format!("{expiry}; the {grace} grace period ended at {end}"),
            )
        } else if running {
            Decision::new(Deed::Stop, format!("{expiry}; deleted from {end}"))
        } else {
            Decision::new(Deed::Keep, format!("{expiry}, stopped; deleted from {end}"))
        };
        decision.dates_expiry = set.is_none();
        return Some(decision);
    }
    let idle = instance
        .config_value(key::IDLE_STOP)?
        .parse::<Span>()
        .ok()?;
    if !running {
        return None;
    }
    let connections = connections?;
    if connections > 0 {
        return Some(Decision {
            active: true,
            ..Decision::new(
                Deed::Keep,
                format!(
                    "{connections} SSH connection{}",
                    if connections == 1 { "" } else { "s" }
                ),
            )
        });
    }
    // Idle since the last connection seen, or since it started.
    let since = [
        instance.config_value(key::LAST_ACTIVE),
        Some(instance.last_used_at.as_str()),
        instance.config_value(key::CREATED),
    ]
    .into_iter()
    .flatten()
    .filter_map(Time::parse)
    .max()?;
    let until = since.plus_secs(idle.seconds);
    Some(if now >= until {
        Decision::new(
            Deed::Stop,
            format!("no SSH connection since {since} (idle-stop {idle})"),
        )
    } else {
        Decision::new(
            Deed::Keep,
            format!("idle since {since}; stopped from {until} (idle-stop {idle})"),
        )
    })
}

impl ReapArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let mut instances = env.incus.instances()?;
        // On a cluster each member's timer reaps its own containers: their
        // connections are read from this kernel's /proc, which only holds
        // the containers running here.
        if instances.iter().any(|i| i.member().is_some()) {
            let here = env.incus.server()?.name;
            instances.retain(|i| i.member() == Some(here.as_str()));
        }
        let now = Time::now();
        // Read once for all containers, only when one has an idle-stop.
        let needs_activity = instances
            .iter()
            .any(|i| i.is_running() && i.config_value(key::IDLE_STOP).is_some());
        let ss = if needs_activity {
            activity::read_bastion()?
        } else {
            String::new()
        };
        let endpoints = super::endpoints(env);
        let mut decisions = Vec::new();
        for instance in &instances {
            // The user its name says, only when the recorded owner agrees:
            // a relabelled instance is skipped (warned when listed), so what
            // is deleted below is the instance judged here, by its name.
            let Some(user) = instance.user() else {
                continue;
            };
            let connections =
                if instance.is_running() && instance.config_value(key::IDLE_STOP).is_some() {
                    Some(connections(env, &endpoints, instance, &ss))
                } else {
                    None
                };
            let Some(mut decision) = decide(instance, now, &self.delete_after, connections) else {
                continue;
            };
            if decision.deed == Deed::Stop
                && connections.is_some()
                && let Some(limit) = self.busy_cpu
            {
                let percent = cpu_percent(env, &instance.name)?;
                if percent > limit {
                    decision = Decision {
                        active: true,
                        ..Decision::new(
                            Deed::Keep,
                            format!("busy: {percent:.0}% of a CPU (--busy-cpu {limit})"),
                        )
                    };
                }
            }
            decisions.push((user, instance.name.clone(), decision));
        }
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for (user, name, decision) in &decisions {
            let outcome = if self.dry_run {
                Ok(false)
            } else {
                self.act(env, user, name, decision, now)
            };
            let status = match &outcome {
                Ok(true) => "done",
                Ok(false) if self.dry_run => "dry run",
                Ok(false) => "skipped: another containarium run is working on it",
                Err(_) => "failed",
            };
            if outcome.is_err() {
                failed.push(name.as_str());
            }
            if !self.json && decision.deed != Deed::Keep {
                let verb = match (decision.deed, self.dry_run, &outcome) {
                    (Deed::Stop, true, _) => "would stop",
                    (Deed::Delete, true, _) => "would delete",
                    (Deed::Stop, _, Ok(true)) => "stopped",
                    (Deed::Delete, _, Ok(true)) => "deleted",
                    (Deed::Stop, _, _) => "did not stop",
                    _ => "did not delete",
                };
                match &outcome {
                    Err(err) => crate::outln!("{verb} {name}: {}; {err:#}", decision.why),
                    Ok(false) if !self.dry_run => crate::outln!("{verb} {name}: {status}"),
                    _ => crate::outln!("{verb} {name}: {}", decision.why),
                }
            }
            done.push(serde_json::json!({
                "user": user.as_str(),
                "container": name,
                "action": match decision.deed { Deed::Stop => "stop", Deed::Delete => "delete", Deed::Keep => "keep" },
                "why": decision.why,
                "status": status,
                "error": outcome.as_ref().err().map(|e| format!("{e:#}")),
            }));
        }
        if self.json {
            print_json(&serde_json::Value::Array(done));
        } else if !decisions.iter().any(|(_, _, d)| d.deed != Deed::Keep) {
            crate::outln!("nothing to stop or delete ({} kept)", decisions.len());
        }
        // The others were done; the timer's unit shows the failure.
        if !failed.is_empty() {
            anyhow::bail!(
                "reap could not stop or delete {}; see its report",
                failed.join(", ")
            );
        }
        Ok(())
    }

    /// Carries `decision` out under the user's lock and ours, unless
    /// another run holds them: false then.
    fn act(
        &self,
        env: &Env,
        user: &UserName,
        name: &str,
        decision: &Decision,
        now: Time,
    ) -> Result<bool> {
        if decision.deed == Deed::Delete {
            // The instance judged, by its name (`user` was read from it).
            anyhow::ensure!(user.container() == name, "{name} is not {user}'s container");
            // delete takes the locks itself (and waits for them).
            return super::delete::delete(env, user, self.backup.as_deref());
        }
        let what = format!("reap {user}");
        let Ok(_user_lock) =
            crate::lock::acquire_within(&env.paths.user_lock_file(user), &what, Duration::ZERO)
        else {
            return Ok(false);
        };
        if decision.active {
            exec::run(
                &env.incus
                    .config_set_cmd(name, key::LAST_ACTIVE, &now.to_string()),
            )?;
        }
        if decision.dates_expiry {
            exec::run(
                &env.incus
                    .config_set_cmd(name, key::EXPIRES_SET, &now.to_string()),
            )?;
        }
        if decision.deed == Deed::Stop {
            let _lock = super::lock(env, &what)?;
            crate::ui::step(&format!("stop {name}"), || {
                exec::run(&env.incus.cmd(["stop", name]))
            })?;
        }
        Ok(decision.deed == Deed::Stop)
    }
}

/// SSH connections to `instance`: through the bastion (in `ss`) and in its
/// own network namespace.
fn connections(env: &Env, endpoints: &Endpoints, instance: &Instance, ss: &str) -> usize {
    let through = endpoints
        .computed(instance)
        .map_or(0, |to| activity::bastion_connections(ss, to));
    let pid = instance.state.as_ref().map_or(0, |s| s.pid);
    let inside = if pid > 0 {
        // Unreadable (it stopped just now, say): taken as in use, so an
        // unknown is never a reason to stop it.
        activity::inside(&env.paths.proc_dir(), pid).unwrap_or_else(|err| {
            crate::ui::note(&format!(
                "warning: {err:#}; taking {} as in use",
                instance.name
            ));
            1
        })
    } else {
        0
    };
    // A forward through the bastion shows on both sides: one session.
    through.max(inside)
}

/// The share of one CPU `name` used over a second.
fn cpu_percent(env: &Env, name: &str) -> Result<f64> {
    let usage = || -> Result<f64> {
        let out = exec::run(&env.incus.query_cmd(&format!("/1.0/instances/{name}/state")))?;
        let state: serde_json::Value = serde_json::from_str(&out.stdout)?;
        Ok(state["cpu"]["usage"].as_f64().unwrap_or(0.0))
    };
    let (before, start) = (usage()?, std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let after = usage()?;
    Ok((after - before) / 1e9 / start.elapsed().as_secs_f64() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(status: &str, config: &[(&str, &str)], last_used: &str) -> Instance {
        let config: serde_json::Map<String, serde_json::Value> = config
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": "alice-container",
            "status": status,
            "config": config,
            "last_used_at": last_used,
        }))
        .unwrap()
    }

    fn at(text: &str) -> Time {
        Time::parse(text).unwrap()
    }

    const OWNER: (&str, &str) = (key::OWNER, "alice");

    #[test]
    fn expired_containers_stop_then_go_after_the_grace_period() {
        let grace: Span = "7d".parse().unwrap();
        let expiring = [
            OWNER,
            (key::EXPIRES, "2026-12-01T00:00:00Z"),
            (key::EXPIRES_SET, "2026-11-01T00:00:00Z"),
        ];
        let running = instance("Running", &expiring, "2026-11-01T00:00:00Z");
        let stopped = instance("Stopped", &expiring, "2026-11-01T00:00:00Z");
        assert_eq!(
            decide(&running, at("2026-11-30T23:59:59Z"), &grace, None),
            None
        );
        let d = decide(&running, at("2026-12-01T00:00:00Z"), &grace, None).unwrap();
        assert_eq!(d.deed, Deed::Stop);
        assert_eq!(
            d.why,
            "expired at 2026-12-01T00:00:00Z; deleted from 2026-12-08T00:00:00Z"
        );
        let d = decide(&stopped, at("2026-12-07T00:00:00Z"), &grace, None).unwrap();
        assert_eq!(d.deed, Deed::Keep);
        let d = decide(&stopped, at("2026-12-08T00:00:00Z"), &grace, None).unwrap();
        assert_eq!(d.deed, Deed::Delete);
        assert!(d.why.contains("the 7d grace period ended"), "{}", d.why);
    }

    /// An expiry set after its date (what a helper's file with a past
    /// date once did) gets its whole grace period from when it was set; one
    /// with no record of when is given it from now, and now is recorded.
    #[test]
    fn grace_runs_from_when_the_expiry_was_set_never_from_the_date_alone() {
        let grace: Span = "7d".parse().unwrap();
        let late = instance(
            "Stopped",
            &[
                OWNER,
                (key::EXPIRES, "2000-01-01T00:00:00Z"),
                (key::EXPIRES_SET, "2026-12-01T00:00:00Z"),
            ],
            "2026-11-01T00:00:00Z",
        );
        let d = decide(&late, at("2026-12-07T23:59:59Z"), &grace, None).unwrap();
        assert_eq!(d.deed, Deed::Keep);
        assert_eq!(
            d.why,
            "expired at 2000-01-01T00:00:00Z (set at 2026-12-01T00:00:00Z), stopped; \
             deleted from 2026-12-08T00:00:00Z"
        );
        assert!(!d.dates_expiry);
        let d = decide(&late, at("2026-12-08T00:00:00Z"), &grace, None).unwrap();
        assert_eq!(d.deed, Deed::Delete);
        let unrecorded = instance(
            "Running",
            &[OWNER, (key::EXPIRES, "2000-01-01T00:00:00Z")],
            "2026-11-01T00:00:00Z",
        );
        let d = decide(&unrecorded, at("2026-12-01T00:00:00Z"), &grace, None).unwrap();
        assert_eq!((d.deed, d.dates_expiry), (Deed::Stop, true));
        assert!(
            d.why.ends_with("deleted from 2026-12-08T00:00:00Z"),
            "{}",
            d.why
        );
    }

    #[test]
    fn idle_means_no_connection_since_the_last_one_seen_or_the_start() {
        let grace: Span = "7d".parse().unwrap();
        let idle = [
            OWNER,
            (key::IDLE_STOP, "1h"),
            (key::CREATED, "2026-12-01T08:00:00Z"),
        ];
        let started_at_9 = instance("Running", &idle, "2026-12-01T09:00:00.123456789Z");
        let d = decide(&started_at_9, at("2026-12-01T09:59:00Z"), &grace, Some(0)).unwrap();
        assert_eq!(d.deed, Deed::Keep);
        let d = decide(&started_at_9, at("2026-12-01T10:00:01Z"), &grace, Some(0)).unwrap();
        assert_eq!(d.deed, Deed::Stop);
        assert_eq!(
            d.why,
            "no SSH connection since 2026-12-01T09:00:00Z (idle-stop 1h)"
        );
        // A live session keeps it, and is recorded.
        let d = decide(&started_at_9, at("2026-12-01T12:00:00Z"), &grace, Some(2)).unwrap();
        assert_eq!((d.deed, d.active), (Deed::Keep, true));
        // The last connection seen counts from then.
        let mut seen = idle.to_vec();
        seen.push((key::LAST_ACTIVE, "2026-12-01T11:30:00Z"));
        let seen = instance("Running", &seen, "2026-12-01T09:00:00Z");
        let d = decide(&seen, at("2026-12-01T12:00:00Z"), &grace, Some(0)).unwrap();
        assert_eq!(d.deed, Deed::Keep);
        // Stopped, pending, or without an idle-stop: nothing to say.
        let stopped = instance("Stopped", &idle, "2026-12-01T09:00:00Z");
        assert_eq!(
            decide(&stopped, at("2026-12-02T00:00:00Z"), &grace, None),
            None
        );
        let mut pending = idle.to_vec();
        pending.push((key::STATE, "pending"));
        let pending = instance("Running", &pending, "2026-12-01T09:00:00Z");
        assert_eq!(
            decide(&pending, at("2026-12-02T00:00:00Z"), &grace, Some(0)),
            None
        );
        let plain = instance("Running", &[OWNER], "2026-12-01T09:00:00Z");
        assert_eq!(
            decide(&plain, at("2026-12-02T00:00:00Z"), &grace, Some(0)),
            None
        );
    }
}
