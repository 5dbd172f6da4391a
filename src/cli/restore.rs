//! `containarium restore FILE [--as USER]`: the container, its address, the
//! jump account and the keys, all from what the backup and Incus hold.
//!
//! The backup's pinned address is kept unless another instance holds it now;
//! then the container gets a new address from DHCP, which is pinned and
//! written into the jump key file like at create.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Env;
use crate::accounts;
use crate::error::Refused;
use crate::exec::{self, Cmd};
use crate::incus::{self, key};
use crate::names::{UserName, user_of_container};
use crate::plan::{Action, Facts, Plan, Step};

/// Bring a user's container back from a backup file
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `backup` or `delete --backup`
    file: PathBuf,

    /// Restore it for this user instead of the one it belonged to
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<UserName>,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl RestoreArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let (plan, user) = self.plan(env)?;
        if self.dry_run {
            print!("{}", plan.describe());
            return Ok(());
        }
        let mut facts = Facts::default();
        plan.apply(env.paths.lock_file(), &mut facts)?;
        println!("restored {} at {}", user.container(), facts.ipv4_text());
        Ok(())
    }

    fn plan(&self, env: &Env) -> Result<(Plan, UserName)> {
        let shown = self.file.display();
        match std::fs::metadata(&self.file) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {}
            _ => bail!(Refused(format!("{shown} is not a non-empty backup file"))),
        }
        let original = backup_instance_name(&self.file)?;
        let Some(owner) = user_of_container(&original) else {
            bail!(Refused(format!(
                "{shown} holds instance {original}, which containarium did not make"
            )));
        };
        let user = self.as_user.clone().unwrap_or_else(|| owner.clone());
        let name = user.container();
        if env.incus.instance(&name)?.is_some() {
            bail!(Refused(format!(
                "{name} already exists: delete it first or restore with --as USER"
            )));
        }
        let adopt = match accounts::lookup(user.as_str())? {
            None => false,
            Some(account) if accounts::is_ours(&account)? => true,
            Some(_) => bail!(Refused(format!(
                "host account {user} exists and was not made by containarium"
            ))),
        };

        let incus = &env.incus;
        let mut plan = super::host::plan(&env.paths)?;
        let file = self.file.to_string_lossy().into_owned();
        plan.push(
            Step::new(
                format!("import {name} from {file}"),
                Action::run(incus.cmd(["import", file.as_str(), name.as_str()])),
            )
            .undo(Action::run(incus.delete_cmd(&name))),
        );
        if user != owner {
            for (k, v) in [
                (key::OWNER, user.as_str()),
                (key::JUMP_ACCOUNT, user.as_str()),
            ] {
                plan.push(Step::new(
                    format!("record {k}={v}"),
                    Action::run(incus.config_set_cmd(&name, k, v)),
                ));
            }
        }
        let (probe, instance) = (incus.clone(), name.clone());
        plan.push(Step::new(
            "keep the backup's address unless another instance holds it",
            Action::check(
                format!("if taken: incus config device unset {name} eth0 ipv4.address"),
                move |_| release_taken_address(&probe, &instance),
            ),
        ));
        plan.push(Step::new(
            format!("start {name}"),
            Action::run(incus.cmd(["start", name.as_str()])),
        ));
        plan.push(super::create::ipv4_wait_step(incus, &name));
        plan.push(super::create::pin_step(incus, &name, "set"));
        if user != owner {
            for argv in rename_login(&owner, &user) {
                plan.push(Step::new(
                    format!("rename the login {owner} to {user} inside"),
                    Action::run(incus.exec_cmd(&name, argv)),
                ));
            }
        }
        if adopt {
            plan.unchanged(format!("jump account {user}"));
        } else {
            plan.push(
                Step::new(
                    format!("create jump account {user}"),
                    Action::EditAccounts(accounts::useradd(&user)),
                )
                .undo(Action::EditAccounts(accounts::userdel(&user))),
            );
        }
        let keys = keys_in_backup(&self.file)?;
        plan.push(super::create::jump_keys_step(&env.paths, &user, keys)?);
        plan.push(super::create::sshd_ready_step(None));
        plan.push(Step::new(
            "mark the container ready",
            Action::run(incus.config_set_cmd(&name, key::STATE, "ready")),
        ));
        Ok((plan, user))
    }
}

/// The commands that rename the in-container login user and what refers to
/// it, as argv lists (names are validated `UserName`s).
fn rename_login(from: &UserName, to: &UserName) -> Vec<Vec<String>> {
    let (from, to) = (from.as_str(), to.as_str());
    vec![
        vec![
            "usermod".into(),
            "--login".into(),
            to.into(),
            "--move-home".into(),
            "--home".into(),
            format!("/home/{to}"),
            from.into(),
        ],
        vec![
            "groupmod".into(),
            "--new-name".into(),
            to.into(),
            from.into(),
        ],
        vec![
            "sed".into(),
            "-i".into(),
            format!("s/^{from} /{to} /"),
            "/etc/sudoers.d/90-cloud-init-users".into(),
        ],
    ]
}

/// Reads one member of the export without unpacking it.
fn read_member(file: &std::path::Path, member: &str) -> Result<String> {
    let cmd = Cmd::new("tar").args(["-xzOf", &file.to_string_lossy(), member]);
    exec::run(&cmd).map(|out| out.stdout).map_err(|_| {
        Refused(format!(
            "{} is not an incus export (no {member})",
            file.display()
        ))
        .into()
    })
}

/// The instance name recorded in the export's index.yaml.
fn backup_instance_name(file: &std::path::Path) -> Result<String> {
    let index = read_member(file, "backup/index.yaml")?;
    index
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .map(|n| n.trim().to_string())
        .with_context(|| format!("{}: index.yaml names no instance", file.display()))
}

/// The keys recorded in the exported instance's config.
fn keys_in_backup(file: &std::path::Path) -> Result<Vec<crate::keys::PublicKey>> {
    let yaml = read_member(file, "backup/container/backup.yaml")?;
    let keys = parse_yaml_keys(&yaml);
    if keys.is_empty() {
        bail!(Refused(format!(
            "{}: the backup records no {}",
            file.display(),
            key::KEYS
        )));
    }
    Ok(keys)
}

/// `user.containarium.keys` from backup.yaml: a YAML block scalar whose
/// lines are keys, or a quoted one-line value. Only key lines are taken.
fn parse_yaml_keys(yaml: &str) -> Vec<crate::keys::PublicKey> {
    let mut keys = Vec::new();
    let mut lines = yaml.lines();
    while let Some(line) = lines.next() {
        let Some(value) = line.trim_start().strip_prefix(&format!("{}:", key::KEYS)) else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let value = value.trim();
        if value.starts_with('|') {
            for next in lines.by_ref() {
                if next.len() - next.trim_start().len() <= indent {
                    break;
                }
                if let Ok(k) = crate::keys::PublicKey::parse_line(next.trim(), "backup") {
                    keys.push(k);
                }
            }
        } else if let Ok(text) = serde_json::from_str::<String>(value) {
            keys.extend(
                text.lines()
                    .filter_map(|l| crate::keys::PublicKey::parse_line(l, "backup").ok()),
            );
        } else {
            keys.extend(crate::keys::PublicKey::parse_line(value, "backup"));
        }
        break;
    }
    keys
}

/// Drops the pinned address of a just-imported instance when another
/// instance on the host pins or holds it already.
fn release_taken_address(incus: &incus::Incus, name: &str) -> Result<()> {
    let Some(me) = incus.instance(name)? else {
        bail!("{name} vanished after import")
    };
    let Some(ip) = me.pinned_ipv4() else {
        return Ok(());
    };
    let all = incus.probe(&incus::Incus::default().cmd([
        "list",
        "--all-projects",
        "--format",
        "json",
    ]))?;
    let taken = incus::parse_instances(&all.stdout)?.iter().any(|other| {
        other.name != name && (other.pinned_ipv4() == Some(ip) || other.ipv4() == Some(ip))
    });
    if taken {
        crate::ui::note(&format!("{ip} is taken; {name} gets a new address"));
        exec::run(&incus.cmd(["config", "device", "unset", name, "eth0", "ipv4.address"]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop";

    #[test]
    fn reads_keys_from_backup_yaml() {
        let block = format!(
            "container:\n  config:\n    user.containarium.keys: |\n      {K}\n    user.containarium.owner: alice\n"
        );
        assert_eq!(parse_yaml_keys(&block).len(), 1);
        let quoted = format!("    user.containarium.keys: \"{K}\\n\"\n");
        assert_eq!(parse_yaml_keys(&quoted).len(), 1);
        assert!(parse_yaml_keys("config: {}\n").is_empty());
    }

    #[test]
    fn renames_by_argv() {
        let argv = rename_login(&"alice".parse().unwrap(), &"bob".parse().unwrap());
        assert_eq!(
            argv[0].join(" "),
            "usermod --login bob --move-home --home /home/bob alice"
        );
        assert_eq!(argv[2][2], "s/^alice /bob /");
    }
}
