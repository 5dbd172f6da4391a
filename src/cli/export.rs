//! `containarium export USER`: an ssh config block so the user types
//! `ssh USER-dev`.
//!
//! Both host keys are pinned: read from the bastion's and the container's
//! own host key files and handed to ssh through `KnownHostsCommand`, with a
//! `HostKeyAlias` per block and `StrictHostKeyChecking yes`, so nothing is
//! trusted on first use and the file works as it is on any machine with
//! OpenSSH 8.5 or later. Aliases carry the user's name, so exports for two
//! users appended to one file do not clash.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Env;
use crate::error::Refused;
use crate::files::{self, FileWrite};
use crate::names::UserName;

/// Print an ssh config block (with ProxyJump) for a user's container
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// User name
    user: UserName,

    /// Address or name of the bastion, as the user reaches it
    #[arg(long, value_name = "HOST")]
    jump_ip: String,

    /// SSH port of the bastion
    #[arg(long, value_name = "N", default_value_t = 22,
          value_parser = clap::value_parser!(u16).range(1..))]
    jump_port: u16,

    /// The user's private key path, as on their machine
    #[arg(long, value_name = "PATH")]
    key: Option<String>,

    /// Append to this file instead of printing
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// What an export needs to know.
pub struct Export<'a> {
    pub user: &'a str,
    pub jump_host: &'a str,
    pub jump_port: u16,
    pub key: Option<&'a str>,
    pub container_ip: String,
    pub bastion_key: String,
    pub container_key: String,
}

impl ExportArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        if !self
            .jump_ip
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            || self.jump_ip.is_empty()
        {
            return Err(Refused(format!(
                "invalid --jump-ip \"{}\": give a host name or address",
                self.jump_ip.escape_debug()
            ))
            .into());
        }
        if let Some(key) = &self.key
            && key.chars().any(|c| c.is_control() || c == '"')
        {
            return Err(
                Refused("invalid --key: control characters or quotes in the path".into()).into(),
            );
        }
        let name = self.user.container();
        let instance = super::managed(env, &self.user)?;
        let ip = instance
            .pinned_ipv4()
            .or(instance.ipv4())
            .with_context(|| format!("{name} has no IPv4 address"))?;
        let bastion_key = host_key_of(&crate::config::read(&env.paths.host_key())?)
            .context("reading the bastion's ed25519 host key")?;
        let container_key = host_key_of(
            &env.incus
                .read_file(&name, "/etc/ssh/ssh_host_ed25519_key.pub")?
                .with_context(|| format!("{name} has no ed25519 host key yet"))?,
        )?;
        let text = render(&Export {
            user: self.user.as_str(),
            jump_host: &self.jump_ip,
            jump_port: self.jump_port,
            key: self.key.as_deref(),
            container_ip: ip.to_string(),
            bastion_key,
            container_key,
        });
        match self.output {
            None => print!("{text}"),
            Some(path) => append(&path, &self.user, &text)?,
        }
        Ok(())
    }
}

/// `ssh-ed25519 AAAA...` from a host key file, without its comment.
fn host_key_of(text: &str) -> Result<String> {
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind @ "ssh-ed25519"), Some(data)) => Ok(format!("{kind} {data}")),
        _ => anyhow::bail!("not an ed25519 public host key"),
    }
}

fn append(path: &std::path::Path, user: &UserName, text: &str) -> Result<()> {
    let existing = files::read_optional(path)?.unwrap_or_default();
    let alias = format!("Host {user}-dev");
    if existing.lines().any(|l| l.trim() == alias) {
        return Err(Refused(format!(
            "{} already has a `{alias}` block; nothing changed",
            path.display()
        ))
        .into());
    }
    let separator = if existing.is_empty() || existing.ends_with("\n\n") {
        ""
    } else if existing.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    FileWrite {
        path: path.to_path_buf(),
        mode: 0o644,
        contents: format!("{existing}{separator}{text}"),
    }
    .apply()
}

pub fn render(e: &Export) -> String {
    let user = e.user;
    let identity = e
        .key
        .map(|k| format!("    IdentityFile \"{k}\"\n    IdentitiesOnly yes\n"))
        .unwrap_or_default();
    let pinned = |alias: &str, key: &str| {
        format!(
            "    HostKeyAlias {alias}\n    HostKeyAlgorithms ssh-ed25519\n    StrictHostKeyChecking yes\n    UserKnownHostsFile none\n    KnownHostsCommand /bin/echo \"{alias} {key}\"\n"
        )
    };
    format!(
        "# containarium: {user}'s container, through the bastion {host}.
# Host keys are pinned from the machines themselves; nothing is trusted on
# first use. Connect with: ssh {user}-dev
Host {user}-jump
    HostName {host}
    Port {port}
    User {user}
{identity}{jump_pin}    ForwardAgent no
    RequestTTY no

Host {user}-dev
    HostName {ip}
    User {user}
    ProxyJump {user}-jump
{identity}{dev_pin}",
        host = e.jump_host,
        port = e.jump_port,
        ip = e.container_ip,
        jump_pin = pinned(&format!("{user}-jump"), &e.bastion_key),
        dev_pin = pinned(&format!("{user}-dev"), &e.container_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_pinned_proxyjump_block() {
        let text = render(&Export {
            user: "alice",
            jump_host: "203.0.113.5",
            jump_port: 2222,
            key: Some("~/.ssh/id_ed25519"),
            container_ip: "10.197.83.7".into(),
            bastion_key: "ssh-ed25519 AAAAbastion".into(),
            container_key: "ssh-ed25519 AAAAcontainer".into(),
        });
        insta::assert_snapshot!(text, @r#"
        # containarium: alice's container, through the bastion 203.0.113.5.
        # Host keys are pinned from the machines themselves; nothing is trusted on
        # first use. Connect with: ssh alice-dev
        Host alice-jump
            HostName 203.0.113.5
            Port 2222
            User alice
            IdentityFile "~/.ssh/id_ed25519"
            IdentitiesOnly yes
            HostKeyAlias alice-jump
            HostKeyAlgorithms ssh-ed25519
            StrictHostKeyChecking yes
            UserKnownHostsFile none
            KnownHostsCommand /bin/echo "alice-jump ssh-ed25519 AAAAbastion"
            ForwardAgent no
            RequestTTY no

        Host alice-dev
            HostName 10.197.83.7
            User alice
            ProxyJump alice-jump
            IdentityFile "~/.ssh/id_ed25519"
            IdentitiesOnly yes
            HostKeyAlias alice-dev
            HostKeyAlgorithms ssh-ed25519
            StrictHostKeyChecking yes
            UserKnownHostsFile none
            KnownHostsCommand /bin/echo "alice-dev ssh-ed25519 AAAAcontainer"
        "#);
    }

    #[test]
    fn host_keys_lose_their_comment() {
        assert_eq!(
            host_key_of("ssh-ed25519 AAAAx root@host\n").unwrap(),
            "ssh-ed25519 AAAAx"
        );
        assert!(host_key_of("ssh-rsa AAAAx").is_err());
    }

    #[test]
    fn appending_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "Host mine\n    HostName example\n").unwrap();
        let alice: UserName = "alice".parse().unwrap();
        append(&path, &alice, "Host alice-dev\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Host mine\n    HostName example\n\nHost alice-dev\n"
        );
        let err = append(&path, &alice, "Host alice-dev\n").unwrap_err();
        assert!(err.to_string().contains("already has"));
    }
}
