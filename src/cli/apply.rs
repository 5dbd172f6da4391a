//! `containarium apply FILE`: a whole cohort (see [`crate::cohort`]) from
//! one file, the way Terraform applies a configuration.
//!
//! The file is checked whole, then one read-only plan is computed against
//! Incus and printed, a line per user (`+` create, `~` update, `-` delete,
//! `=` unchanged), before anything changes; `--dry-run` stops there. The
//! plan is applied exactly: deletes (only with `--prune`, only of this
//! set's containers), updates (limits through `resize`'s steps, keys
//! through `keys`'s, exclusive for the users listed), then creates, several
//! at once. What cannot change in place (image, template, Docker) is shown
//! as drift and left alone. On a failure no new work starts; what is in
//! flight finishes or rolls back, and a rerun continues from what is there.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use clap::Args;

use super::{Env, print_json};
use crate::cloud_init::Template;
use crate::cohort::{Cohort, Member};
use crate::config::Defaults;
use crate::error::Refused;
use crate::incus::{Instance, key};
use crate::keys::PublicKey;
use crate::names::UserName;
use crate::plan::{Action, Facts, Step};
use crate::size::ByteSize;
use crate::time::Time;

/// Create, update and (with --prune) delete a set of users from one file
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The cohort file (TOML: set, [defaults], [[user]]; see the README)
    file: PathBuf,

    /// Also delete this set's containers that the file no longer lists
    #[arg(long)]
    prune: bool,

    /// With --prune: export each container into DIR before deleting it
    #[arg(long, value_name = "DIR", requires = "prune")]
    backup: Option<PathBuf>,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Exit 2 when the plan has changes, 0 when it has none (as `terraform
    /// plan -detailed-exitcode` does)
    #[arg(long)]
    detailed_exitcode: bool,

    /// Print the plan and the result as JSON
    #[arg(long)]
    json: bool,

    /// Take over USER, a listed user whose container this file's set did
    /// not make (created by hand, or another set's); repeatable
    #[arg(long, value_name = "USER")]
    adopt: Vec<UserName>,

    /// Containers to create at once [default: the CPUs, plus one]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: Option<u32>,
}

/// What the plan does with one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Create,
    Update,
    Delete,
    Unchanged,
}

impl Verb {
    fn symbol(self) -> char {
        match self {
            Verb::Create => '+',
            Verb::Update => '~',
            Verb::Delete => '-',
            Verb::Unchanged => '=',
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Unchanged => "unchanged",
        }
    }
}

/// One difference between a listed user's container and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Disk(ByteSize),
    Cpu(u32),
    Memory(ByteSize),
    /// The keys become exactly the member's: this many added, removed.
    Keys {
        added: usize,
        removed: usize,
    },
    /// A config key set (`Some`) or unset.
    Config {
        key: &'static str,
        value: Option<String>,
    },
}

/// One line of the plan.
#[derive(Debug)]
struct Entry {
    user: UserName,
    verb: Verb,
    /// What is said after the verb: the changes, or a create's settings.
    details: Vec<String>,
    changes: Vec<Change>,
    /// What differs but is never changed in place.
    drift: Vec<String>,
    member: Option<Member>,
}

impl Entry {
    fn line(&self) -> String {
        let mut line = format!("{} {} {}", self.verb.symbol(), self.user, self.verb.word());
        match self.verb {
            Verb::Update => line.push_str(&format!(" {}", self.details.join("; "))),
            Verb::Create | Verb::Delete => {
                line.push_str(&format!(" ({})", self.details.join(", ")))
            }
            Verb::Unchanged => {}
        }
        if !self.drift.is_empty() {
            line.push_str(&format!(
                "; drift: {} (not changed in place: delete and apply again to recreate)",
                self.drift.join(", ")
            ));
        }
        line
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.user.as_str(),
            "action": self.verb.word(),
            "details": self.details,
            "drift": self.drift,
        })
    }
}

/// `Plan: 2 to create, 1 to update, 1 to delete, 5 unchanged.` or `No
/// changes.`
fn summary(entries: &[Entry]) -> String {
    let count = |verb: Verb| entries.iter().filter(|e| e.verb == verb).count();
    let (create, update, delete) = (
        count(Verb::Create),
        count(Verb::Update),
        count(Verb::Delete),
    );
    if create + update + delete == 0 {
        return "No changes.".into();
    }
    format!(
        "Plan: {create} to create, {update} to update, {delete} to delete, {} unchanged.",
        count(Verb::Unchanged)
    )
}

impl ApplyArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let defaults = Defaults::load(&env.paths)?;
        let cohort = Cohort::load(&self.file, &defaults, &env.paths.templates_dir())?;
        if let Some(dir) = &self.backup
            && !dir.is_dir()
        {
            bail!(Refused(format!(
                "backup directory {} does not exist",
                dir.display()
            )));
        }
        let entries = plan(env, &cohort, self.prune, &self.adopt)?;
        // Refused once, before the plan is shown, rather than by each create.
        if entries.iter().any(|e| e.verb == Verb::Create) {
            super::tenant_net(env)?.require_ipv4_only()?;
        }
        let changes = entries.iter().any(|e| e.verb != Verb::Unchanged);
        if !self.json {
            for entry in &entries {
                crate::outln!("{}", entry.line());
            }
            crate::outln!("{}", summary(&entries));
        }
        let outcomes = if self.dry_run || !changes {
            Vec::new()
        } else {
            let jobs = self.jobs.map_or_else(default_jobs, |n| n as usize);
            apply(
                env,
                &cohort.set,
                &defaults,
                &entries,
                jobs,
                self.backup.as_deref(),
            )
        };
        let failed = outcomes.iter().any(|o| o.error.is_some());
        if self.json {
            print_json(&serde_json::json!({
                "set": cohort.set,
                "plan": entries.iter().map(Entry::to_json).collect::<Vec<_>>(),
                "summary": summary(&entries),
                "dry_run": self.dry_run,
                "result": outcomes.iter().map(Outcome::to_json).collect::<Vec<_>>(),
            }));
        } else if !outcomes.is_empty() {
            crate::outln!("{}", result_line(&outcomes));
        }
        if failed {
            bail!(
                "apply stopped after a failure: {}; apply the file again to continue",
                failures(&outcomes)
            );
        }
        // Interrupted between users: main's exit status says so instead.
        if self.detailed_exitcode && changes && !crate::plan::interrupted() {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(crate::error::CHANGES);
        }
        Ok(())
    }
}

/// Creates at once unless told: booting is CPU-bound (cloud-init), and one
/// more than the cores keeps them busy while another create holds our lock
/// (see BENCHMARKS.md, P2).
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() + 1)
}

/// The plan: read-only, from one `incus list`. A listed user whose
/// container this set did not make is refused unless named in `adopt`: a
/// file (perhaps a helper's) never takes over a user silently.
fn plan(env: &Env, cohort: &Cohort, prune: bool, adopt: &[UserName]) -> Result<Vec<Entry>> {
    if let Some(stray) = adopt
        .iter()
        .find(|a| !cohort.members.iter().any(|m| &m.name == *a))
    {
        bail!(Refused(format!(
            "--adopt {stray}: the file does not list {stray}; nothing changed"
        )));
    }
    let instances = env.incus.instances()?;
    let now = Time::now();
    let mut entries = Vec::new();
    for member in &cohort.members {
        let user = &member.name;
        let name = user.container();
        let entry = match instances.iter().find(|i| i.name == name) {
            None => create_entry(member, false, now)?,
            Some(i) if i.owner() != Some(user.as_str()) => bail!(Refused(format!(
                "{name} exists and is not {user}'s container made by containarium (line {})",
                member.line
            ))),
            Some(i) if super::create::is_pending(i) => create_entry(member, true, now)?,
            Some(i) => match i.config_value(key::SET) {
                Some(set) if set == cohort.set => update_entry(env, member, i, &cohort.set, now)?,
                _ if adopt.contains(user) => update_entry(env, member, i, &cohort.set, now)?,
                Some(other) => bail!(Refused(format!(
                    "{user} (line {}) belongs to set {other:?}, not {:?}: take them out of one \
                     file, or take them over with --adopt {user}; nothing changed",
                    member.line, cohort.set
                ))),
                None => bail!(Refused(format!(
                    "{user} (line {}) exists and was not made by set {:?}: take them over \
                     with --adopt {user}; nothing changed",
                    member.line, cohort.set
                ))),
            },
        };
        entries.push(entry);
    }
    if prune {
        let listed: BTreeSet<&str> = cohort.members.iter().map(|m| m.name.as_str()).collect();
        for instance in &instances {
            let Some(owner) = instance.owner() else {
                continue;
            };
            if instance.config_value(key::SET) != Some(cohort.set.as_str())
                || listed.contains(owner)
            {
                continue;
            }
            let Ok(user) = owner.parse::<UserName>() else {
                continue;
            };
            if user.container() != instance.name {
                continue;
            }
            entries.push(Entry {
                user,
                verb: Verb::Delete,
                details: vec!["pruned".into()],
                changes: Vec::new(),
                drift: Vec::new(),
                member: None,
            });
        }
    }
    Ok(entries)
}

fn create_entry(member: &Member, replaces: bool, now: Time) -> Result<Entry> {
    if let Some(ends) = member.expires.as_ref().map(|e| e.at(now))
        && ends <= now
    {
        bail!(Refused(format!(
            "{} (line {}) would expire at {ends}, which has passed; nothing changed",
            member.name, member.line
        )));
    }
    let mut details = vec![
        member.image.clone(),
        format!("{} cpu", member.cpu),
        format!("{} memory", member.memory),
        format!("{} disk", member.disk),
        format!(
            "{} key{}",
            member.keys.len(),
            if member.keys.len() == 1 { "" } else { "s" }
        ),
    ];
    if let Some(expires) = &member.expires {
        details.push(format!("expires {}", expires.at(now)));
    }
    if let Some(idle) = &member.idle_stop {
        details.push(format!("idle-stop {idle}"));
    }
    if replaces {
        details.push("replaces what an interrupted run left pending".into());
    }
    Ok(Entry {
        user: member.name.clone(),
        verb: Verb::Create,
        details,
        changes: Vec::new(),
        drift: Vec::new(),
        member: Some(member.clone()),
    })
}

/// What differs between `instance` and `member`.
fn update_entry(
    env: &Env,
    member: &Member,
    instance: &Instance,
    set: &str,
    now: Time,
) -> Result<Entry> {
    let mut changes = Vec::new();
    let mut details = Vec::new();
    let size = |v: Option<&str>| v.and_then(|v| v.parse::<ByteSize>().ok());
    let disk = size(instance.root_size());
    if disk.map(ByteSize::bytes) != Some(member.disk.bytes()) {
        details.push(format!("disk {} -> {}", shown(disk), member.disk));
        changes.push(Change::Disk(member.disk));
    }
    let cpu = instance.config_value("limits.cpu");
    if cpu != Some(member.cpu.to_string().as_str()) {
        details.push(format!("cpu {} -> {}", cpu.unwrap_or("-"), member.cpu));
        changes.push(Change::Cpu(member.cpu));
    }
    let memory = size(instance.config_value("limits.memory"));
    if memory.map(ByteSize::bytes) != Some(member.memory.bytes()) {
        details.push(format!("memory {} -> {}", shown(memory), member.memory));
        changes.push(Change::Memory(member.memory));
    }
    let recorded = instance.keys()?;
    let has = |keys: &[PublicKey], key: &PublicKey| {
        keys.iter().any(|k| k.fingerprint() == key.fingerprint())
    };
    let added: Vec<&PublicKey> = member.keys.iter().filter(|k| !has(&recorded, k)).collect();
    let removed: Vec<&PublicKey> = recorded.iter().filter(|k| !has(&member.keys, k)).collect();
    if !added.is_empty() || !removed.is_empty() {
        details.push(keys_detail(&added, &removed));
        changes.push(Change::Keys {
            added: added.len(),
            removed: removed.len(),
        });
    }
    let created = instance
        .config_value(key::CREATED)
        .and_then(Time::parse)
        .unwrap_or_else(Time::now);
    let wanted_config = [
        (
            "boot.autostart",
            "autostart",
            Some(member.autostart.to_string()),
        ),
        (
            key::EXPIRES,
            "expires",
            member.expires.as_ref().map(|e| e.at(created).to_string()),
        ),
        (
            key::IDLE_STOP,
            "idle-stop",
            member.idle_stop.as_ref().map(ToString::to_string),
        ),
        (key::SET, "set", Some(set.to_string())),
    ];
    for (config_key, label, value) in wanted_config {
        let have = instance.config_value(config_key);
        // Incus's default for boot.autostart is "not set": false.
        let have = have.or((config_key == "boot.autostart").then_some("false"));
        if have != value.as_deref() {
            // A new end that has passed would hand the user to the next
            // reap: refused, never planned as an update.
            if config_key == key::EXPIRES
                && let Some(ends) = value.as_deref().and_then(Time::parse)
                && ends <= now
            {
                bail!(Refused(format!(
                    "{} (line {}) would expire at {ends}, which has passed: an existing \
                     user's expiry is never set in the past (remove them from the file and \
                     apply with --prune, or delete them); nothing changed",
                    member.name, member.line
                )));
            }
            details.push(format!(
                "{label} {} -> {}",
                have.unwrap_or("-"),
                value.as_deref().unwrap_or("-")
            ));
            changes.push(Change::Config {
                key: config_key,
                value,
            });
        }
    }
    // Checked now, so the plan shows no change that cannot be made.
    let (d, c, m) = limits(&changes);
    super::resize::plan(env, instance, d, c, m, None)?;
    let mut drift = Vec::new();
    let recorded = |k: &str| instance.config_value(k).map(str::to_string);
    for (label, have, want) in [
        ("image", recorded(key::IMAGE), member.image.clone()),
        ("template", recorded(key::TEMPLATE), member.template.clone()),
        ("docker", recorded(key::DOCKER), member.docker.to_string()),
    ] {
        if let Some(have) = have
            && have != want
        {
            drift.push(format!("{label} {have} -> {want}"));
        }
    }
    Ok(Entry {
        user: member.name.clone(),
        verb: if changes.is_empty() {
            Verb::Unchanged
        } else {
            Verb::Update
        },
        details,
        changes,
        drift,
        member: Some(member.clone()),
    })
}

/// `keys +1 -1 (+SHA256:… helper@laptop, -SHA256:… bob@laptop)`: whose key
/// goes in and whose goes out, by fingerprint and comment.
fn keys_detail(added: &[&PublicKey], removed: &[&PublicKey]) -> String {
    let name = |sign: char, key: &&PublicKey| match key.comment() {
        "" => format!("{sign}{}", key.fingerprint()),
        comment => format!("{sign}{} {}", key.fingerprint(), comment.escape_debug()),
    };
    let each: Vec<String> = added
        .iter()
        .map(|k| name('+', k))
        .chain(removed.iter().map(|k| name('-', k)))
        .collect();
    format!(
        "keys +{} -{} ({})",
        added.len(),
        removed.len(),
        each.join(", ")
    )
}

fn shown(size: Option<ByteSize>) -> String {
    size.map_or_else(|| "-".into(), |s| s.to_string())
}

/// The limits among `changes`, as `resize` takes them.
fn limits(changes: &[Change]) -> (Option<ByteSize>, Option<u32>, Option<ByteSize>) {
    let (mut disk, mut cpu, mut memory) = (None, None, None);
    for change in changes {
        match change {
            Change::Disk(d) => disk = Some(*d),
            Change::Cpu(c) => cpu = Some(*c),
            Change::Memory(m) => memory = Some(*m),
            _ => {}
        }
    }
    (disk, cpu, memory)
}

/// What became of one entry of the plan.
struct Outcome {
    user: UserName,
    verb: Verb,
    /// `None`: not started (an earlier failure stopped the run).
    done: Option<bool>,
    error: Option<String>,
}

impl Outcome {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.user.as_str(),
            "action": self.verb.word(),
            "status": match (self.done, &self.error) {
                (None, _) => "not started",
                (Some(_), Some(_)) => "failed",
                (Some(_), None) => "done",
            },
            "error": self.error,
        })
    }
}

/// `Apply: 2 created, 1 updated, 1 deleted.`
fn result_line(outcomes: &[Outcome]) -> String {
    let count = |verb: Verb| {
        outcomes
            .iter()
            .filter(|o| o.verb == verb && o.done == Some(true))
            .count()
    };
    format!(
        "Apply: {} created, {} updated, {} deleted.",
        count(Verb::Create),
        count(Verb::Update),
        count(Verb::Delete)
    )
}

fn failures(outcomes: &[Outcome]) -> String {
    let mut parts = Vec::new();
    for o in outcomes.iter().filter(|o| o.error.is_some()) {
        parts.push(format!(
            "{} {} failed ({})",
            o.verb.word(),
            o.user,
            o.error.as_deref().unwrap_or_default()
        ));
    }
    let not_started: Vec<String> = outcomes
        .iter()
        .filter(|o| o.done.is_none())
        .map(|o| format!("{} {}", o.verb.word(), o.user))
        .collect();
    if !not_started.is_empty() {
        parts.push(format!("not started: {}", not_started.join(", ")));
    }
    parts.join("; ")
}

/// Applies the changes of `entries`: deletes, updates, then creates, by
/// `jobs` workers; stops starting new work after the first failure.
fn apply(
    env: &Env,
    set: &str,
    defaults: &Defaults,
    entries: &[Entry],
    jobs: usize,
    backup: Option<&Path>,
) -> Vec<Outcome> {
    let mut work: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.verb != Verb::Unchanged)
        .collect();
    work.sort_by_key(|e| match e.verb {
        Verb::Delete => 0,
        Verb::Update => 1,
        _ => 2,
    });
    let queue = Mutex::new(work.into_iter().collect::<VecDeque<_>>());
    let outcomes = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    // Ctrl-C stops every worker between steps; each undoes what it did.
    let _signals = crate::plan::SignalGuard::install();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) || crate::plan::interrupted() {
                        break;
                    }
                    let Some(entry) = queue.lock().expect("no panics").pop_front() else {
                        break;
                    };
                    let prefix = format!("{}: ", entry.user);
                    let result = crate::ui::with_prefix(&prefix, || {
                        apply_one(env, set, defaults, entry, backup)
                    });
                    if result.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    outcomes.lock().expect("no panics").push(Outcome {
                        user: entry.user.clone(),
                        verb: entry.verb,
                        done: Some(result.is_ok()),
                        error: result.err().map(|e| format!("{e:#}")),
                    });
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("no panics");
    for entry in queue.into_inner().expect("no panics") {
        outcomes.push(Outcome {
            user: entry.user.clone(),
            verb: entry.verb,
            done: None,
            error: None,
        });
    }
    outcomes
}

fn apply_one(
    env: &Env,
    set: &str,
    defaults: &Defaults,
    entry: &Entry,
    backup: Option<&Path>,
) -> Result<()> {
    match (entry.verb, &entry.member) {
        (Verb::Delete, _) => super::delete::delete(env, &entry.user, backup).map(drop),
        (Verb::Create, Some(member)) => {
            let spec = spec(env, member, set, defaults)?;
            super::create::create(env, &spec, false).map(drop)
        }
        (Verb::Update, Some(member)) => update(env, member, &entry.changes),
        _ => Ok(()),
    }
}

fn spec(env: &Env, member: &Member, set: &str, defaults: &Defaults) -> Result<super::create::Spec> {
    Ok(super::create::Spec {
        user: member.name.clone(),
        container: member.name.container(),
        keys: member.keys.clone(),
        image: member.image.clone(),
        storage_pool: defaults.storage_pool.clone(),
        network: defaults.network.clone(),
        disk: member.disk,
        cpu: member.cpu,
        memory: member.memory,
        processes: defaults.processes,
        docker: member.docker,
        autostart: member.autostart,
        template: Template::load(&env.paths.templates_dir(), &member.template)?,
        expires: member.expires.clone(),
        idle_stop: member.idle_stop.clone(),
        set: Some(set.to_string()),
        target: None,
    })
}

/// Makes the planned changes to a listed user's container, under the
/// user's lock and ours.
fn update(env: &Env, member: &Member, changes: &[Change]) -> Result<()> {
    let user = &member.name;
    let (_user_lock, lock) = super::lock_user(env, user, &format!("apply {user}"))?;
    let instance = super::managed(env, user)?;
    let name = instance.name.as_str();
    let (disk, cpu, memory) = limits(changes);
    let mut plan = super::resize::plan(env, &instance, disk, cpu, memory, None)?;
    for change in changes {
        match change {
            Change::Config {
                key,
                value: Some(value),
            } => {
                plan.push(Step::new(
                    format!("set {key}={value}"),
                    Action::run(env.incus.config_set_cmd(name, key, value)),
                ));
                // reap's grace runs from when an expiry was set.
                if *key == key::EXPIRES {
                    let now = Time::now().to_string();
                    plan.push(Step::new(
                        format!("set {}={now}", key::EXPIRES_SET),
                        Action::run(env.incus.config_set_cmd(name, key::EXPIRES_SET, &now)),
                    ));
                }
            }
            Change::Config { key, value: None } => plan.push(Step::new(
                format!("unset {key}"),
                Action::run(env.incus.cmd(["config", "unset", name, key])),
            )),
            Change::Keys { removed, .. } => {
                let sessions = if *removed > 0 {
                    super::keys::Sessions::End
                } else {
                    super::keys::Sessions::Keep
                };
                plan.append(super::keys::apply_plan(
                    env,
                    user,
                    &instance,
                    &member.keys,
                    sessions,
                )?);
            }
            _ => {}
        }
    }
    plan.apply_under(&lock, &mut Facts::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(verb: Verb, details: &[&str], drift: &[&str]) -> Entry {
        Entry {
            user: "alice".parse().unwrap(),
            verb,
            details: details.iter().map(|d| d.to_string()).collect(),
            changes: Vec::new(),
            drift: drift.iter().map(|d| d.to_string()).collect(),
            member: None,
        }
    }

    #[test]
    fn lines_read_like_terraform() {
        assert_eq!(
            entry(Verb::Create, &["local:dev", "2 cpu"], &[]).line(),
            "+ alice create (local:dev, 2 cpu)"
        );
        assert_eq!(
            entry(Verb::Update, &["memory 2GiB -> 4GiB", "keys +1 -1"], &[]).line(),
            "~ alice update memory 2GiB -> 4GiB; keys +1 -1"
        );
        assert_eq!(
            entry(Verb::Delete, &["pruned"], &[]).line(),
            "- alice delete (pruned)"
        );
        assert_eq!(
            entry(Verb::Unchanged, &[], &["image a -> b"]).line(),
            "= alice unchanged; drift: image a -> b (not changed in place: delete and apply again to recreate)"
        );
        let plan = [
            entry(Verb::Create, &[], &[]),
            entry(Verb::Create, &[], &[]),
            entry(Verb::Update, &[], &[]),
            entry(Verb::Delete, &[], &[]),
            entry(Verb::Unchanged, &[], &[]),
        ];
        assert_eq!(
            summary(&plan),
            "Plan: 2 to create, 1 to update, 1 to delete, 1 unchanged."
        );
        assert_eq!(summary(&plan[4..]), "No changes.");
    }
}
