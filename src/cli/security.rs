//! `containarium security status|ban|unban`: fail2ban's sshd jail as an
//! admin sees it (counts, banned addresses with ban start and end, and the
//! accounts that failed to log in most over a window, read from the auth
//! log), and manual bans and unbans.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Env, print_json};
use crate::authlog::{self, Event, Peer, What};
use crate::config::Defaults;
use crate::error::Refused;
use crate::fail2ban;
use crate::time::{Span, Time};

/// fail2ban's guard of the bastion's sshd
#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// Show the sshd jail, banned addresses and the accounts failing most
    Status(StatusArgs),
    /// Ban an address from the bastion's sshd
    Ban(AddressArgs),
    /// Lift a ban
    Unban(AddressArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,

    /// Count failed logins over this window, e.g. 90m, 24h, 7d
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    since: Span,
}

#[derive(Debug, Args)]
pub struct AddressArgs {
    /// The IPv4 or IPv6 address
    #[arg(value_name = "IP")]
    address: String,
}

impl SecurityCommand {
    pub fn run(self, env: &Env) -> Result<()> {
        match self {
            SecurityCommand::Status(args) => args.run(env),
            SecurityCommand::Ban(args) => {
                let ip = args.ip()?;
                let count = fail2ban::parse_count(&fail2ban::query(&fail2ban::ban(ip))?)?;
                if count == 0 {
                    crate::outln!("{ip} is already banned");
                } else {
                    crate::outln!("banned {ip}");
                }
                Ok(())
            }
            SecurityCommand::Unban(args) => {
                let ip = args.ip()?;
                let count = fail2ban::parse_count(&fail2ban::query(&fail2ban::unban(ip))?)?;
                if count == 0 {
                    crate::refuse!("{ip} is not banned in fail2ban's {} jail", fail2ban::JAIL);
                }
                crate::outln!("unbanned {ip}");
                Ok(())
            }
        }
    }
}

impl AddressArgs {
    fn ip(&self) -> Result<IpAddr> {
        self.address
            .parse()
            .map_err(|_| Refused(format!("{:?} is not an IP address", self.address)).into())
    }
}

impl StatusArgs {
    fn run(self, env: &Env) -> Result<()> {
        let settings = Defaults::load(&env.paths)?.fail2ban;
        let jail = fail2ban::parse_status(&fail2ban::query(&fail2ban::status())?)?;
        let bans = fail2ban::parse_bans(&fail2ban::query(&fail2ban::banned_with_time())?)?;
        let log = env.paths.host_path(&settings.logpath);
        let now = Time::now();
        let since = now.minus_secs(self.since.seconds);
        // Failures by account need the auth log; with the journal backend
        // there may be none, and the jail's state is still worth showing.
        let failures = match std::fs::read(&log) {
            Ok(bytes) => Some(failures_by_account(
                &authlog::events(&String::from_utf8_lossy(&bytes), now),
                since,
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err).with_context(|| format!("reading {}", log.display())),
        };
        if self.json {
            print_json(&serde_json::json!({
                "jail": fail2ban::JAIL,
                "currently_failed": jail.currently_failed,
                "total_failed": jail.total_failed,
                "currently_banned": jail.currently_banned,
                "total_banned": jail.total_banned,
                "banned": bans.iter().map(|b| serde_json::json!({
                    "address": b.address.to_string(),
                    "start": b.start,
                    "seconds": b.seconds,
                    "end": b.end,
                })).collect::<Vec<_>>(),
                "since": self.since.to_string(),
                "log": settings.logpath,
                "failures": failures.as_ref().map(|f| f.iter().map(|(account, count)| {
                    serde_json::json!({"account": account, "failures": count})
                }).collect::<Vec<_>>()),
            }));
            return Ok(());
        }
        crate::outln!(
            "jail {}: {} failing now ({} in all), {} banned ({} in all)",
            fail2ban::JAIL,
            jail.currently_failed,
            jail.total_failed,
            jail.currently_banned,
            jail.total_banned
        );
        if !bans.is_empty() {
            let width = bans
                .iter()
                .map(|b| b.address.to_string().len())
                .max()
                .unwrap_or(0)
                .max("ADDRESS".len());
            crate::outln!("{:<width$}  {:<19}  UNTIL", "ADDRESS", "SINCE");
            for ban in &bans {
                crate::outln!(
                    "{:<width$}  {:<19}  {}",
                    ban.address.to_string(),
                    ban.start,
                    ban.end
                );
            }
        }
        match failures {
            None => crate::outln!(
                "no auth log at {}: failed logins by account are not known",
                settings.logpath
            ),
            Some(failures) if failures.is_empty() => crate::outln!(
                "no failed logins in the last {} ({})",
                self.since,
                settings.logpath
            ),
            Some(failures) => {
                crate::outln!(
                    "failed logins in the last {} ({}):",
                    self.since,
                    settings.logpath
                );
                for (account, count) in failures.iter().take(10) {
                    crate::outln!("  {count:>6}  {}", super::audit::shown(account));
                }
            }
        }
        Ok(())
    }
}

/// Accounts by failed connections to sshd since `since`, most first: a
/// connection (client address and port) counts once when it logged a
/// failure (a refused key, `Connection closed by authenticating user`,
/// `Invalid user`) and never logged in. The events are `audit`'s.
pub fn failures_by_account(events: &[Event], since: Time) -> Vec<(String, usize)> {
    let mut failed: HashMap<Peer, String> = HashMap::new();
    let mut accepted: HashSet<Peer> = HashSet::new();
    for event in events.iter().filter(|e| e.time >= since) {
        match &event.what {
            What::Accepted { from, .. } => {
                accepted.insert(*from);
            }
            What::KeyFailed { user, from, .. }
            | What::InvalidUser { user, from }
            | What::Ended {
                user: Some(user),
                authenticated: false,
                from,
                ..
            } => {
                failed.entry(*from).or_insert_with(|| user.clone());
            }
            _ => {}
        }
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (from, user) in failed {
        if !accepted.contains(&from) {
            *counts.entry(user).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Lines as rsyslog writes them for the e2e bastion (OpenSSH 9.2,
    /// LogLevel VERBOSE for the failed keys), plus sshd-session's.
    const LOG: &str = "\
2026-12-01T13:40:00.000000+00:00 vm sshd[10]: Connection closed by authenticating user root 203.0.113.9 port 40000 [preauth]
2026-12-01T13:50:01.100000+00:00 vm sshd[11]: Failed publickey for alice from 127.0.0.1 port 50001 ssh2: ED25519 SHA256:abc
2026-12-01T13:50:01.200000+00:00 vm sshd[11]: Connection closed by authenticating user alice 127.0.0.1 port 50001 [preauth]
2026-12-01T13:50:02.000000+00:00 vm sshd-session[12]: Connection closed by authenticating user alice 127.0.0.1 port 50002 [preauth]
2026-12-01T13:50:03.000000+00:00 vm sshd[13]: Invalid user admin from 198.51.100.4 port 50003
2026-12-01T13:50:03.100000+00:00 vm sshd[13]: Connection closed by invalid user admin 198.51.100.4 port 50003 [preauth]
2026-12-01T13:50:04.000000+00:00 vm sshd[14]: Failed publickey for bob from 127.0.0.1 port 50004 ssh2: ED25519 SHA256:k1
2026-12-01T13:50:04.100000+00:00 vm sshd[14]: Failed publickey for bob from 127.0.0.1 port 50004 ssh2: ED25519 SHA256:k2
2026-12-01T13:50:04.200000+00:00 vm sshd[14]: Accepted publickey for bob from 127.0.0.1 port 50004 ssh2: ED25519 SHA256:good
2026-12-01T13:50:05.000000+00:00 vm sudo[15]: Connection closed by authenticating user mallory 127.0.0.1 port 1 [preauth]
";

    #[test]
    fn counts_failed_connections_by_account_in_the_window() {
        let events = authlog::events(LOG, Time::parse("2026-12-01T14:00:00Z").unwrap());
        let since = Time::parse("2026-12-01T13:45:00Z").unwrap();
        assert_eq!(
            failures_by_account(&events, since),
            [("alice".to_string(), 2), ("admin".to_string(), 1)]
        );
        // The earlier root failure is inside a wider window.
        let wider = failures_by_account(&events, since.minus_secs(3600));
        assert!(wider.contains(&("root".to_string(), 1)), "{wider:?}");
        // bob logged in on his third key: not a failure; mallory is not sshd.
        assert!(!wider.iter().any(|(a, _)| a == "bob" || a == "mallory"));
    }

    #[test]
    fn parses_the_verbs() {
        for args in [
            vec!["security", "status"],
            vec!["security", "status", "--json", "--since", "7d"],
            vec!["security", "ban", "203.0.113.9"],
            vec!["security", "unban", "2001:db8::5"],
        ] {
            let argv = std::iter::once("containarium").chain(args.iter().copied());
            if let Err(err) = super::super::Cli::try_parse_from(argv) {
                panic!("{args:?}: {err}");
            }
        }
        let bad = ["containarium", "security", "status", "--since", "1y"];
        assert!(super::super::Cli::try_parse_from(bad).is_err());
    }
}
