//! `containarium delete USER`: first the user's way in (key file, account
//! lock, live sessions, jump account), then the container, each only if
//! Containarium made it. With `--backup DIR` nothing is deleted unless a
//! non-empty export was written first.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use super::Env;
use crate::accounts;
use crate::error::Refused;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};
use crate::{sshd, ui};

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
        if !self.force && !self.dry_run {
            // Asked without our lock held, so a waiting prompt holds
            // nobody up; planned again under it below.
            if plan(env, &self.user, self.backup.as_deref())?
                .steps
                .is_empty()
            {
                crate::outln!("nothing to delete for {}", self.user);
                return Ok(());
            }
            confirm(&format!(
                "Delete {} and jump account {}? This cannot be undone",
                self.user.container(),
                self.user
            ))?;
        }
        if self.dry_run {
            let _locks = super::lock_user(env, &self.user, &format!("delete {}", self.user))?;
            crate::out!(
                "{}",
                plan(env, &self.user, self.backup.as_deref())?.describe()
            );
            return Ok(());
        }
        if delete(env, &self.user, self.backup.as_deref())? {
            crate::outln!("deleted {}", self.user);
        } else {
            crate::outln!("nothing to delete for {}", self.user);
        }
        Ok(())
    }
}

/// Deletes what there is of `user` (after a backup into `backup`, if
/// given) under the user's lock and ours; false when there was nothing.
pub(super) fn delete(env: &Env, user: &UserName, backup: Option<&Path>) -> Result<bool> {
    let (_user_lock, lock) = super::lock_user(env, user, &format!("delete {user}"))?;
    let plan = plan(env, user, backup)?;
    if plan.steps.is_empty() {
        return Ok(false);
    }
    plan.apply_holding(lock, &mut Facts::default())?;
    Ok(true)
}

fn plan(env: &Env, user: &UserName, backup: Option<&Path>) -> Result<Plan> {
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
            if let Some(dir) = backup {
                super::backup::backup_steps(env, &name, dir, &mut plan)?;
            }
        }
        None if backup.is_some() => bail!(Refused(format!(
            "{name} does not exist: nothing to back up"
        ))),
        None => plan.unchanged(format!("container {name} (absent)")),
    }
    let account = match accounts::lookup(user.as_str())? {
        Some(account) if accounts::is_ours(&account)? => Some(account.uid),
        Some(_) => {
            plan.unchanged(format!(
                "host account {user} (not made by containarium; kept)"
            ));
            None
        }
        None => {
            plan.unchanged(format!("jump account {user} (absent)"));
            None
        }
    };
    let key_file = env.paths.key_file(user);
    revocation_steps(
        user,
        key_file.exists().then_some(key_file),
        account,
        &mut plan,
    );
    if instance.is_some() {
        plan.push(Step::new(
            format!("delete container {name}"),
            env.incus.delete_action(&name),
        ));
    }
    Ok(plan)
}

/// Takes the user's way in away before anything else, each step only if a
/// probe found it still needed, so a rerun after any interruption finishes
/// the job: the key file (no new key logins), the account's expiry (no new
/// logins at all), its live sessions on the bastion (an open tunnel to an
/// address the next tenant may get), then the account, which `userdel`
/// only removes once no process of it is left. `account` is the UID of the
/// user's jump account, if it exists and is ours.
pub(super) fn revocation_steps(
    user: &UserName,
    key_file: Option<PathBuf>,
    account: Option<u32>,
    plan: &mut Plan,
) {
    if let Some(path) = key_file {
        plan.push(Step::new("remove the jump key file", Action::Remove(path)));
    }
    let Some(uid) = account else { return };
    plan.push(Step::new(
        format!("lock jump account {user}"),
        Action::EditAccounts(accounts::expire(user)),
    ));
    plan.push(end_sessions_step(
        format!("end {user}'s live sessions on the bastion"),
        user,
        uid,
    ));
    plan.push(Step::new(
        format!("delete jump account {user}"),
        Action::EditAccounts(accounts::userdel(user)),
    ));
}

/// Ends the live sessions of `user` (UID `uid`) on the bastion and says
/// how many there were.
pub(super) fn end_sessions_step(synopsis: String, user: &UserName, uid: u32) -> Step {
    let owner = user.clone();
    Step::new(
        synopsis,
        Action::check(
            format!("SIGTERM, then SIGKILL, to the sshd processes of UID {uid} ({user}) only"),
            move |_| {
                let ended = sshd::end_sessions(uid)?;
                ui::note(&format!("ended {ended} live jump sessions of {owner}"));
                Ok(())
            },
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(key_file: bool, account: Option<u32>) -> String {
        let user: UserName = "alice".parse().unwrap();
        let mut plan = Plan::default();
        let path = key_file.then(|| PathBuf::from("/etc/containarium/keys/alice"));
        revocation_steps(&user, path, account, &mut plan);
        plan.describe()
    }

    /// Every state an interrupted delete can leave (key file gone first,
    /// then the account) yields the remaining steps, in order.
    #[test]
    fn revocation_takes_the_key_then_the_sessions_then_the_account() {
        assert_eq!(
            steps(true, Some(1001)),
            "1. remove the jump key file\n    rm -f /etc/containarium/keys/alice\n\
             2. lock jump account alice\n    usermod --expiredate 1 -- alice\n\
             3. end alice's live sessions on the bastion\n    \
             # SIGTERM, then SIGKILL, to the sshd processes of UID 1001 (alice) only\n\
             4. delete jump account alice\n    userdel -- alice\n"
        );
        assert_eq!(
            steps(false, Some(1001)),
            "1. lock jump account alice\n    usermod --expiredate 1 -- alice\n\
             2. end alice's live sessions on the bastion\n    \
             # SIGTERM, then SIGKILL, to the sshd processes of UID 1001 (alice) only\n\
             3. delete jump account alice\n    userdel -- alice\n"
        );
        assert_eq!(
            steps(true, None),
            "1. remove the jump key file\n    rm -f /etc/containarium/keys/alice\n"
        );
        assert_eq!(steps(false, None), "");
    }
}
