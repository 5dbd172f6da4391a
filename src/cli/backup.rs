//! `containarium backup USER --output DIR`: an `incus export` of the
//! container, which carries its disk, its config and so all our metadata
//! (owner, pinned address, keys). `restore` needs nothing else.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use super::Env;
use crate::error::Refused;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

/// Export a user's container to a backup file
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// User name
    user: UserName,

    /// Directory to write USER-container-TIMESTAMP.tar.gz into
    #[arg(long, value_name = "DIR")]
    output: PathBuf,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl BackupArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let instance = super::managed(env, &self.user)?;
        let mut plan = Plan::default();
        let file = backup_steps(env, &instance.name, &self.output, &mut plan)?;
        if self.dry_run {
            print!("{}", plan.describe());
            return Ok(());
        }
        plan.apply(env.paths.lock_file(), &mut Facts::default())?;
        println!("{}", file.display());
        Ok(())
    }
}

/// Adds the export of `container` into `dir` and its check to `plan`;
/// returns the file it will write. Refuses a missing directory and never
/// overwrites a file.
pub(super) fn backup_steps(
    env: &Env,
    container: &str,
    dir: &Path,
    plan: &mut Plan,
) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!(Refused(format!(
            "backup directory {} does not exist",
            dir.display()
        )));
    }
    let stamp = super::create::created_timestamp().replace(['-', ':'], "");
    let file = dir.join(format!("{container}-{stamp}.tar.gz"));
    if file.exists() {
        bail!(Refused(format!("{} already exists", file.display())));
    }
    let path = file.to_string_lossy().into_owned();
    plan.push(Step::new(
        format!("back up {container} to {path}"),
        Action::run(env.incus.cmd(["export", container, path.as_str()])),
    ));
    let written = file.clone();
    plan.push(Step::new(
        "check the backup",
        Action::check(
            format!("test -s {path}"),
            move |_| match std::fs::metadata(&written) {
                Ok(meta) if meta.len() > 0 => Ok(()),
                _ => bail!("the backup {} is missing or empty", written.display()),
            },
        ),
    ));
    Ok(file)
}
