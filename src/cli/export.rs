//! `containarium export USER`: an ssh config block so the user types
//! `ssh USER-dev`.
//!
//! Both host keys are pinned: read from the bastion's and the container's
//! own host key files and handed to ssh through `KnownHostsCommand`, with a
//! `HostKeyAlias` per block and `StrictHostKeyChecking yes`, so nothing is
//! trusted on first use and the file works as it is on any machine with
//! OpenSSH 8.5 or later. Aliases carry the user's name, so exports for two
//! users appended to one file do not clash.
//!
//! The container's host key file is the tenant's: it is parsed as one
//! ed25519 public key and re-rendered (type and base64 only), so nothing
//! written there can add a line (`ProxyCommand`, `Host`, `Match`) to a file
//! that holds other users' blocks. The address is the pinned one, never what
//! the guest reports. `--output` appends only to a file an export wrote: a
//! regular file owned by root, never through a symlink.

use std::fs::OpenOptions;
use std::io::Read;
use std::net::SocketAddrV4;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use nix::libc;

use super::Env;
use crate::error::Refused;
use crate::files::FileWrite;
use crate::keys;
use crate::names::UserName;

/// The first line of every export: what marks a file as one we wrote.
const MARKER: &str = "# containarium: ";

/// Where the container's host key is, in the container.
const HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// An ssh config file we append to is a few blocks a user; a bigger one is
/// not ours.
const MAX_OUTPUT: u64 = 1 << 20;

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

    /// Trust the bastions' host certificates signed by this CA (its public
    /// key file) instead of pinning this bastion's own key: the file then
    /// works through every bastion of a cluster, or the load balancer
    #[arg(long, value_name = "FILE")]
    host_ca: Option<PathBuf>,
}

/// What an export needs to know.
pub struct Export<'a> {
    pub user: &'a str,
    pub jump_host: &'a str,
    pub jump_port: u16,
    pub key: Option<&'a str>,
    /// Where the bastion reaches the container's sshd.
    pub container: SocketAddrV4,
    /// This bastion's host key, or the host CA's key (`--host-ca`).
    pub bastion_key: BastionKey,
    pub container_key: String,
}

/// How the user's ssh knows the bastion.
pub enum BastionKey {
    /// This bastion's own host key, pinned.
    Pinned(String),
    /// The keys of the CAs that sign the bastions' host certificates (two
    /// while one replaces the other).
    Ca(Vec<String>),
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
        let container = super::endpoints(env).of(&instance)?;
        let bastion_key = match &self.host_ca {
            Some(ca) => BastionKey::Ca(ca_keys_of(
                &crate::config::read(ca)?,
                &format!("--host-ca {}", ca.display()),
            )?),
            None => {
                let path = env.paths.host_key();
                BastionKey::Pinned(host_key_of(
                    &crate::config::read(&path)?,
                    &path.display().to_string(),
                )?)
            }
        };
        let container_key = host_key_of(
            &env.incus
                .read_file(&name, HOST_KEY)?
                .with_context(|| format!("{name} has no ed25519 host key yet"))?,
            &format!("{name}'s {HOST_KEY}"),
        )?;
        let text = render(&Export {
            user: self.user.as_str(),
            jump_host: &self.jump_ip,
            jump_port: self.jump_port,
            key: self.key.as_deref(),
            container,
            bastion_key,
            container_key,
        });
        match self.output {
            None => crate::out!("{text}"),
            Some(path) => append(&path, &self.user, &text)?,
        }
        Ok(())
    }
}

/// `ssh-ed25519 AAAA...` from a host key file, parsed strictly and without
/// its comment. Errors name `origin` and echo nothing of the file.
fn host_key_of(text: &str, origin: &str) -> Result<String, Refused> {
    match keys::parse_file_text(text, origin)?.as_slice() {
        [key] if key.kind() == "ssh-ed25519" => Ok(key.bare()),
        _ => Err(Refused(format!(
            "{origin} is not one ed25519 public key; nothing exported"
        ))),
    }
}

/// The host CA file's keys (one, or two while a CA is replaced), each
/// `ssh-ed25519 AAAA...`, parsed strictly and without comments.
fn ca_keys_of(text: &str, origin: &str) -> Result<Vec<String>, Refused> {
    let keys = keys::parse_file_text(text, origin)?;
    match keys.iter().all(|k| k.kind() == "ssh-ed25519") && keys.len() <= 4 {
        true => Ok(keys.iter().map(keys::PublicKey::bare).collect()),
        false => Err(Refused(format!(
            "{origin} is not one to four ed25519 public keys; nothing exported"
        ))),
    }
}

/// Appends `text` to the export file at `path`, made if absent.
fn append(path: &Path, user: &UserName, text: &str) -> Result<()> {
    let existing = read_export_file(path)?.unwrap_or_default();
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
    // Atomic: a new file renamed over the old name, which replaces a link
    // put there meanwhile instead of following it.
    FileWrite {
        path: path.to_path_buf(),
        mode: 0o644,
        contents: format!("{existing}{separator}{text}"),
    }
    .apply()
}

/// What an earlier export wrote at `path`; `None` if nothing is there.
/// Refuses anything else, so `--output` can never be aimed at a file that is
/// not ours (/etc/shadow, or a link to it): a symlink (not followed), a
/// non-regular file, a file not owned by root or with other hard links, and
/// a non-empty file without our marker. Checked on the open file itself.
fn read_export_file(path: &Path) -> Result<Option<String>> {
    let shown = path.display();
    let refuse = |why: &str| -> Result<Option<String>> {
        Err(Refused(format!("--output {shown} {why}; nothing changed")).into())
    };
    let open = OpenOptions::new()
        .read(true)
        // Never through a symlink; never wait on a FIFO's writer.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match open {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return refuse("is a symbolic link: give the file itself");
        }
        Err(err) => return Err(err).with_context(|| format!("opening {shown}")),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return refuse("is not a regular file");
    }
    if meta.uid() != 0 {
        return refuse(&format!(
            "is owned by uid {}, not root: containarium did not write it",
            meta.uid()
        ));
    }
    if meta.nlink() != 1 {
        return refuse("has other hard links");
    }
    if meta.len() > MAX_OUTPUT {
        return refuse("is too large to be an export file");
    }
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT + 1).read_to_end(&mut bytes)?;
    let Ok(text) = String::from_utf8(bytes) else {
        return refuse("is not a text file");
    };
    if !text.is_empty() && !text.lines().any(|l| l.starts_with(MARKER)) {
        return refuse(
            "was not written by `containarium export`: give a new file, or print to stdout",
        );
    }
    Ok(Some(text))
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
    // A certificate names the bastion as the user reaches it, so there is
    // no alias: known_hosts matches the name (with its port, if not 22).
    let jump_pin = match &e.bastion_key {
        BastionKey::Pinned(key) => pinned(&format!("{user}-jump"), key),
        BastionKey::Ca(cas) => {
            let pattern = match e.jump_port {
                22 => e.jump_host.to_string(),
                port => format!("[{}]:{port}", e.jump_host),
            };
            let lines: Vec<String> = cas
                .iter()
                .map(|ca| format!("\"@cert-authority {pattern} {ca}\""))
                .collect();
            // One line per CA; ssh reads `%%` as `%`, and runs the command
            // itself (no shell), so printf sees `%s\n`.
            let command = match lines.as_slice() {
                [one] => format!("/bin/echo {one}"),
                _ => format!("/usr/bin/printf \"%%s\\n\" {}", lines.join(" ")),
            };
            format!(
                "    HostKeyAlgorithms ssh-ed25519-cert-v01@openssh.com\n    StrictHostKeyChecking yes\n    UserKnownHostsFile none\n    KnownHostsCommand {command}\n"
            )
        }
    };
    let (trust, through) = match e.bastion_key {
        BastionKey::Pinned(_) => (
            "Host keys are pinned from the machines themselves",
            "the bastion",
        ),
        BastionKey::Ca(_) => (
            "The bastions' host certificates are checked against their CA, the\n# container's host key is pinned",
            "any bastion at",
        ),
    };
    let dev_port = match e.container.port() {
        22 => String::new(),
        port => format!("    Port {port}\n"),
    };
    format!(
        "{MARKER}{user}'s container, through {through} {host}.
# {trust}; nothing is trusted on
# first use. Connect with: ssh {user}-dev
Host {user}-jump
    HostName {host}
    Port {port}
    User {user}
{identity}{jump_pin}    ForwardAgent no
    RequestTTY no

Host {user}-dev
    HostName {ip}
{dev_port}    User {user}
    ProxyJump {user}-jump
{identity}{dev_pin}",
        host = e.jump_host,
        port = e.jump_port,
        ip = e.container.ip(),
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
            container: "10.197.83.7:22".parse().unwrap(),
            bastion_key: BastionKey::Pinned("ssh-ed25519 AAAAbastion".into()),
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

    /// On a cluster: the bastions are trusted by their host CA under the
    /// name the user reaches them by, and the container is its member's
    /// published port, still pinned by its own key.
    #[test]
    fn renders_a_block_for_every_bastion_of_a_cluster() {
        let cluster = || Export {
            user: "alice",
            jump_host: "lb.example.org",
            jump_port: 22,
            key: None,
            container: "10.0.0.12:10007".parse().unwrap(),
            bastion_key: BastionKey::Ca(vec!["ssh-ed25519 AAAAca".into()]),
            container_key: "ssh-ed25519 AAAAcontainer".into(),
        };
        insta::assert_snapshot!(render(&cluster()), @r#"
        # containarium: alice's container, through any bastion at lb.example.org.
        # The bastions' host certificates are checked against their CA, the
        # container's host key is pinned; nothing is trusted on
        # first use. Connect with: ssh alice-dev
        Host alice-jump
            HostName lb.example.org
            Port 22
            User alice
            HostKeyAlgorithms ssh-ed25519-cert-v01@openssh.com
            StrictHostKeyChecking yes
            UserKnownHostsFile none
            KnownHostsCommand /bin/echo "@cert-authority lb.example.org ssh-ed25519 AAAAca"
            ForwardAgent no
            RequestTTY no

        Host alice-dev
            HostName 10.0.0.12
            Port 10007
            User alice
            ProxyJump alice-jump
            HostKeyAlias alice-dev
            HostKeyAlgorithms ssh-ed25519
            StrictHostKeyChecking yes
            UserKnownHostsFile none
            KnownHostsCommand /bin/echo "alice-dev ssh-ed25519 AAAAcontainer"
        "#);
        // known_hosts names a port other than 22 with the host.
        let other_port = render(&Export {
            jump_host: "127.0.0.1",
            jump_port: 2222,
            ..cluster()
        });
        assert!(other_port.contains("\"@cert-authority [127.0.0.1]:2222 ssh-ed25519 AAAAca\""));
        // While a CA replaces another: both, a line each.
        let rotating = render(&Export {
            bastion_key: BastionKey::Ca(vec![
                "ssh-ed25519 AAAAnew".into(),
                "ssh-ed25519 AAAAold".into(),
            ]),
            ..cluster()
        });
        assert!(rotating.contains(
            "    KnownHostsCommand /usr/bin/printf \"%%s\\n\" \"@cert-authority lb.example.org ssh-ed25519 AAAAnew\" \"@cert-authority lb.example.org ssh-ed25519 AAAAold\"\n"
        ), "{rotating}");
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi";

    #[test]
    fn host_keys_are_parsed_and_lose_their_comment() {
        assert_eq!(
            host_key_of(&format!("{KEY} root@host\n"), "k").unwrap(),
            KEY
        );
        for bad in [
            "ssh-rsa AAAAx".to_string(),
            "garbage".to_string(),
            "ssh-ed25519 AAAAx".to_string(),
            format!("{KEY} root@host\nProxyCommand sh -c 'id>/tmp/x'"),
            format!("{KEY}\rProxyCommand x"),
            format!("{KEY}\n{KEY}"),
        ] {
            let err = host_key_of(&bad, "c's key").unwrap_err().0;
            assert!(err.starts_with("c's key"), "{bad:?}: {err}");
            assert!(
                !err.contains("ProxyCommand") && !err.contains("garbage"),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1);
        }
    }

    #[test]
    fn appending_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let alice: UserName = "alice".parse().unwrap();
        let bob: UserName = "bob".parse().unwrap();
        append(&path, &alice, &format!("{MARKER}alice\nHost alice-dev\n")).unwrap();
        append(&path, &bob, &format!("{MARKER}bob\nHost bob-dev\n")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{MARKER}alice\nHost alice-dev\n\n{MARKER}bob\nHost bob-dev\n")
        );
        let err = append(&path, &alice, "Host alice-dev\n").unwrap_err();
        assert!(err.to_string().contains("already has"));
    }

    #[test]
    fn output_is_only_ever_a_file_an_export_wrote() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let alice: UserName = "alice".parse().unwrap();
        let block = format!("{MARKER}alice\nHost alice-dev\n");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{MARKER}looks ours\nroot:SECRET\n")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&secret, &hard).unwrap();
        let foreign = dir.path().join("foreign");
        std::fs::write(&foreign, "Host mine\n    HostName example\n").unwrap();
        let users = dir.path().join("users");
        std::fs::write(&users, format!("{MARKER}x\n")).unwrap();
        std::os::unix::fs::chown(&users, Some(65534), None).unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let cases = [
            (&link, "is a symbolic link"),
            (&hard, "has other hard links"),
            (&foreign, "was not written by `containarium export`"),
            (&users, "is owned by uid 65534, not root"),
            (&fifo, "is not a regular file"),
            (&dir.path().to_path_buf(), "is not a regular file"),
        ];
        for (path, why) in cases {
            let before = std::fs::symlink_metadata(path).unwrap();
            let err = append(path, &alice, &block).unwrap_err().to_string();
            assert!(err.contains(why), "{}: {err}", path.display());
            let after = std::fs::symlink_metadata(path).unwrap();
            assert_eq!(
                (before.ino(), before.file_type()),
                (after.ino(), after.file_type()),
                "{} unchanged",
                path.display()
            );
        }
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            format!("{MARKER}looks ours\nroot:SECRET\n")
        );
        assert_eq!(
            std::fs::read_to_string(&foreign).unwrap(),
            "Host mine\n    HostName example\n"
        );
        // The control: an empty root-owned file and our own file are fine.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        append(&empty, &alice, &block).unwrap();
        assert_eq!(std::fs::read_to_string(&empty).unwrap(), block);
        assert_eq!(
            std::fs::metadata(&empty).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
