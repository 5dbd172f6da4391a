//! `containarium audit`: who went through the bastion, with which key, to
//! which container and for how long, and what was refused, from this
//! bastion's sshd log (src/authlog.rs). Where a session went comes from
//! Incus: sshd never logs a permitted forward's target.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::Env;
use crate::authlog::{self, Record};
use crate::error::Refused;
use crate::names::UserName;
use crate::time::{Span, Time};

/// Jump sessions and refused attempts on this bastion, from sshd's log
///
/// One record per jump session (user, client address and port, container
/// and address, key fingerprint, start, end, duration, how it ended) and
/// one per refused attempt (a wrong key, a denied forward with its target,
/// a shell or command). Read from the systemd journal when journald runs,
/// else /var/log/auth.log (and auth.log.1 when --since reaches back). The
/// records cover only the bastion this runs on; without USER, only jump
/// accounts. The container and its address are what Incus says now. Times
/// are UTC.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this user's records
    user: Option<UserName>,

    /// From this time: RFC 3339, `YYYY-mm-dd[ HH:MM[:SS]]` (UTC) or a
    /// duration ago (`30m`, `2h`, `7d`, `1w`)
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: Option<Time>,

    /// Until this time (same forms as --since)
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<Time>,

    /// Print JSON Lines: one object per record
    #[arg(long)]
    json: bool,
}

impl AuditArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && until < since
        {
            return Err(Refused(format!("--until {until} is before --since {since}")).into());
        }
        let events = authlog::read(
            &env.paths.journal_socket(),
            &env.paths.auth_log(),
            self.since,
        )?;
        let containers = containers(env)?;
        let group = crate::accounts::group_gid()?;
        // Asked once per name: a flood of refused logins names few accounts.
        let mut jump_accounts: HashMap<String, bool> = HashMap::new();
        let rows: Vec<Row> = authlog::records(&events)
            .into_iter()
            .filter(|r| in_window(r, self.since, self.until))
            .filter(|r| match &self.user {
                Some(user) => r.user == user.as_str(),
                None => *jump_accounts
                    .entry(r.user.clone())
                    .or_insert_with(|| is_jump_account(env, &r.user, &containers, group)),
            })
            .map(|record| {
                let to = containers.get(&record.user).cloned();
                let open = record.end.is_none() && record.refusal.is_none() && is_open(&record);
                Row { record, to, open }
            })
            .collect();
        if self.json {
            for row in &rows {
                crate::outln!("{}", row.to_json());
            }
        } else {
            crate::out!("{}", table(&rows));
        }
        Ok(())
    }
}

/// `--since`/`--until`: an absolute time or a duration ago.
fn parse_when(text: &str) -> Result<Time, String> {
    parse_when_at(text, Time::now())
}

fn parse_when_at(text: &str, now: Time) -> Result<Time, String> {
    if let Some(time) = Time::parse(text) {
        return Ok(time);
    }
    // A duration ago, with its unit (a bare number is no time here).
    match text.parse::<Span>() {
        Ok(span) if !text.ends_with(|c: char| c.is_ascii_digit()) => {
            Ok(now.minus_secs(span.seconds))
        }
        _ => Err(format!(
            "{:?} is not a time: use RFC 3339, YYYY-mm-dd[ HH:MM[:SS]] or a duration like 2h or 7d",
            text
        )),
    }
}

/// A record belongs to the window by when it started (or ended, when its
/// start is older than the log).
fn in_window(record: &Record, since: Option<Time>, until: Option<Time>) -> bool {
    let Some(time) = record.time() else {
        return false;
    };
    since.is_none_or(|s| time >= s) && until.is_none_or(|u| time <= u)
}

/// Managed containers by owner: `NAME ADDR:PORT`, the pinned endpoint.
fn containers(env: &Env) -> Result<HashMap<String, (String, Option<String>)>> {
    let endpoints = super::endpoints(env);
    Ok(env
        .incus
        .instances()?
        .into_iter()
        .filter_map(|i| {
            let owner = i.owner()?.to_string();
            let to = endpoints.computed(&i).ok().map(|to| to.to_string());
            Some((owner, (i.name.clone(), to)))
        })
        .collect())
}

/// Jump accounts: a valid user name with a container, a key file or an
/// account in our group. A name from the log that is not a valid user name
/// is never looked up: it is only ever compared or printed.
fn is_jump_account(
    env: &Env,
    user: &str,
    containers: &HashMap<String, (String, Option<String>)>,
    group: Option<u32>,
) -> bool {
    let Ok(name) = user.parse::<UserName>() else {
        return false;
    };
    containers.contains_key(name.as_str())
        || env.paths.key_file(&name).exists()
        || matches!(
            (crate::accounts::lookup(name.as_str()), group),
            (Ok(Some(account)), Some(gid)) if account.gid == gid
        )
}

/// A session with no end logged is open if the sshd that accepted it still
/// runs and was started for it: forked when the client connected, at most
/// LoginGraceTime (120 s by default, 600 s allowed here) before the login
/// and never after it. A PID reused since is another process.
fn is_open(record: &Record) -> bool {
    let (Some(pid), Some(started)) = (record.pid, record.started) else {
        return false;
    };
    let proc = Path::new("/proc").join(pid.to_string());
    let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
    matches!(comm.trim_end(), "sshd" | "sshd-session")
        && forked_at(&proc).is_some_and(|forked| {
            forked <= started.0 + 1_000_000 && forked >= started.0 - 600 * 1_000_000
        })
}

/// When the process of /proc/PID started, in microseconds since the epoch:
/// boot time plus field 22 of its stat, in clock ticks (USER_HZ, 100 on
/// Linux).
fn forked_at(proc: &Path) -> Option<i64> {
    let stat = std::fs::read_to_string(proc.join("stat")).ok()?;
    // Fields after `(comm)`, which may hold spaces; field 3 is the first.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let ticks: i64 = after.split(' ').nth(19)?.parse().ok()?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1_000_000 + ticks * 10_000)
}

struct Row {
    record: Record,
    /// The user's container and its `ADDR:22` (from Incus, now).
    to: Option<(String, Option<String>)>,
    open: bool,
}

impl Row {
    fn kind(&self) -> &'static str {
        if self.record.refusal.is_some() {
            "refused"
        } else {
            "session"
        }
    }

    fn end(&self) -> Option<&'static str> {
        match (self.record.end, self.record.refusal) {
            (Some(end), _) => Some(end.as_str()),
            (None, None) if self.open => Some("still-open"),
            (None, None) => Some("not-logged"),
            (None, Some(_)) => None,
        }
    }

    /// The container and address, for sessions only: a refused attempt
    /// went nowhere.
    fn container(&self) -> (Option<&str>, Option<&str>) {
        match (&self.to, self.record.refusal) {
            (Some((name, to)), None) => (Some(name), to.as_deref()),
            _ => (None, None),
        }
    }

    fn duration_s(&self) -> Option<f64> {
        let (start, end) = (self.record.started?, self.record.ended?);
        Some((end.0 - start.0) as f64 / 1e6)
    }

    /// The JSON Lines object; its field names are documented in the README
    /// and stay: every field is present, `null` where it does not apply.
    fn to_json(&self) -> serde_json::Value {
        let r = &self.record;
        let (container, to) = self.container();
        json!({
            "kind": self.kind(),
            "user": r.user,
            "from": r.from.to_string(),
            "from_addr": r.from.addr.to_string(),
            "from_port": r.from.port,
            "container": container,
            "to": to,
            "fingerprint": r.fingerprint,
            "started": r.started.map(|t| t.to_string()),
            "ended": r.ended.map(|t| t.to_string()),
            "duration_s": self.duration_s(),
            "end": self.end(),
            "detail": r.detail,
            "reason": r.refusal.map(|x| x.as_str()),
            "target": r.target.as_ref().map(|(h, p)| target(h, *p)),
            "target_host": r.target.as_ref().map(|(h, _)| h),
            "target_port": r.target.as_ref().map(|(_, p)| p),
        })
    }
}

/// `HOST:PORT`, `[V6]:PORT`.
fn target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What the client sent, printable: control characters and anything
/// outside ASCII escaped, so a log line cannot paint the admin's terminal.
pub(super) fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                vec![c]
            } else {
                c.escape_default().collect()
            }
        })
        .collect()
}

fn table(rows: &[Row]) -> String {
    let mut lines = vec![
        [
            "KIND", "USER", "FROM", "TO", "STARTED", "DURATION", "END", "KEY",
        ]
        .map(String::from),
    ];
    for row in rows {
        let r = &row.record;
        let to = match (row.container(), &r.target, r.refusal) {
            ((Some(name), to), _, _) => format!("{name} {}", to.unwrap_or("-")),
            (_, Some((h, p)), _) => format!("{} (denied)", shown(&target(h, *p))),
            (_, _, Some(authlog::Refusal::SessionRefused)) => "shell (denied)".into(),
            _ => "-".into(),
        };
        let end = match (r.refusal, row.end()) {
            (Some(refusal), _) => refusal.as_str(),
            (None, Some(end)) => end,
            (None, None) => "-",
        };
        lines.push([
            row.kind().to_string(),
            shown(&r.user),
            r.from.to_string(),
            to,
            r.started
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            row.duration_s()
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_else(|| "-".into()),
            end.to_string(),
            r.fingerprint.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines
        .iter()
        .map(|line| {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_or_a_duration_ago() {
        let now = Time::parse("2026-12-01T13:42:13Z").unwrap();
        for (text, expected) in [
            ("2026-12-01T13:00:00+01:00", "2026-12-01T12:00:00Z"),
            ("2026-11-30", "2026-11-30T00:00:00Z"),
            ("2026-11-30 08:05", "2026-11-30T08:05:00Z"),
            ("2026-11-30 08:05:09", "2026-11-30T08:05:09Z"),
            ("2h", "2026-12-01T11:42:13Z"),
            ("7d", "2026-11-24T13:42:13Z"),
            ("1w", "2026-11-24T13:42:13Z"),
            ("90s", "2026-12-01T13:40:43Z"),
        ] {
            assert_eq!(
                parse_when_at(text, now).map(|t| t.to_string()),
                Ok(expected.to_string()),
                "{text}"
            );
        }
        for bad in [
            "",
            "2",
            "h",
            "2x",
            "yesterday",
            "2026-13-01",
            "-2h",
            "99999999999999w",
        ] {
            assert!(parse_when_at(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_text_is_shown_escaped() {
        assert_eq!(shown("alice"), "alice");
        assert_eq!(shown("a\x1b[31mb\n"), "a\\u{1b}[31mb\\n");
    }
}
