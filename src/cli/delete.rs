//! `containarium delete USER`: the container, then the jump account and its
//! key file, each only if Containarium made it. With `--backup DIR` nothing
//! is deleted unless a non-empty export was written first.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Env;
use crate::accounts;
use crate::error::Refused;
use crate::exec;
use crate::incus::Incus;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

/// Delete a user's container and jump account
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// User name
    user: UserName,

    /// Do not ask for confirmation (required without a terminal)
    #[arg(long)]
    force: bool,

    /// Export the container to this directory first; delete only if that works
    #[arg(long, value_name = "DIR")]
    backup: Option<PathBuf>,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl DeleteArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let plan = self.plan(env)?;
        if self.dry_run {
            print!("{}", plan.describe());
            return Ok(());
        }
        if plan.steps.is_empty() {
            println!("nothing to delete for {}", self.user);
            return Ok(());
        }
        if !self.force {
            confirm(&format!(
                "Delete {} and jump account {}? This cannot be undone",
                self.user.container(),
                self.user
            ))?;
        }
        plan.apply(env.paths.lock_file(), &mut Facts::default())?;
        println!("deleted {}", self.user);
        Ok(())
    }

    fn plan(&self, env: &Env) -> Result<Plan> {
        let user = &self.user;
        let name = user.container();
        let mut plan = Plan::default();
        let instance = env.incus.instance(&name)?;
        match &instance {
            Some(i) if i.owner().is_none() => {
                bail!(Refused(format!(
                    "{name} is not managed by containarium; not deleting it"
                )))
            }
            Some(_) => {
                if let Some(dir) = &self.backup {
                    super::backup::backup_steps(env, &name, dir, &mut plan)?;
                }
                let (incus, container) = (env.incus.clone(), name.clone());
                plan.push(Step::new(
                    format!("delete container {name}"),
                    Action::check(
                        format!(
                            "{} (if a full quota blocks it: lift the quota, try again)",
                            env.incus.delete_cmd(&name)
                        ),
                        move |_| delete_container(&incus, &container),
                    ),
                ));
            }
            None => plan.unchanged(format!("container {name} (absent)")),
        }
        match accounts::lookup(user.as_str())? {
            Some(account) if accounts::is_ours(&account)? => plan.push(Step::new(
                format!("delete jump account {user}"),
                Action::EditAccounts(accounts::userdel(user)),
            )),
            Some(_) => plan.unchanged(format!(
                "host account {user} (not made by containarium; kept)"
            )),
            None => plan.unchanged(format!("jump account {user} (absent)")),
        }
        let key_file = env.paths.key_file(user);
        if key_file.exists() {
            plan.push(Step::new(
                "remove the jump key file",
                Action::Remove(key_file),
            ));
        }
        if self.backup.is_some() && instance.is_none() {
            bail!(Refused(format!(
                "{name} does not exist: nothing to back up"
            )));
        }
        Ok(plan)
    }
}

/// Deletes the container. A container whose root quota is full can hold
/// Docker's nested btrfs subvolumes that cannot be destroyed ("Disk quota
/// exceeded"); lifting the quota of a container being deleted anyway lets
/// the delete through.
fn delete_container(incus: &Incus, name: &str) -> Result<()> {
    match exec::run(&incus.delete_cmd(name)) {
        Err(err) if err.stderr_contains("Disk quota exceeded") => {
            exec::run(&incus.cmd(["config", "device", "unset", name, "root", "size"]))?;
            exec::run(&incus.delete_cmd(name))?;
            Ok(())
        }
        result => result.map(drop).map_err(Into::into),
    }
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(Refused(
            "refusing to delete without confirmation: no terminal; pass --force".into()
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!(Refused("not deleted".into()));
    }
    Ok(())
}
