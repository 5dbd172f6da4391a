//! The command line: one file per verb, each an `Args` struct with `run`.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Paths;
use crate::error::Refused;
use crate::incus::Incus;

mod apply;
mod audit;
mod backup;
mod create;
mod delete;
mod doctor;
mod export;
mod host;
mod info;
mod keys;
mod list;
mod r#move;
mod power;
mod reap;
mod resize;
mod restore;
mod security;
mod snapshot;
mod sync_accounts;

/// Per-user Incus development containers behind locked-down SSH jump
/// accounts. Run as root on the bastion.
#[derive(Debug, Parser)]
#[command(
    name = "containarium",
    version,
    help_expected = true,
    disable_help_subcommand = true,
    max_term_width = 80
)]
pub struct Cli {
    /// Incus project to work in (default: the current project)
    #[arg(long, global = true, value_name = "NAME")]
    project: Option<String>,

    /// Log every command run (-v)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Create(create::CreateArgs),
    Apply(apply::ApplyArgs),
    List(list::ListArgs),
    Info(info::InfoArgs),
    Delete(delete::DeleteArgs),
    Export(export::ExportArgs),
    Resize(resize::ResizeArgs),
    Move(r#move::MoveArgs),
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Start a user's container
    Start(power::PowerArgs),
    /// Stop a user's container
    Stop(power::PowerArgs),
    /// Restart a user's container
    Restart(power::PowerArgs),
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    Backup(backup::BackupArgs),
    Restore(restore::RestoreArgs),
    SyncAccounts(sync_accounts::SyncAccountsArgs),
    Reap(reap::ReapArgs),
    #[command(subcommand)]
    Host(host::HostCommand),
    Audit(audit::AuditArgs),
    #[command(subcommand)]
    Security(security::SecurityCommand),
}

/// Quotas, for `create` (defaults from the config file) and `resize`.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Root disk quota, e.g. 20GiB [create default: 20GiB]
    #[arg(long, value_name = "SIZE")]
    disk: Option<crate::size::ByteSize>,

    /// CPU limit [create default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cpu: Option<u32>,

    /// Memory limit, e.g. 2GiB [create default: 2GiB]
    #[arg(long, value_name = "SIZE")]
    memory: Option<crate::size::ByteSize>,

    /// Processes and threads (limits.processes) [create default: 4096]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(i64::from(crate::config::MIN_PROCESSES)..))]
    processes: Option<u32>,
}

/// What every verb works with.
pub struct Env {
    pub incus: Incus,
    pub paths: Paths,
}

impl Cli {
    pub fn run(self) -> Result<()> {
        crate::exec::set_verbosity(self.verbose);
        require_root()?;
        let env = Env {
            incus: Incus::new(self.project),
            paths: Paths::from_env(),
        };
        let result = match self.command {
            Command::Create(args) => args.run(&env),
            Command::Apply(args) => args.run(&env),
            Command::List(args) => args.run(&env),
            Command::Info(args) => args.run(&env),
            Command::Delete(args) => args.run(&env),
            Command::Export(args) => args.run(&env),
            Command::Resize(args) => args.run(&env),
            Command::Keys(command) => command.run(&env),
            Command::Start(args) => args.run(&env, power::Power::Start),
            Command::Stop(args) => args.run(&env, power::Power::Stop),
            Command::Restart(args) => args.run(&env, power::Power::Restart),
            Command::Snapshot(command) => command.run(&env),
            Command::Backup(args) => args.run(&env),
            Command::Restore(args) => args.run(&env),
            Command::SyncAccounts(args) => args.run(&env),
            Command::Reap(args) => args.run(&env),
            Command::Move(args) => args.run(&env),
            Command::Host(command) => command.run(&env),
            Command::Audit(args) => args.run(&env),
            Command::Security(command) => command.run(&env),
        };
        result.map_err(|err| env.incus.explain(err))
    }
}

fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            Refused("containarium must run as root: try `sudo containarium ...`".into()).into(),
        );
    }
    Ok(())
}

/// The tenant network config.toml (or the default profile) names.
fn tenant_net(env: &Env) -> Result<crate::network::TenantNet> {
    let defaults = crate::config::Defaults::load(&env.paths)?;
    crate::network::TenantNet::probe(&env.incus, defaults.network.as_deref())
}

/// Where each container's jump tunnels go ([`crate::network::Endpoints`]),
/// with config.toml's tenant network should one be on a cluster.
fn endpoints(env: &Env) -> crate::network::Endpoints<'_> {
    crate::network::Endpoints::new(&env.incus, || tenant_net(env))
}

/// Our lock, for a mutating verb: taken before its probes, so what it
/// plans from cannot change under it.
fn lock(env: &Env, what: &str) -> Result<crate::lock::Lock> {
    crate::lock::acquire(&env.paths.lock_file(), what)
}

/// For a verb that changes one user: the user's own lock, then ours. The
/// user's lock is held for the whole run, also once ours is released
/// (`create` lets ours go before the container boots), so a `pending`
/// container whose user's lock is free was left by a run that died
/// half-way. The user's lock is always taken first and never while ours
/// is held: two runs never wait for each other.
fn lock_user(
    env: &Env,
    user: &crate::names::UserName,
    what: &str,
) -> Result<(crate::lock::Lock, crate::lock::Lock)> {
    let path = env.paths.user_lock_file(user);
    if let Some(users) = path.parent() {
        crate::lock::make_private(users)?;
        users.parent().map(crate::lock::make_private).transpose()?;
    }
    let mine = crate::lock::acquire(&path, what)?;
    Ok((mine, lock(env, what)?))
}

/// The user's container, refusing when there is none or it is not ours.
/// Ours means `Instance::owner`: the name's user, recorded as its owner.
fn managed(env: &Env, user: &crate::names::UserName) -> Result<crate::incus::Instance> {
    let name = user.container();
    match env.incus.instance(&name)? {
        Some(instance) if instance.owner().is_some() => Ok(instance),
        Some(instance) if instance.foreign_owner().is_some() => Err(Refused(format!(
            "{name} records another owner than {user}; nothing changed (see `containarium host doctor`)"
        ))
        .into()),
        Some(_) => Err(Refused(format!("{name} is not managed by containarium")).into()),
        None => Err(Refused(format!("no container for {user}: {name} does not exist")).into()),
    }
}

/// Jump accounts and key files are host-wide, projects are not: a user
/// whose container lives in another project is someone else's user here.
fn refuse_claimed_elsewhere(
    env: &Env,
    user: &crate::names::UserName,
    all: &[crate::incus::Instance],
) -> Result<()> {
    let here = env.incus.project().unwrap_or("default");
    let name = user.container();
    if let Some(other) = all
        .iter()
        .find(|i| i.project != here && (i.name == name || i.owner() == Some(user.as_str())))
    {
        return Err(Refused(format!(
            "{user} already has a container in Incus project {} ({}): one user name, one owner",
            other.project, other.name
        ))
        .into());
    }
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &serde_json::Value) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_each_verb() {
        let ok = [
            vec![
                "create",
                "alice",
                "--ssh-key",
                "a.pub",
                "--disk",
                "5GiB",
                "--cpu",
                "1",
                "--memory",
                "1GiB",
                "--no-docker",
                "--no-autostart",
                "--dry-run",
            ],
            vec!["create", "alice", "--ssh-key", "a.pub", "--json"],
            vec!["--project", "dev", "list", "--json"],
            vec!["info", "alice", "--json"],
            vec![
                "delete",
                "alice",
                "--force",
                "--backup",
                "/tmp",
                "--dry-run",
            ],
            vec![
                "export",
                "alice",
                "--jump-ip",
                "203.0.113.5",
                "--jump-port",
                "2222",
                "--key",
                "~/.ssh/id",
                "--output",
                "x",
            ],
            vec!["host", "init", "--dry-run"],
            vec!["host", "doctor", "--json"],
            vec![
                "resize", "alice", "--disk", "40GiB", "--cpu", "4", "--memory", "4GiB", "--json",
            ],
            vec!["keys", "list", "alice"],
            vec!["keys", "add", "alice", "a.pub", "b.pub", "--dry-run"],
            vec!["keys", "remove", "alice", "SHA256:abc"],
            vec!["start", "alice"],
            vec!["stop", "alice", "--dry-run"],
            vec!["restart", "alice"],
            vec!["snapshot", "create", "alice"],
            vec!["snapshot", "create", "alice", "before-upgrade"],
            vec!["snapshot", "list", "alice", "--json"],
            vec!["snapshot", "restore", "alice", "before-upgrade"],
            vec!["snapshot", "delete", "alice", "before-upgrade"],
            vec!["backup", "alice", "--output", "/srv/backups"],
            vec![
                "restore",
                "/srv/backups/a.tar.gz",
                "--as",
                "bob",
                "--ssh-key",
                "bob.pub",
                "--strip",
                "--dry-run",
            ],
            vec!["sync-accounts", "--dry-run"],
            vec!["sync-accounts", "--json"],
            vec!["backup", "alice", "--output", "/srv/backups", "--json"],
            vec!["restore", "/srv/backups/a.tar.gz", "--json"],
            vec![
                "audit",
                "alice",
                "--since",
                "2h",
                "--until",
                "2026-12-01",
                "--json",
            ],
        ];
        for args in ok {
            let argv = std::iter::once("containarium").chain(args.iter().copied());
            if let Err(err) = Cli::try_parse_from(argv) {
                panic!("{args:?}: {err}");
            }
        }
    }

    #[test]
    fn refuses_bad_values_at_parse_time() {
        let bad = [
            vec!["create", "Alice", "--ssh-key", "a.pub"],
            vec!["create", "alice"],
            vec!["create", "alice", "--ssh-key", "a.pub", "--disk", "-5GB"],
            vec!["create", "alice", "--ssh-key", "a.pub", "--cpu", "0"],
            vec!["create", "alice", "--ssh-key", "a.pub", "--memory", "abc"],
            vec!["export", "alice"],
            vec!["export", "alice", "--jump-ip", "h", "--jump-port", "0"],
            vec!["resize", "alice", "--disk", "abc"],
            vec!["keys", "add", "alice"],
            vec!["backup", "alice"],
            vec!["restore", "f", "--as", "Bob"],
            vec!["restore", "f", "--as", "bob"],
            // --json is a result; a dry run prints commands to read.
            vec![
                "create",
                "alice",
                "--ssh-key",
                "a.pub",
                "--dry-run",
                "--json",
            ],
            vec!["resize", "alice", "--cpu", "2", "--dry-run", "--json"],
            vec!["sync-accounts", "--dry-run", "--json"],
            vec!["backup", "alice", "--output", "d", "--dry-run", "--json"],
            vec!["restore", "f", "--dry-run", "--json"],
        ];
        for args in bad {
            let argv = std::iter::once("containarium").chain(args.iter().copied());
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_fits_80_columns() {
        let mut cmd = Cli::command();
        let mut pages = vec![cmd.render_long_help().to_string()];
        for sub in cmd.get_subcommands_mut() {
            pages.push(sub.render_long_help().to_string());
            for subsub in sub.get_subcommands_mut() {
                pages.push(subsub.render_long_help().to_string());
            }
        }
        for page in pages {
            for line in page.lines() {
                assert!(line.chars().count() <= 80, "too wide: {line:?}");
            }
        }
    }
}
