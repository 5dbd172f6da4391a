//! sshd's log on this bastion, from the systemd journal or the auth log: the
//! lines become [`Event`]s ([`events`], [`journal_events`]) and the events
//! become one [`Record`] per connection ([`records`]). Parsing and joining
//! are pure; only [`read`] touches the host.
//!
//! Everything in a line after sshd's own words is what a client sent or
//! chose (its user name, the host it asked to reach) and stays data: fields
//! are cut from the right, where sshd puts what it knows (address, port,
//! key), so a user name holding " from 10.0.0.1 port 1" cannot pose as
//! another client. sshd logs a permitted forward's target only at DEBUG;
//! where a session went is the caller's to add, from Incus.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::Refused;
use crate::exec::{self, Cmd};
use crate::time::Time;
use crate::time::{DAY, SECOND};

/// A client's end of a connection, as sshd logs it: `IP port N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: IpAddr,
    pub port: u16,
}

impl Peer {
    fn parse(text: &str) -> Option<Peer> {
        let (addr, port) = text.rsplit_once(" port ")?;
        Some(Peer {
            addr: addr.parse().ok()?,
            port: port.parse().ok()?,
        })
    }
}

/// `127.0.0.1:40000`, `[::1]:40000`.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        std::net::SocketAddr::new(self.addr, self.port).fmt(f)
    }
}

/// How sshd says a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `Disconnected from …`, `Disconnecting …`: an SSH disconnect.
    Disconnected,
    /// `Connection closed by …`: the TCP connection closed without one.
    Closed,
    /// `Connection reset by …`.
    Reset,
    /// `Timeout, client not responding from …`.
    TimedOut,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Disconnected => "disconnected",
            End::Closed => "connection-closed",
            End::Reset => "connection-reset",
            End::TimedOut => "timed-out",
        }
    }
}

/// One thing sshd logged about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// `Accepted publickey for U from IP port N ssh2: TYPE SHA256:…`
    Accepted {
        user: String,
        from: Peer,
        fingerprint: String,
    },
    /// `Failed publickey for U from IP port N ssh2: TYPE SHA256:…`
    /// (VERBOSE only).
    KeyFailed {
        user: String,
        from: Peer,
        fingerprint: String,
    },
    /// The connection ended; `authenticated` is false for
    /// `… authenticating user U … [preauth]`. The user child of a session
    /// may name only the client (`Connection closed by IP port N`).
    Ended {
        user: Option<String>,
        authenticated: bool,
        from: Peer,
        how: End,
    },
    /// `Received disconnect from IP port N:11: REASON`: the client's reason.
    Reason { from: Peer, reason: String },
    /// `Received request from IP port N to connect to host H port P, but
    /// the request was denied.`
    ForwardDenied { from: Peer, host: String, port: u16 },
    /// `User child is on pid N` (VERBOSE): the process that logs the rest
    /// of the session for the one that accepted it.
    Child { pid: u32 },
    /// `no more sessions`: a shell, command or subsystem refused by
    /// `MaxSessions 0`; logged by the user child, without the client.
    SessionRefused,
    /// `Invalid user U from IP port N`: a name with no account here (no
    /// jump account's; `security status` counts them).
    InvalidUser { user: String, from: Peer },
}

/// An sshd log line: when, which process, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: Time,
    pub pid: u32,
    pub what: What,
}

/// The programs whose lines are sshd's: OpenSSH 9.8 on logs per
/// connection as `sshd-session` (and 10.0 also as `sshd-auth`).
const PROGRAMS: [&str; 3] = ["sshd", "sshd-session", "sshd-auth"];

/// The sshd events of an auth log (rsyslog's RFC 3339 stamps or the
/// traditional `Dec  1 13:42:13`, which has no year: the one of `now`, or
/// the year before when that would be more than a day ahead, and UTC).
/// Lines of other programs and lines that say nothing we use are skipped.
pub fn events(text: &str, now: Time) -> Vec<Event> {
    text.lines()
        .filter_map(|line| {
            let (time, program, pid, message) = split_syslog_line(line, now)?;
            if !PROGRAMS.contains(&program) {
                return None;
            }
            Some(Event {
                time,
                pid,
                what: parse_message(message)?,
            })
        })
        .collect()
}

/// The sshd events of `journalctl -o json` output: one JSON object per
/// line; MESSAGE may be an array of bytes when it is not UTF-8. The
/// program is `_COMM`, which journald sets from the kernel's view of the
/// sender (anyone can pick a SYSLOG_IDENTIFIER: `logger -t sshd`).
pub fn journal_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            let field = |key: &str| entry.get(key).and_then(|v| v.as_str());
            // _COMM alone is any local user's to choose (a copy of logger
            // named sshd); _UID, also set by journald, is sshd's: root.
            if !PROGRAMS.contains(&field("_COMM")?) || field("_UID") != Some("0") {
                return None;
            }
            let message = match entry.get("MESSAGE")? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(bytes) => {
                    let bytes: Vec<u8> = bytes
                        .iter()
                        .filter_map(|b| u8::try_from(b.as_u64()?).ok())
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                _ => return None,
            };
            Some(Event {
                time: Time(field("__REALTIME_TIMESTAMP")?.parse().ok()?),
                pid: field("_PID")?.parse().ok()?,
                what: parse_message(&message)?,
            })
        })
        .collect()
}

/// `STAMP HOST PROGRAM[PID]: MESSAGE` → its parts.
fn split_syslog_line(line: &str, now: Time) -> Option<(Time, &str, u32, &str)> {
    let (time, rest) = if line.starts_with(|c: char| c.is_ascii_digit()) {
        let (stamp, rest) = line.split_once(' ')?;
        (Time::parse(stamp)?, rest)
    } else {
        traditional_stamp(line, now)?
    };
    let (_host, rest) = rest.trim_start().split_once(' ')?;
    let (tag, message) = rest.split_once(": ")?;
    let (program, pid) = tag.strip_suffix(']')?.split_once('[')?;
    Some((time, program, pid.parse().ok()?, message))
}

/// `Dec  1 13:42:13 rest` → the time and the rest.
fn traditional_stamp(line: &str, now: Time) -> Option<(Time, &str)> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| line.starts_with(m))? as u32 + 1;
    let rest = line.get(3..)?.trim_start();
    let (day, rest) = rest.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let hms: Vec<i64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let secs = h * 3600 + m * 60 + s;
    let this_year = Time::from_civil(now.year(), month, day, secs);
    let time = if this_year.0 > now.0 + DAY {
        Time::from_civil(now.year() - 1, month, day, secs)
    } else {
        this_year
    };
    Some((time, rest))
}

/// sshd's message → what we use of it, cut from the right.
pub fn parse_message(message: &str) -> Option<What> {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("Accepted publickey for ") {
        let (user, from, fingerprint) = user_peer_key(rest)?;
        return Some(What::Accepted {
            user,
            from,
            fingerprint,
        });
    }
    if let Some(rest) = message.strip_prefix("Failed publickey for ") {
        let (user, from, fingerprint) = user_peer_key(rest)?;
        return (!user.starts_with("invalid user ")).then_some(What::KeyFailed {
            user,
            from,
            fingerprint,
        });
    }
    if let Some(rest) = message.strip_prefix("Received disconnect from ") {
        let rest = rest.strip_suffix(" [preauth]").unwrap_or(rest);
        // IP port N:CODE: REASON (an IPv6 address has colons of its own).
        let (addr, rest) = rest.split_once(" port ")?;
        let (port, rest) = rest.split_once(':')?;
        let (_code, reason) = rest.split_once(": ")?;
        return Some(What::Reason {
            from: Peer::parse(&format!("{addr} port {port}"))?,
            reason: reason.to_string(),
        });
    }
    if let Some(rest) = message.strip_prefix("Received request from ") {
        let rest = rest.strip_suffix(", but the request was denied.")?;
        let (from, target) = rest.split_once(" to connect to host ")?;
        let (host, port) = target.rsplit_once(" port ")?;
        return Some(What::ForwardDenied {
            from: Peer::parse(from)?,
            host: host.to_string(),
            port: port.parse().ok()?,
        });
    }
    if let Some(pid) = message.strip_prefix("User child is on pid ") {
        return Some(What::Child {
            pid: pid.parse().ok()?,
        });
    }
    if let Some(rest) = message.strip_prefix("Invalid user ") {
        let (user, from) = rest.rsplit_once(" from ")?;
        return Some(What::InvalidUser {
            user: user.to_string(),
            from: Peer::parse(from)?,
        });
    }
    if message == "error: no more sessions" || message == "no more sessions" {
        return Some(What::SessionRefused);
    }
    if let Some(rest) = message.strip_prefix("Disconnecting ") {
        // `Disconnecting authenticating user U IP port N: REASON`; the
        // reason may quote the client, so the id ends at the first ": ".
        let rest = rest.strip_suffix(" [preauth]").unwrap_or(rest);
        let (id, _reason) = rest.split_once(": ")?;
        return ended(id, End::Disconnected);
    }
    for (prefix, how) in [
        ("Disconnected from ", End::Disconnected),
        ("Connection closed by ", End::Closed),
        ("Connection reset by ", End::Reset),
        ("Timeout, client not responding from ", End::TimedOut),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return ended(rest, how);
        }
    }
    None
}

/// `U from IP port N ssh2: TYPE SHA256:… [ID KEY-ID (serial N) CA …]`,
/// read from the left: U is an account's name (no spaces), and what
/// follows the key may be the client's (a certificate's key ID).
fn user_peer_key(text: &str) -> Option<(String, Peer, String)> {
    let (user, rest) = text.split_once(" from ")?;
    let (from, key) = rest.split_once(" ssh2: ")?;
    let fingerprint = key.split(' ').nth(1)?;
    fingerprint
        .starts_with("SHA256:")
        .then(|| (user.to_string(), Peer::parse(from), fingerprint.to_string()))
        .and_then(|(u, p, f)| Some((u, p?, f)))
}

/// sshd's connection id `[authenticating ]user U IP port N [preauth]` →
/// `Ended`. `invalid user` (no account) is not ours, nor is a bare
/// `IP port N [preauth]` (a connection that never named a user); a bare
/// `IP port N` without `[preauth]` is a logged-in session's.
fn ended(id: &str, how: End) -> Option<What> {
    let (id, preauth) = match id.strip_suffix(" [preauth]") {
        Some(id) => (id, true),
        None => (id, false),
    };
    let (rest, port) = id.rsplit_once(" port ")?;
    let (who, addr) = match rest.rsplit_once(' ') {
        Some((who, addr)) => (Some(who), addr),
        None => (None, rest),
    };
    let from = Peer::parse(&format!("{addr} port {port}"))?;
    let (user, authenticated) = match who {
        None if preauth => return None,
        None => (None, true),
        Some(who) => match who.strip_prefix("authenticating user ") {
            Some(user) => (Some(user), false),
            None => (Some(who.strip_prefix("user ")?), true),
        },
    };
    Some(What::Ended {
        user: user.map(str::to_string),
        authenticated,
        from,
        how,
    })
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The connection ended before any key was accepted.
    KeyRefused,
    /// A forward the key's `permitopen` does not allow.
    ForwardDenied,
    /// A shell, command or subsystem (`MaxSessions 0`).
    SessionRefused,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::KeyRefused => "key-refused",
            Refusal::ForwardDenied => "forward-denied",
            Refusal::SessionRefused => "session-refused",
        }
    }
}

/// One connection that logged in (`refusal: None`), or one refused attempt.
/// A refusal inside a session (a denied forward, a shell) is a record of its
/// own beside the session's, with the same user, client and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub refusal: Option<Refusal>,
    pub user: String,
    pub from: Peer,
    /// The key accepted, or the first one refused.
    pub fingerprint: Option<String>,
    /// `None` when the start is not in the lines read.
    pub started: Option<Time>,
    pub ended: Option<Time>,
    /// `None`: no end logged (still open, or sshd died).
    pub end: Option<End>,
    /// The client's disconnect reason (`disconnected by user`).
    pub detail: Option<String>,
    /// A denied forward's host (as the client sent it) and port.
    pub target: Option<(String, u16)>,
    /// The process that accepted the session, to tell whether it is open.
    pub pid: Option<u32>,
}

impl Record {
    fn new(refusal: Option<Refusal>, user: &str, from: Peer) -> Record {
        Record {
            refusal,
            user: user.to_string(),
            from,
            fingerprint: None,
            started: None,
            ended: None,
            end: None,
            detail: None,
            target: None,
            pid: None,
        }
    }

    /// The time the record is filed under: its start, else its end.
    pub fn time(&self) -> Option<Time> {
        self.started.or(self.ended)
    }
}

/// Joins events into records, ordered by time. A session's closing lines
/// come from another process than its `Accepted` line, so lines are joined
/// on (user, client address, client port), or the client alone for lines
/// that name no user (the connection's latest login wins: ports are
/// reused), or the user child's PID for a refused session.
pub fn records(events: &[Event]) -> Vec<Record> {
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| e.time); // stable: file order within a stamp
    let mut out: Vec<Record> = Vec::new();
    // Failed keys of a connection that then logged in: no refusal.
    let mut dropped = vec![];
    // Open sessions and not yet ended attempts, as indices into `out`.
    let mut sessions: HashMap<Peer, usize> = HashMap::new();
    let mut attempts: HashMap<(String, Peer), usize> = HashMap::new();
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    for event in events {
        let time = Some(event.time);
        match &event.what {
            What::Accepted {
                user,
                from,
                fingerprint,
            } => {
                dropped.extend(attempts.remove(&(user.clone(), *from)));
                let mut record = Record::new(None, user, *from);
                record.fingerprint = Some(fingerprint.clone());
                record.started = time;
                record.pid = Some(event.pid);
                by_pid.insert(event.pid, out.len());
                sessions.insert(*from, out.len());
                out.push(record);
            }
            What::KeyFailed {
                user,
                from,
                fingerprint,
            } => {
                attempts.entry((user.clone(), *from)).or_insert_with(|| {
                    let mut record = Record::new(Some(Refusal::KeyRefused), user, *from);
                    record.fingerprint = Some(fingerprint.clone());
                    record.started = time;
                    out.push(record);
                    out.len() - 1
                });
            }
            What::Ended {
                user,
                authenticated,
                from,
                how,
            } => {
                let open = match (authenticated, user) {
                    (true, _) => match sessions.get(from) {
                        Some(&i) if user.as_ref().is_none_or(|u| out[i].user == *u) => {
                            sessions.remove(from)
                        }
                        _ => None,
                    },
                    (false, Some(user)) => attempts.remove(&(user.clone(), *from)),
                    (false, None) => None,
                };
                // Else its start is not in what was read, or, at INFO, a
                // refused key logs only this line.
                let Some(i) = open.or_else(|| {
                    let user = user.as_ref()?;
                    let refusal = (!authenticated).then_some(Refusal::KeyRefused);
                    let mut record = Record::new(refusal, user, *from);
                    record.started = (!authenticated).then_some(event.time);
                    out.push(record);
                    Some(out.len() - 1)
                }) else {
                    continue;
                };
                if out[i].end.is_none() {
                    out[i].ended = time;
                    out[i].end = Some(*how);
                }
            }
            What::Reason { from, reason } => {
                let attempt = || {
                    attempts
                        .iter()
                        .find(|((_, p), _)| p == from)
                        .map(|(_, i)| i)
                };
                if let Some(&i) = sessions.get(from).or_else(attempt) {
                    out[i].detail = Some(reason.clone());
                }
            }
            What::ForwardDenied { from, host, port } => {
                if let Some(&i) = sessions.get(from) {
                    let record = refusal_in(&out[i], Refusal::ForwardDenied, event.time);
                    out.push(Record {
                        target: Some((host.clone(), *port)),
                        ..record
                    });
                }
            }
            What::Child { pid } => {
                if let Some(&i) = by_pid.get(&event.pid) {
                    by_pid.insert(*pid, i);
                }
            }
            What::SessionRefused => {
                if let Some(&i) = by_pid.get(&event.pid) {
                    out.push(refusal_in(&out[i], Refusal::SessionRefused, event.time));
                }
            }
            What::InvalidUser { .. } => {}
        }
    }
    for i in dropped {
        out[i].user.clear();
    }
    out.retain(|r| !r.user.is_empty());
    out.sort_by_key(Record::time);
    out
}

/// A refusal at `time` inside `session`: its user, client and key.
fn refusal_in(session: &Record, refusal: Refusal, time: Time) -> Record {
    Record {
        fingerprint: session.fingerprint.clone(),
        started: Some(time),
        ended: Some(time),
        ..Record::new(Some(refusal), &session.user, session.from)
    }
}

/// `journalctl -o json` for sshd's programs (matches on one field are
/// alternatives), from `since` on.
pub fn journal_cmd(since: Option<Time>) -> Cmd {
    let mut cmd = Cmd::new("journalctl").args(["-o", "json", "--no-pager", "-q"]);
    for program in PROGRAMS {
        cmd = cmd.arg(format!("_COMM={program}"));
    }
    if let Some(since) = since {
        // Whole seconds; `@` is a Unix time for journalctl.
        cmd = cmd.arg(format!("--since=@{}", since.0.div_euclid(SECOND)));
    }
    cmd
}

/// sshd's events on this bastion from `since` on (or all there are): the
/// journal when journald runs (its socket exists), else `auth_log`, and its
/// rotated `.1` when `since` reaches back before the first line of
/// `auth_log`.
pub fn read(journal_socket: &Path, auth_log: &Path, since: Option<Time>) -> Result<Vec<Event>> {
    if journal_socket.exists() {
        let output = exec::run(&journal_cmd(since))?;
        return Ok(journal_events(&output.stdout));
    }
    let now = Time::now();
    let text = match std::fs::read(auth_log) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refused(format!(
                "no sshd log here: journald is not running and {} does not exist \
                 (install rsyslog, or start journald)",
                auth_log.display()
            ))
            .into());
        }
        read => read.with_context(|| format!("reading {}", auth_log.display()))?,
    };
    let mut found = events(&String::from_utf8_lossy(&text), now);
    let first = found.first().map(|e| e.time);
    let reaches_back = match (since, first) {
        (Some(since), Some(first)) => since < first,
        _ => true,
    };
    let rotated = auth_log.with_extension("log.1");
    if reaches_back && rotated.exists() {
        let text =
            std::fs::read(&rotated).with_context(|| format!("reading {}", rotated.display()))?;
        let mut older = events(&String::from_utf8_lossy(&text), now);
        older.append(&mut found);
        found = older;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn at(text: &str) -> Time {
        Time::parse(text).unwrap()
    }

    #[test]
    fn times_parse_and_print_as_utc() {
        let t = at("2026-12-01T13:42:13.286455+00:00");
        assert_eq!(t.0 % SECOND, 286_455);
        assert_eq!(t.to_string(), "2026-12-01T13:42:13Z");
        assert_eq!(at("2026-12-01T14:42:13+01:00").0, t.0 - 286_455);
        assert_eq!(at("2026-12-01 13:42:13").0, t.0 - 286_455);
        assert_eq!(at("1970-01-01T00:00:00Z").0, 0);
        assert_eq!(at("2028-02-29").to_string(), "2028-02-29T00:00:00Z");
        assert_eq!(
            at("2000-03-01T00:00:00-0130").to_string(),
            "2000-03-01T01:30:00Z"
        );
        for bad in [
            "2026-02-29",
            "2026-12-01T25:00",
            "2026-12-01T13:42:13+1",
            "2026-12-01T13:42:13.",
            "2026-12-1",
            "Dec  1 13:42:13",
        ] {
            assert_eq!(Time::parse(bad), None, "{bad}");
        }
    }

    /// The traditional format has no year: a December line read in January
    /// is last year's.
    #[test]
    fn traditional_stamps_take_the_year_from_now() {
        let line = "Dec 31 23:59:00 vm sshd[7]: Connection closed by authenticating user alice 127.0.0.1 port 5 [preauth]";
        let in_january = events(line, at("2027-01-01T00:10:00Z"));
        assert_eq!(in_january[0].time.to_string(), "2026-12-31T23:59:00Z");
        let same_day = events(line, at("2026-12-31T23:59:30Z"));
        assert_eq!(same_day[0].time.to_string(), "2026-12-31T23:59:00Z");
        let padded = "Dec  1 13:42:13 vm sshd[7]: Connection closed by authenticating user alice 127.0.0.1 port 5 [preauth]";
        assert_eq!(
            events(padded, at("2026-12-02T00:00:00Z"))[0]
                .time
                .to_string(),
            "2026-12-01T13:42:13Z"
        );
    }

    /// What a client chose (its user name, the host it asks for) cannot
    /// move sshd's own fields: they are cut from the right.
    #[test]
    fn client_text_never_poses_as_sshd_s_fields() {
        let parse = |m: &str| parse_message(m).unwrap();
        assert_eq!(
            parse(
                "Connection closed by authenticating user bob 10.9.9.9 port 7 127.0.0.1 port 40000 [preauth]"
            ),
            What::Ended {
                user: Some("bob 10.9.9.9 port 7".into()),
                authenticated: false,
                from: Peer::parse("127.0.0.1 port 40000").unwrap(),
                how: End::Closed,
            }
        );
        assert_eq!(
            parse(
                "Received request from 127.0.0.1 port 40000 to connect to host 10.0.0.9 port 22, but the request was denied. x to connect to host 10.0.0.8 port 23, but the request was denied."
            ),
            What::ForwardDenied {
                from: Peer::parse("127.0.0.1 port 40000").unwrap(),
                host: "10.0.0.9 port 22, but the request was denied. x to connect to host 10.0.0.8"
                    .into(),
                port: 23,
            }
        );
        // A certificate's key ID is the client's: it cannot move the
        // user, the client or the key (real sshd 9.2 line format).
        assert_eq!(
            parse(
                "Failed publickey for alice from 127.0.0.1 port 40000 ssh2: ED25519-CERT SHA256:real ID x from 10.9.9.9 port 7 ssh2: ED25519 SHA256:victim (serial 0) CA ED25519 SHA256:ca"
            ),
            What::KeyFailed {
                user: "alice".into(),
                from: Peer::parse("127.0.0.1 port 40000").unwrap(),
                fingerprint: "SHA256:real".into(),
            }
        );
        // Nor can a disconnect reason that quotes the client.
        assert_eq!(
            parse(
                "Disconnecting authenticating user alice 127.0.0.1 port 40000: Change of username or service not allowed: (alice,ssh-connection) -> (bob: 10.9.9.9 port 7,x) [preauth]"
            ),
            What::Ended {
                user: Some("alice".into()),
                authenticated: false,
                from: Peer::parse("127.0.0.1 port 40000").unwrap(),
                how: End::Disconnected,
            }
        );
        // An unknown account is never ours, whatever it says.
        assert_eq!(
            parse_message(
                "Failed publickey for invalid user x from 1.1.1.1 port 2 ssh2: ED25519 SHA256:fake from 127.0.0.1 port 4 ssh2: ED25519 SHA256:real"
            ),
            None
        );
        assert_eq!(
            parse_message("Connection closed by invalid user x 127.0.0.1 port 4 [preauth]"),
            None
        );
        // Lines of other programs are not sshd's.
        let forged = "2026-12-01T13:42:13.286455+00:00 vm root: Accepted publickey for alice from 127.0.0.1 port 4 ssh2: ED25519 SHA256:x";
        assert_eq!(events(forged, Time::now()), vec![]);
    }

    /// One line per record: what the tests compare.
    fn summary(r: &Record) -> String {
        let time = |t: Option<Time>| match t {
            Some(t) => format!("{}.{:06}", &t.to_string()[11..19], t.0 % SECOND),
            None => "-".into(),
        };
        format!(
            "{} {} {} {} {}..{} {} {} {}",
            r.refusal.map_or("session", Refusal::as_str),
            r.user,
            r.from,
            r.fingerprint.as_deref().unwrap_or("-"),
            time(r.started),
            time(r.ended),
            r.end.map_or("-", End::as_str),
            r.detail.as_deref().unwrap_or("-"),
            r.target
                .as_ref()
                .map_or("-".into(), |(h, p)| format!("{h}:{p}")),
        )
    }

    const KEY_A: &str = "SHA256:qgBCAZ+tXkX+MUCoHtAcXVFslfmm1GpZloZE8jlBjdA";
    const KEY_X: &str = "SHA256:pT4/U8aiNYznoDuj94vQMiIICKD5htIMGIa7hjv4HGs";
    const KEY_B: &str = "SHA256:HRSD9CisRjotoegH+qBukecRe5L4XNKuB+GrVqZ0p6s";

    /// The real auth log of the e2e suite `audit` (OpenSSH 9.2, rsyslogd,
    /// our drop-in at VERBOSE): an ssh -J session, a wrong key, a forward
    /// to the other user's container, a shell attempt, and b's session.
    #[test]
    fn real_auth_log_becomes_one_record_per_session_and_refusal() {
        let found = records(&events(&fixture("auth.log"), at("2026-12-02T00:00:00Z")));
        let shown: Vec<String> = found.iter().map(summary).collect();
        let a = "e2e-audit-a";
        assert_eq!(
            shown,
            vec![
                format!(
                    "session {a} 127.0.0.1:60956 {KEY_A} 13:50:21.816259..13:50:24.128484 disconnected disconnected by user -"
                ),
                format!(
                    "key-refused {a} 127.0.0.1:34852 {KEY_X} 13:50:33.309992..13:50:33.317524 connection-closed - -"
                ),
                format!(
                    "session {a} 127.0.0.1:34864 {KEY_A} 13:50:33.496858..13:50:33.551520 connection-closed - -"
                ),
                format!(
                    "forward-denied {a} 127.0.0.1:34864 {KEY_A} 13:50:33.510526..13:50:33.510526 - - 10.197.83.3:22"
                ),
                format!(
                    "session {a} 127.0.0.1:34870 {KEY_A} 13:50:33.736359..13:50:33.791854 disconnected disconnected by user -"
                ),
                format!(
                    "session-refused {a} 127.0.0.1:34870 {KEY_A} 13:50:33.747094..13:50:33.747094 - - -"
                ),
                format!(
                    "session e2e-audit-b 127.0.0.1:34876 {KEY_B} 13:50:34.004848..13:50:34.339600 disconnected disconnected by user -"
                ),
            ]
        );
        assert_eq!(found[0].pid, Some(6509), "the process that accepted it");
    }

    /// The same log at sshd's default INFO (without the VERBOSE lines):
    /// the wrong key is still a refusal, without its fingerprint; the shell
    /// attempt cannot be told (its line names no client).
    #[test]
    fn at_info_a_wrong_key_is_still_refused() {
        let info: String = fixture("auth.log")
            .lines()
            .filter(|l| {
                ![
                    "Failed publickey",
                    "User child is on pid",
                    "Accepted key",
                    "Postponed",
                ]
                .iter()
                .any(|v| l.contains(v))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let shown: Vec<String> = records(&events(&info, at("2026-12-02T00:00:00Z")))
            .iter()
            .map(summary)
            .collect();
        assert_eq!(shown.len(), 6, "{shown:#?}");
        assert_eq!(
            shown[1],
            "key-refused e2e-audit-a 127.0.0.1:34852 - 13:50:33.317524..13:50:33.317524 connection-closed - -"
        );
        assert!(!shown.iter().any(|l| l.starts_with("session-refused")));
    }

    /// Ports are reused: a later connection from the same port is a new
    /// session, and a key refused before the one accepted is no refusal.
    #[test]
    fn joins_follow_the_latest_login_of_a_client() {
        let text = "\
2026-12-01T10:00:00.000000+00:00 h sshd[1]: Failed publickey for alice from 10.0.0.1 port 5 ssh2: ED25519 SHA256:old
2026-12-01T10:00:00.100000+00:00 h sshd[1]: Accepted publickey for alice from 10.0.0.1 port 5 ssh2: ED25519 SHA256:new
2026-12-01T10:00:01.000000+00:00 h sshd[2]: Disconnected from user alice 10.0.0.1 port 5
2026-12-01T11:00:00.000000+00:00 h sshd-session[3]: Accepted publickey for alice from 10.0.0.1 port 5 ssh2: ED25519 SHA256:new
2026-12-01T11:00:02.000000+00:00 h sshd-session[4]: Timeout, client not responding from user alice 10.0.0.1 port 5
2026-12-01T12:00:00.000000+00:00 h sshd[5]: Accepted publickey for alice from 10.0.0.1 port 5 ssh2: ED25519 SHA256:new
";
        let shown: Vec<String> = records(&events(text, Time::now()))
            .iter()
            .map(summary)
            .collect();
        assert_eq!(
            shown,
            vec![
                "session alice 10.0.0.1:5 SHA256:new 10:00:00.100000..10:00:01.000000 disconnected - -",
                "session alice 10.0.0.1:5 SHA256:new 11:00:00.000000..11:00:02.000000 timed-out - -",
                "session alice 10.0.0.1:5 SHA256:new 12:00:00.000000..- - - -",
            ]
        );
    }

    /// auth.log.1 is read only when --since reaches back before auth.log's
    /// first line.
    #[test]
    fn the_rotated_log_is_read_when_since_reaches_back() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<&str> = include_str!("../tests/fixtures/auth.log").lines().collect();
        let (old, new) = lines.split_at(20);
        let log = dir.path().join("auth.log");
        std::fs::write(dir.path().join("auth.log.1"), old.join("\n")).unwrap();
        std::fs::write(&log, new.join("\n")).unwrap();
        let no_journal = dir.path().join("no-journal-socket");
        let all = read(&no_journal, &log, Some(at("2026-12-01T13:50:00Z"))).unwrap();
        let recent = read(&no_journal, &log, Some(at("2026-12-01T13:50:34Z"))).unwrap();
        let whole = events(&fixture("auth.log"), Time::now());
        assert_eq!(all, whole);
        assert!(recent.len() < all.len() && !recent.is_empty());
        assert_eq!(recent[..], whole[whole.len() - recent.len()..]);
    }

    #[test]
    fn the_journal_is_asked_for_sshd_s_processes() {
        assert_eq!(
            journal_cmd(Some(at("2026-12-01T13:42:13.5Z"))).to_string(),
            "journalctl -o json --no-pager -q _COMM=sshd _COMM=sshd-session _COMM=sshd-auth --since=@1796132533"
        );
    }

    #[test]
    fn journal_entries_are_read_like_lines() {
        let text = concat!(
            r#"{"__REALTIME_TIMESTAMP":"1796132533286455","_PID":"77","_UID":"0","_COMM":"sshd","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Accepted publickey for alice from 127.0.0.1 port 40000 ssh2: ED25519 SHA256:abc"}"#,
            "\n",
            // journald exports a MESSAGE that is not UTF-8 as bytes.
            r#"{"__REALTIME_TIMESTAMP":"1796132535000000","_PID":"78","_UID":"0","_COMM":"sshd-session","MESSAGE":[68,105,115,99,111,110,110,101,99,116,101,100,32,102,114,111,109,32,117,115,101,114,32,97,108,105,99,101,32,49,50,55,46,48,46,48,46,49,32,112,111,114,116,32,52,48,48,48,48]}"#,
            "\n",
            // `logger -t sshd`: not sshd's.
            r#"{"__REALTIME_TIMESTAMP":"1796132535000000","_PID":"1","_COMM":"logger","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Disconnected from user alice 127.0.0.1 port 40000"}"#,
            "\n",
            // A user's copy of logger named sshd: the right _COMM, not root.
            r#"{"__REALTIME_TIMESTAMP":"1796132535000000","_PID":"2","_UID":"1000","_COMM":"sshd","MESSAGE":"Disconnected from user alice 127.0.0.1 port 40000"}"#,
            "\n",
        );
        let found = journal_events(text);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].time.to_string(), "2026-12-01T13:42:13Z");
        let sessions = records(&found);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].end, Some(End::Disconnected));
        assert_eq!(
            sessions[0].ended.unwrap().0 - sessions[0].started.unwrap().0,
            1_713_545
        );
        let lossy = text.replace(",48,48,48,48]", ",48,48,48,48,255]");
        assert_eq!(journal_events(&lossy).len(), 1, "a lossy port is no port");
        assert_eq!(records(&journal_events(&lossy))[0].end, None);
    }
}
