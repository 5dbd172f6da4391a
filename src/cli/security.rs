//! `containarium security status|ban|unban`: fail2ban's sshd jail as an
//! admin sees it (counts, banned addresses with ban start and end, and the
//! accounts that failed to log in most over a window, read from the auth
//! log), and manual bans and unbans.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Env, print_json};
use crate::config::Defaults;
use crate::error::Refused;
use crate::fail2ban::{self, Span};

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
                    println!("{ip} is already banned");
                } else {
                    println!("banned {ip}");
                }
                Ok(())
            }
            SecurityCommand::Unban(args) => {
                let ip = args.ip()?;
                let count = fail2ban::parse_count(&fail2ban::query(&fail2ban::unban(ip))?)?;
                if count == 0 {
                    crate::refuse!("{ip} is not banned in fail2ban's {} jail", fail2ban::JAIL);
                }
                println!("unbanned {ip}");
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
        let since = now() - self.since.seconds as i64;
        // Failures by account need the auth log; with the journal backend
        // there may be none, and the jail's state is still worth showing.
        let failures = match std::fs::read(&log) {
            Ok(bytes) => Some(failures_by_account(&String::from_utf8_lossy(&bytes), since)),
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
        println!(
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
            println!("{:<width$}  {:<19}  UNTIL", "ADDRESS", "SINCE");
            for ban in &bans {
                println!(
                    "{:<width$}  {:<19}  {}",
                    ban.address.to_string(),
                    ban.start,
                    ban.end
                );
            }
        }
        match failures {
            None => println!(
                "no auth log at {}: failed logins by account are not known",
                settings.logpath
            ),
            Some(failures) if failures.is_empty() => println!(
                "no failed logins in the last {} ({})",
                self.since, settings.logpath
            ),
            Some(failures) => {
                println!(
                    "failed logins in the last {} ({}):",
                    self.since, settings.logpath
                );
                for (account, count) in failures.iter().take(10) {
                    println!("  {count:>6}  {account}");
                }
            }
        }
        Ok(())
    }
}

/// Accounts by failed connections to sshd since `since` (seconds since
/// the epoch), most first: a connection (client address and port) counts
/// once when it logged a failure (`Connection closed by authenticating
/// user`, `Failed publickey for`, `Invalid user`) and never logged in.
/// Small on purpose: `audit` reads the same log more thoroughly.
pub fn failures_by_account(log: &str, since: i64) -> Vec<(String, usize)> {
    let mut failed: HashMap<(String, String), String> = HashMap::new();
    let mut accepted: HashSet<(String, String)> = HashSet::new();
    let year = local_year();
    for line in log.lines() {
        let Some((time, message)) = sshd_line(line, year) else {
            continue;
        };
        if time < since {
            continue;
        }
        if let Some(conn) = accepted_login(message) {
            accepted.insert(conn);
        } else if let Some((user, conn)) = failed_login(message) {
            failed.entry(conn).or_insert(user);
        }
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (conn, user) in failed {
        if !accepted.contains(&conn) {
            *counts.entry(user).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

type Conn = (String, String);

/// `IP port N` at the start of `rest`.
fn conn(rest: &str) -> Option<Conn> {
    let mut words = rest.split_whitespace();
    let ip = words.next()?;
    ip.parse::<IpAddr>().ok()?;
    (words.next()? == "port").then_some(())?;
    Some((ip.to_string(), words.next()?.to_string()))
}

fn failed_login(message: &str) -> Option<(String, Conn)> {
    for prefix in [
        "Connection closed by authenticating user ",
        "Disconnected from authenticating user ",
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (user, rest) = rest.split_once(' ')?;
            return Some((user.to_string(), conn(rest)?));
        }
    }
    if let Some(rest) = message.strip_prefix("Failed ") {
        let (_method, rest) = rest.split_once(" for ")?;
        let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
        let (user, rest) = rest.split_once(" from ")?;
        return Some((user.to_string(), conn(rest)?));
    }
    let rest = message.strip_prefix("Invalid user ")?;
    let (user, rest) = rest.rsplit_once(" from ")?;
    Some((user.to_string(), conn(rest)?))
}

fn accepted_login(message: &str) -> Option<Conn> {
    let rest = message.strip_prefix("Accepted ")?;
    let (_method, rest) = rest.split_once(" for ")?;
    let (_user, rest) = rest.split_once(" from ")?;
    conn(rest)
}

/// The time and message of an sshd (or sshd-session) line of a syslog
/// file: RFC 3339 stamps (rsyslog's default on Debian 12) or the
/// traditional `Dec  1 13:42:13` in local time of `year`.
fn sshd_line(line: &str, year: i64) -> Option<(i64, &str)> {
    let (time, rest) = if line.as_bytes().first()?.is_ascii_digit() {
        let (stamp, rest) = line.split_once(' ')?;
        (rfc3339(stamp)?, rest)
    } else {
        // No year in the stamp: a line from the future is last year's
        // (December's lines read in January).
        let stamp = line.get(..15)?;
        let time = traditional(stamp, year)?;
        let time = if time > now() + 86_400 {
            traditional(stamp, year - 1)?
        } else {
            time
        };
        (time, line.get(16..)?)
    };
    let (_host, rest) = rest.split_once(' ')?;
    let (program, message) = rest.split_once(": ")?;
    let name = program.split('[').next()?;
    matches!(name, "sshd" | "sshd-session").then_some((time, message))
}

/// `2026-12-01T13:42:13.286455+00:00` as seconds since the epoch.
fn rfc3339(stamp: &str) -> Option<i64> {
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (clock, offset) = match time.find(['+', '-', 'Z']) {
        Some(at) => time.split_at(at),
        None => return None,
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':');
    let (h, min, s) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    let offset = match offset {
        "Z" => 0,
        _ => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (oh, om) = offset[1..].split_once(':')?;
            sign * (num(oh)? * 3600 + num(om)? * 60)
        }
    };
    Some(days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s - offset)
}

/// `Dec  1 13:42:13`, local time in `year`.
fn traditional(stamp: &str, year: i64) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut words = stamp.split_whitespace();
    let name = words.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as i64 + 1;
    let day: i64 = words.next()?.parse().ok()?;
    let mut c = words.next()?.split(':');
    let mut num = || c.next()?.parse::<i64>().ok();
    let (h, min, s) = (num()?, num()?, num()?);
    let local = days_from_civil(year, month, day) * 86_400 + h * 3600 + min * 60 + s;
    Some(local - utc_offset())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm); no date crate for two log formats.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The local time zone's offset from UTC now, in seconds. A traditional
/// stamp from across a DST change is off by the hour, which a window of
/// hours or days tolerates.
fn utc_offset() -> i64 {
    let now = now() as nix::libc::time_t;
    // SAFETY: localtime_r writes only into the tm we pass.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { nix::libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

fn local_year() -> i64 {
    let local = now() + utc_offset();
    // The year of the day `local` falls on.
    let mut year = 1970 + local.div_euclid(31_556_952);
    while days_from_civil(year, 1, 1) * 86_400 > local {
        year -= 1;
    }
    while days_from_civil(year + 1, 1, 1) * 86_400 <= local {
        year += 1;
    }
    year
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
2026-12-01T13:50:06.000000+00:00 vm sshd[16]: Failed password for invalid user oracle from 2001:db8::7 port 50006 ssh2
";

    #[test]
    fn counts_failed_connections_by_account_in_the_window() {
        let since = rfc3339("2026-12-01T13:45:00+00:00").unwrap();
        assert_eq!(
            failures_by_account(LOG, since),
            [
                ("alice".to_string(), 2),
                ("admin".to_string(), 1),
                ("oracle".to_string(), 1)
            ]
        );
        // The earlier root failure is inside a wider window.
        let wider = failures_by_account(LOG, since - 3600);
        assert!(wider.contains(&("root".to_string(), 1)), "{wider:?}");
        // bob logged in on his third key: not a failure; mallory is not sshd.
        assert!(!wider.iter().any(|(a, _)| a == "bob" || a == "mallory"));
    }

    #[test]
    fn reads_both_syslog_time_formats() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339("2026-12-01T13:42:13.286455+00:00"),
            rfc3339("2026-12-01T15:42:13+02:00")
        );
        assert_eq!(rfc3339("2026-12-01T13:42:13+00:00"), Some(1_796_132_533));
        let line = "Dec  1 13:42:13 vm sshd[9]: Invalid user x from 192.0.2.1 port 2";
        let (time, message) = sshd_line(line, 2020).unwrap();
        assert_eq!(time, 1_606_830_133 - utc_offset());
        // A stamp that would be in the future is last year's.
        let (time, _) = sshd_line(line, local_year() + 1).unwrap();
        assert!(time <= now() + 86_400, "{time}");
        assert_eq!(message, "Invalid user x from 192.0.2.1 port 2");
        assert!(sshd_line("garbage", 2020).is_none());
        assert!(local_year() >= 2025);
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
