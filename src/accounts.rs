//! Jump accounts on the bastion: host accounts in group `containarium` with
//! no shell, no password and no home, whose keys may only forward to their
//! own container.
//!
//! Every edit of the account database (`useradd`, `usermod`, `userdel`,
//! `groupadd`, `groupdel`) puts `--` before the name, runs under our lock
//! file and is retried, bounded, while another program (a cloud guest
//! agent, say) holds /etc/passwd's own lock. We never delete anyone's lock
//! file or signal its holder.

use std::net::SocketAddrV4;
use std::path::Path;

use anyhow::Result;
use nix::unistd::{Group, User};

use crate::exec::{self, Cmd, CmdError};
use crate::keys::PublicKey;
use crate::names::UserName;
use crate::retry::{Backoff, retry};
use crate::ui;

pub const GROUP: &str = "containarium";
pub const SHELL: &str = "/usr/sbin/nologin";

#[derive(Debug, Clone)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub shell: String,
}

pub fn lookup(name: &str) -> Result<Option<Account>> {
    let user = User::from_name(name)?;
    Ok(user.map(|u| Account {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        shell: u.shell.to_string_lossy().into_owned(),
    }))
}

pub fn group_gid() -> Result<Option<u32>> {
    Ok(Group::from_name(GROUP)?.map(|g| g.gid.as_raw()))
}

/// Ours means: primary group `containarium`, which only we give out.
pub fn is_ours(account: &Account) -> Result<bool> {
    Ok(group_gid()? == Some(account.gid))
}

/// The names of the accounts in `passwd` (/etc/passwd's text) whose
/// primary group is `gid`: ours, when `gid` is [`GROUP`]'s.
pub fn members_of(passwd: &str, gid: u32) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, _, group, ..] if group.parse() == Ok(gid) => Some(name.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// `--force`: parallel first `create`s on a fresh bastion all plan this
/// step; the ones that lose the race must succeed too.
pub fn groupadd() -> Cmd {
    Cmd::new("groupadd").args(["--force", "--system", "--", GROUP])
}

pub fn groupdel() -> Cmd {
    Cmd::new("groupdel").args(["--", GROUP])
}

/// A locked, shell-less account without a home. `SUB_UID_COUNT=0`: a jump
/// account runs no containers, and a subordinate ID range for each one would
/// run out (Incus's own idmap leaves room for about a dozen below it).
pub fn useradd(user: &UserName) -> Cmd {
    Cmd::new("useradd").args([
        "-K",
        "SUB_UID_COUNT=0",
        "-K",
        "SUB_GID_COUNT=0",
        "--gid",
        GROUP,
        "--shell",
        SHELL,
        "--password",
        "*",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--comment",
        "containarium jump account",
        "--",
        user.as_str(),
    ])
}

/// Expires the account (1 January 1970), so sshd refuses every new login
/// of it, whatever key is offered, until `userdel` removes it.
pub fn expire(user: &UserName) -> Cmd {
    Cmd::new("usermod").args(["--expiredate", "1", "--", user.as_str()])
}

pub fn userdel(user: &UserName) -> Cmd {
    Cmd::new("userdel").args(["--", user.as_str()])
}

/// The authorized_keys line that lets `key` open a tunnel to the
/// container's sshd at `to` (`ADDRESS:PORT`) and do nothing else.
pub fn jump_key_line(to: &str, key: &PublicKey) -> String {
    format!("restrict,port-forwarding,permitopen=\"{to}\" {key}")
}

/// The whole key file for a jump account.
pub fn jump_key_file(to: &str, keys: &[PublicKey]) -> String {
    let mut out =
        String::from("# Managed by containarium: tunnels to this user's container only.\n");
    for key in keys {
        out.push_str(&jump_key_line(to, key));
        out.push('\n');
    }
    out
}

/// Reads back a key file we wrote: the endpoint it allows and the keys.
pub fn parse_jump_key_file(text: &str) -> (Option<SocketAddrV4>, Vec<PublicKey>) {
    let mut ip = None;
    let mut keys = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((options, key)) = line.split_once(' ') else {
            continue;
        };
        if let Some(rest) = options.split("permitopen=\"").nth(1) {
            ip = rest.split('"').next().and_then(|s| s.parse().ok());
        }
        if let Ok(key) = PublicKey::parse_line(key, "key file") {
            keys.push(key);
        }
    }
    (ip, keys)
}

/// Runs an account-database edit under our lock, retrying while another
/// program holds the database's lock.
pub fn edit(lock_path: &Path, cmd: &Cmd) -> Result<()> {
    let _lock = crate::lock::acquire(lock_path, &cmd.program)?;
    edit_held(cmd)
}

/// [`edit`] for a caller that holds our lock already.
pub fn edit_held(cmd: &Cmd) -> Result<()> {
    retry(
        &Backoff::ACCOUNT_DB,
        || exec::run(cmd),
        is_database_locked,
        |_, delay| {
            ui::note(&format!(
                "the account database is locked by another program; retrying in {}",
                ui::seconds(delay)
            ))
        },
    )?;
    Ok(())
}

/// shadow-utils' words when /etc/passwd, /etc/shadow, /etc/group or
/// /etc/gshadow is locked: "cannot lock /etc/passwd; try again later."
fn is_database_locked(err: &CmdError) -> bool {
    err.stderr_contains("cannot lock /etc/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop";

    #[test]
    fn jump_key_line_restricts_to_one_port() {
        let key = PublicKey::parse_line(KEY, "k").unwrap();
        assert_eq!(
            jump_key_line("10.197.83.7:22", &key),
            format!("restrict,port-forwarding,permitopen=\"10.197.83.7:22\" {KEY}")
        );
        // On a cluster: the member's published port.
        let file = jump_key_file("10.0.0.12:10007", std::slice::from_ref(&key));
        assert_eq!(
            parse_jump_key_file(&file),
            (Some("10.0.0.12:10007".parse().unwrap()), vec![key])
        );
    }

    #[test]
    fn our_accounts_are_those_of_our_group() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      alice:x:1001:998:containarium jump account:/nonexistent:/usr/sbin/nologin\n\
                      bob:x:1002:1002::/home/bob:/bin/bash\n\
                      carol:x:1003:998::/nonexistent:/usr/sbin/nologin\n\
                      broken line\n";
        assert_eq!(members_of(passwd, 998), ["alice", "carol"]);
        assert!(members_of(passwd, 7).is_empty());
    }

    #[test]
    fn useradd_makes_a_locked_nologin_account() {
        let alice = "alice".parse().unwrap();
        assert_eq!(
            useradd(&alice).to_string(),
            "useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 --gid containarium --shell /usr/sbin/nologin --password '*' --no-create-home --home-dir /nonexistent --comment 'containarium jump account' -- alice"
        );
        assert_eq!(userdel(&alice).to_string(), "userdel -- alice");
        assert_eq!(
            expire(&alice).to_string(),
            "usermod --expiredate 1 -- alice"
        );
        assert_eq!(
            groupadd().to_string(),
            "groupadd --force --system -- containarium"
        );
        assert_eq!(groupdel().to_string(), "groupdel -- containarium");
    }

    #[test]
    fn only_lock_contention_is_retried() {
        let err = |stderr: &str| CmdError {
            command: "useradd x".into(),
            program: "useradd".into(),
            code: Some(1),
            signal: None,
            stderr: stderr.into(),
            not_found: false,
        };
        assert!(is_database_locked(&err(
            "useradd: cannot lock /etc/passwd; try again later.\n"
        )));
        assert!(is_database_locked(&err(
            "useradd: cannot lock /etc/group; try again later.\n"
        )));
        assert!(!is_database_locked(&err(
            "useradd: user 'x' already exists\n"
        )));
    }
}
