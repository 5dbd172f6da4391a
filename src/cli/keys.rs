//! `containarium keys list|add|remove USER`: the user's SSH keys, changed in
//! the container's authorized_keys, the jump account's key file and the
//! `user.containarium.keys` metadata together, so a new laptop's key works
//! through the jump at once.
//!
//! Keys travel as data (file push stdin, argv), never through a shell. Lines
//! the user added to authorized_keys by hand are kept. `cloud-init.*` config
//! is never touched: changing it makes cloud-init regenerate host keys.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Env, print_json};
use crate::accounts;
use crate::error::Refused;
use crate::files::FileWrite;
use crate::incus::{self, Instance, key};
use crate::keys::{self, PublicKey};
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

/// List, add or remove a user's SSH keys
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List a user's keys
    List(ListArgs),
    /// Add keys from public key files
    Add(AddArgs),
    /// Remove a key, by fingerprint (SHA256:...) or comment
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// User name
    user: UserName,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// User name
    user: UserName,
    /// Public key files
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// User name
    user: UserName,
    /// SHA256:... fingerprint or the key's comment
    #[arg(value_name = "FINGERPRINT|COMMENT")]
    selector: String,
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl KeysCommand {
    pub fn run(self, env: &Env) -> Result<()> {
        match self {
            KeysCommand::List(args) => {
                let keys = super::managed(env, &args.user)?.keys()?;
                print_keys(&keys, args.json);
                Ok(())
            }
            KeysCommand::Add(args) => {
                let (_user_lock, lock) =
                    super::lock_user(env, &args.user, &format!("keys add {}", args.user))?;
                let instance = super::managed(env, &args.user)?;
                let mut wanted = instance.keys()?;
                let before = wanted.len();
                for key in keys::read_key_files(&args.files)? {
                    if !wanted.iter().any(|k| k.fingerprint() == key.fingerprint()) {
                        wanted.push(key);
                    }
                }
                if wanted.len() == before {
                    crate::outln!("{} has all these keys already; nothing changed", args.user);
                    return Ok(());
                }
                change(
                    env,
                    &lock,
                    &args.user,
                    &instance,
                    wanted,
                    Sessions::Keep,
                    args.dry_run,
                )
            }
            KeysCommand::Remove(args) => {
                let (_user_lock, lock) =
                    super::lock_user(env, &args.user, &format!("keys remove {}", args.user))?;
                let instance = super::managed(env, &args.user)?;
                let have = instance.keys()?;
                let matching: Vec<&PublicKey> = have
                    .iter()
                    .filter(|k| k.fingerprint() == args.selector || k.comment() == args.selector)
                    .collect();
                match matching.len() {
                    0 => {
                        return Err(Refused(format!(
                            "{} has no key \"{}\"",
                            args.user,
                            args.selector.escape_debug()
                        ))
                        .into());
                    }
                    1 => {}
                    n => {
                        return Err(Refused(format!(
                            "{n} keys have the comment \"{}\"; give the fingerprint",
                            args.selector
                        ))
                        .into());
                    }
                }
                let gone = matching[0].fingerprint();
                let wanted: Vec<PublicKey> = have
                    .iter()
                    .filter(|k| k.fingerprint() != gone)
                    .cloned()
                    .collect();
                if wanted.is_empty() {
                    return Err(Refused(format!(
                        "that is {}'s last key; add another first",
                        args.user
                    ))
                    .into());
                }
                change(
                    env,
                    &lock,
                    &args.user,
                    &instance,
                    wanted,
                    Sessions::End,
                    args.dry_run,
                )
            }
        }
    }
}

fn print_keys(keys: &[PublicKey], json: bool) {
    if json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| serde_json::json!({"fingerprint": k.fingerprint(), "type": k.kind(), "comment": k.comment()}))
            .collect();
        print_json(&rows.into());
    } else {
        for k in keys {
            crate::outln!("{}  {}  {}", k.fingerprint(), k.kind(), k.comment());
        }
    }
}

/// What a key change does to the user's live jump sessions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sessions {
    Keep,
    /// End them all once the key file no longer has the removed key: sshd
    /// does not say which key a session used, and a tunnel opened with a
    /// removed key must not outlive it. The user reconnects with another.
    End,
}

/// Plans and applies the change from the recorded keys to `wanted`.
fn change(
    env: &Env,
    lock: &crate::lock::Lock,
    user: &UserName,
    instance: &Instance,
    wanted: Vec<PublicKey>,
    sessions: Sessions,
    dry_run: bool,
) -> Result<()> {
    let plan = plan(env, user, instance, &wanted, sessions)?;
    if dry_run {
        crate::out!("{}", plan.describe());
        return Ok(());
    }
    plan.apply_under(lock, &mut Facts::default())?;
    print_keys(&wanted, false);
    Ok(())
}

fn plan(
    env: &Env,
    user: &UserName,
    instance: &Instance,
    wanted: &[PublicKey],
    sessions: Sessions,
) -> Result<Plan> {
    if !instance.is_running() {
        return Err(Refused(format!(
            "{} is not running: `containarium start {user}` first",
            instance.name
        ))
        .into());
    }
    apply_plan(env, user, instance, wanted, sessions)
}

/// The steps that make authorized_keys, the jump key file and the metadata
/// hold `wanted` instead of the recorded keys (`snapshot restore` reuses
/// them; Incus's file API works on a stopped container too).
pub(super) fn apply_plan(
    env: &Env,
    user: &UserName,
    instance: &Instance,
    wanted: &[PublicKey],
    sessions: Sessions,
) -> Result<Plan> {
    let name = instance.name.as_str();
    let to = super::endpoints(env).of(instance)?;
    let Some(fields) = env.incus.passwd_entry(name, user.as_str())? else {
        anyhow::bail!("user {user} not found in {name}");
    };
    // The home is checked by passwd_entry, the file's name by incus::file_ref.
    let (owner, home) = ((fields[2].as_str(), fields[3].as_str()), fields[5].as_str());
    let path = incus::guest_join(home, ".ssh/authorized_keys");
    let current = env.incus.read_file(name, &path)?.unwrap_or_default();
    let recorded = instance.keys()?;
    let updated = authorized_keys(&current, &recorded, wanted);

    let push = env.incus.push_file_cmd(name, &path, owner, "0600")?;
    let mut plan = Plan::default();
    plan.push(
        Step::new(
            format!("update {path} in {name}"),
            Action::run(push.clone().stdin(updated)),
        )
        .undo(Action::run(push.stdin(current))),
    );
    let write = FileWrite {
        path: env.paths.key_file(user),
        mode: 0o644,
        contents: accounts::jump_key_file(&to.to_string(), wanted),
    };
    if let Some(step) = Step::write_file(format!("write {user}'s jump keys"), write)? {
        plan.push(step);
    }
    if sessions == Sessions::End
        && let Some(account) = accounts::lookup(user.as_str())?
        && accounts::is_ours(&account)?
    {
        plan.push(super::delete::end_sessions_step(
            format!("end all of {user}'s live jump sessions (they may have used the removed key)"),
            user,
            account.uid,
        ));
    }
    plan.push(
        Step::new(
            "record the keys in Incus",
            Action::run(
                env.incus
                    .config_set_cmd(name, key::KEYS, &keys::to_lines(wanted)),
            ),
        )
        .undo(Action::run(env.incus.config_set_cmd(
            name,
            key::KEYS,
            &keys::to_lines(&recorded),
        ))),
    );
    Ok(plan)
}

/// After a `snapshot restore`: makes authorized_keys in `container`, as the
/// snapshot brought it back, hold `wanted` instead of the snapshot's
/// `recorded` keys. Read at apply time: the file (and the home it is in)
/// are the snapshot's, known only once it is restored.
pub(super) fn authorized_keys_step(
    env: &Env,
    user: &UserName,
    container: &str,
    recorded: Vec<PublicKey>,
    wanted: Vec<PublicKey>,
) -> Step {
    let (incus, user, name) = (env.incus.clone(), user.clone(), container.to_string());
    Step::new(
        format!("re-apply the current keys to ~{user}/.ssh/authorized_keys in {container}"),
        Action::check(
            format!(
                "read {user}'s home from {container}'s /etc/passwd and its .ssh/authorized_keys as \
                 restored; `{}` it back without the snapshot's other keys",
                incus.cmd([
                    "file",
                    "push",
                    "--create-dirs",
                    "--uid",
                    "<uid>",
                    "--gid",
                    "<gid>",
                    "--mode",
                    "0600",
                    "-",
                    &format!("{container}/<home>/.ssh/authorized_keys"),
                ])
            ),
            move |_| {
                let Some(fields) = incus.passwd_entry(&name, user.as_str())? else {
                    anyhow::bail!("user {user} not found in {name}");
                };
                let (owner, home) = ((fields[2].as_str(), fields[3].as_str()), fields[5].as_str());
                let path = incus::guest_join(home, ".ssh/authorized_keys");
                let current = incus.read_file(&name, &path)?.unwrap_or_default();
                let updated = authorized_keys(&current, &recorded, &wanted);
                crate::exec::run(
                    &incus
                        .push_file_cmd(&name, &path, owner, "0600")?
                        .stdin(updated),
                )?;
                Ok(())
            },
        ),
    )
}

/// The new authorized_keys: `current` without the recorded keys that are no
/// longer wanted, plus the wanted keys it lacks. Every other line, including
/// keys the user added by hand, stays as it is.
fn authorized_keys(current: &str, recorded: &[PublicKey], wanted: &[PublicKey]) -> String {
    let fingerprint = |line: &str| {
        PublicKey::parse_line(line, "")
            .ok()
            .map(|k| k.fingerprint())
    };
    let removed: Vec<String> = recorded
        .iter()
        .map(PublicKey::fingerprint)
        .filter(|f| !wanted.iter().any(|w| &w.fingerprint() == f))
        .collect();
    let mut out = String::new();
    let mut present = Vec::new();
    for line in current.lines() {
        match fingerprint(line) {
            Some(f) if removed.contains(&f) => continue,
            Some(f) => present.push(f),
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    for key in wanted {
        if !present.contains(&key.fingerprint()) {
            out.push_str(&format!("{key}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi a@laptop";
    const B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxi/houQk8nrifMCrBdnv6dlhYQFLLHs2gMxuNFDtup b@desk";
    const MINE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEm8Jef0Wo08t+aS1AH+78OLVxVoSMWkQzx5OPy7soRr added-by-hand";

    fn key(line: &str) -> PublicKey {
        PublicKey::parse_line(line, "t").unwrap()
    }

    #[test]
    fn adding_and_removing_keeps_hand_made_lines() {
        let current = format!("{A}\n# my own\n{MINE}\n");
        let added = authorized_keys(&current, &[key(A)], &[key(A), key(B)]);
        assert_eq!(added, format!("{A}\n# my own\n{MINE}\n{B}\n"));
        let removed = authorized_keys(&added, &[key(A), key(B)], &[key(B)]);
        assert_eq!(removed, format!("# my own\n{MINE}\n{B}\n"));
    }
}
