//! fail2ban: the jail that bans clients failing to log in to the bastion's
//! sshd, rendered from the `[fail2ban]` table of config.toml, and the
//! `fail2ban-client` commands and output parsers that `host init` and
//! `security` use.
//!
//! Our jail is fail2ban's own `sshd` jail, configured in
//! `jail.d/containarium.conf`. Debian ships `jail.d/defaults-debian.conf`
//! with `[sshd] enabled = true`, which fail2ban reads after ours (jail.d's
//! `*.conf` in byte order), so the `enabled` switch lives in
//! `jail.d/containarium.local`: every `*.local` is read after every
//! `*.conf`. Key-only sshd logs a wrong key at INFO only as "Connection
//! closed by authenticating user …", which only `mode = aggressive` counts.
//! OpenSSH 9.8 and later log as `sshd-session`, which fail2ban 1.0 does not
//! match: `filter.d/sshd.local` widens the filter's daemon name.
//!
//! Every value that reaches a fail2ban file is validated here, so nothing
//! in config.toml can add a line or a `%(…)s` interpolation to the jail.

use std::net::IpAddr;
use std::str::FromStr;

use anyhow::Result;
use serde::Deserialize;

use crate::error::Refused;
use crate::exec::{self, Cmd};
use crate::time::Span;

/// The jail we configure and ask about.
pub const JAIL: &str = "sshd";

/// First line of each file we write; a file at our path without it is
/// someone else's and is never overwritten.
pub const MARKER: &str = crate::sshd::MARKER;

/// The `[fail2ban]` table of config.toml, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Table {
    enabled: Option<bool>,
    maxretry: Option<u32>,
    findtime: Option<String>,
    bantime: Option<String>,
    bantime_increment: Option<bool>,
    bantime_maxtime: Option<String>,
    #[serde(default)]
    ignoreip: Vec<String>,
    banaction: Option<String>,
    backend: Option<String>,
    logpath: Option<String>,
    port: Option<Ports>,
}

/// `port = 22` or `port = [22, 2222]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Ports {
    One(u16),
    Many(Vec<u16>),
}

/// The jail's settings, every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    pub maxretry: u32,
    pub findtime: Span,
    pub bantime: Span,
    pub bantime_increment: bool,
    pub bantime_maxtime: Span,
    /// Never banned. Loopback is not among them unless listed: the jail
    /// also sets `ignoreself = false`.
    pub ignoreip: Vec<Net>,
    /// `None`: fail2ban's own default (`banaction` in jail.conf).
    pub banaction: Option<String>,
    pub backend: Backend,
    pub logpath: String,
    /// `None`: the ports sshd listens on, from `sshd -T`.
    pub port: Option<Vec<u16>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from_table(Table::default()).expect("the defaults are valid")
    }
}

impl Settings {
    /// Checks every value; the error names the key, for one line.
    pub fn from_table(table: Table) -> Result<Settings, String> {
        let span = |value: Option<String>, default: &str, key: &str| {
            value
                .as_deref()
                .unwrap_or(default)
                .parse::<Span>()
                .map_err(|err| format!("fail2ban.{key}: {err}"))
        };
        let maxretry = table.maxretry.unwrap_or(5);
        if maxretry == 0 {
            return Err("fail2ban.maxretry: must be at least 1".into());
        }
        let ignoreip = table
            .ignoreip
            .iter()
            .map(|s| s.parse::<Net>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("fail2ban.ignoreip: {err}"))?;
        let banaction = table
            .banaction
            .map(|name| check_banaction(&name).map(|()| name))
            .transpose()
            .map_err(|err| format!("fail2ban.banaction: {err}"))?;
        let backend = table
            .backend
            .as_deref()
            .unwrap_or("auto")
            .parse::<Backend>()
            .map_err(|err| format!("fail2ban.backend: {err}"))?;
        let logpath = table
            .logpath
            .unwrap_or_else(|| "/var/log/auth.log".to_string());
        check_logpath(&logpath).map_err(|err| format!("fail2ban.logpath: {err}"))?;
        let port = match table.port {
            None => None,
            Some(Ports::One(port)) => Some(vec![port]),
            Some(Ports::Many(ports)) => Some(ports),
        };
        if let Some(ports) = &port
            && (ports.is_empty() || ports.contains(&0))
        {
            return Err("fail2ban.port: give one or more ports from 1 to 65535".into());
        }
        Ok(Settings {
            enabled: table.enabled.unwrap_or(true),
            maxretry,
            findtime: span(table.findtime, "10m", "findtime")?,
            bantime: span(table.bantime, "1h", "bantime")?,
            bantime_increment: table.bantime_increment.unwrap_or(true),
            bantime_maxtime: span(table.bantime_maxtime, "1w", "bantime-maxtime")?,
            ignoreip,
            banaction,
            backend,
            logpath,
            port,
        })
    }
}

/// An address or a network (`10.0.0.0/8`, `2001:db8::/32`), for `ignoreip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Net, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR network");
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => None,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
                Some(p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?)
            }
            Some(_) => return Err(bad()),
        };
        Ok(Net { addr, prefix })
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(prefix) => write!(f, "{}/{prefix}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Where fail2ban reads sshd's log lines from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The journal when journald runs and python3-systemd is installed,
    /// else polling the auth log: decided by `host init` on the host.
    Auto,
    Systemd,
    Polling,
    Pyinotify,
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "systemd" => Ok(Backend::Systemd),
            "polling" => Ok(Backend::Polling),
            "pyinotify" => Ok(Backend::Pyinotify),
            _ => Err(format!(
                "{s:?} is not one of auto, systemd, polling, pyinotify"
            )),
        }
    }
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Systemd => "systemd",
            Backend::Polling => "polling",
            Backend::Pyinotify => "pyinotify",
        }
    }
}

/// A banaction: a name from action.d, optionally with simple parameters
/// (`nftables[type=allports]`). No spaces, newlines, `%` or quotes.
fn check_banaction(name: &str) -> Result<(), String> {
    let (base, params) = match name.split_once('[') {
        Some((base, rest)) => (base, rest.strip_suffix(']')),
        None => (name, Some("")),
    };
    let word = |s: &str, extra: &[u8]| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b) || extra.contains(&b))
    };
    let ok = !base.is_empty()
        && word(base, b"")
        && params.is_some_and(|p| word(p, b"=,:/"))
        && !base.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an action name like \"nftables\" or \"nftables[type=allports]\""
        ))
    }
}

/// An absolute path without whitespace, `%` or anything a config line
/// could be broken with.
fn check_logpath(path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"%\"'\\;#=".contains(&b))
        && !path.split('/').any(|part| part == "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not an absolute path of plain characters"
        ))
    }
}

/// The jail file, `jail.d/containarium.conf`: everything but `enabled`.
/// `backend` is already resolved (never `auto`) and `ports` known.
pub fn jail(settings: &Settings, backend: Backend, ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let ignoreip: Vec<String> = settings.ignoreip.iter().map(Net::to_string).collect();
    let mut out = format!(
        "{MARKER}: the sshd jail, from the [fail2ban] table of
# /etc/containarium/config.toml; `containarium host init` rewrites it.
# Its `enabled` is in containarium.local, which fail2ban reads after
# Debian's defaults-debian.conf. Loopback is banned like any address
# unless ignoreip lists it (ignoreself = false; without ignoreip here,
# one in [DEFAULT] of jail.local applies).
[{JAIL}]
mode = aggressive
port = {}
backend = {}
",
        ports.join(","),
        backend.name()
    );
    if backend != Backend::Systemd {
        out.push_str(&format!("logpath = {}\n", settings.logpath));
    }
    out.push_str(&format!(
        "maxretry = {}
findtime = {}
bantime = {}
bantime.increment = {}
bantime.maxtime = {}
ignoreself = false
",
        settings.maxretry,
        settings.findtime,
        settings.bantime,
        settings.bantime_increment,
        settings.bantime_maxtime,
    ));
    // None listed: no line, so an ignoreip of [DEFAULT] in the admin's
    // jail.local (or an older bastion's cloud-init file) still applies.
    if !ignoreip.is_empty() {
        let nets: Vec<String> = ignoreip.iter().map(ToString::to_string).collect();
        out.push_str(&format!("ignoreip = {}\n", nets.join(" ")));
    }
    if let Some(action) = &settings.banaction {
        out.push_str(&format!("banaction = {action}\n"));
    }
    out
}

/// `jail.d/containarium.local`: whether the jail runs, read after every
/// `*.conf` (Debian's defaults-debian.conf enables sshd).
pub fn jail_switch(enabled: bool) -> String {
    format!(
        "{MARKER}: whether the sshd jail of containarium.conf runs.
# A .local file, so that it wins over jail.d/defaults-debian.conf.
[{JAIL}]
enabled = {enabled}
"
    )
}

/// `filter.d/sshd.local`: OpenSSH 9.8 and later log each connection as
/// `sshd-session`, which fail2ban 1.0's sshd filter does not match.
pub fn filter_override() -> String {
    format!(
        "{MARKER}: also watch sshd-session, the per-connection
# process of OpenSSH 9.8 and later, which fail2ban 1.0 does not match.
[DEFAULT]
_daemon = sshd(?:-session)?

[Definition]
# _UID=0: any local user can name a process sshd; only root's are sshd.
journalmatch = _SYSTEMD_UNIT=sshd.service + _COMM=sshd _UID=0 + _COMM=sshd-session _UID=0
"
    )
}

/// The keys a fail2ban config file sets in its `[sshd]` section (lower
/// case, in order): from a file read after ours, they win over our jail.
pub fn sshd_section_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut in_sshd = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_sshd = line == format!("[{JAIL}]");
        } else if in_sshd
            && !line.starts_with(['#', ';'])
            && let Some((key, _)) = line.split_once(['=', ':'])
        {
            keys.push(key.trim().to_ascii_lowercase());
        }
    }
    keys
}

/// The ports of `port` lines in `sshd -T` output, in order, once each.
pub fn parse_sshd_ports(sshd_t: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in sshd_t.lines() {
        if let Some(port) = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    }
    ports
}

pub fn ping() -> Cmd {
    client(["ping"])
}

pub fn reload() -> Cmd {
    client(["reload"])
}

pub fn status() -> Cmd {
    client(["status", JAIL])
}

pub fn banned_with_time() -> Cmd {
    client(["get", JAIL, "banip", "--with-time"])
}

pub fn ban(ip: IpAddr) -> Cmd {
    client(["set", JAIL, "banip", &ip.to_string()])
}

pub fn unban(ip: IpAddr) -> Cmd {
    client(["set", JAIL, "unbanip", &ip.to_string()])
}

fn client<const N: usize>(args: [&str; N]) -> Cmd {
    Cmd::new("fail2ban-client").args(args)
}

/// Whether a fail2ban server answers (`fail2ban-client ping`). An absent
/// client counts as no server; `host init` says so.
pub fn server_running() -> bool {
    exec::run_unchecked(&ping()).is_ok_and(|out| out.status.success())
}

/// Runs a `fail2ban-client` query and returns its stdout; the failures an
/// admin can fix are one-line refusals that say how.
pub fn query(cmd: &Cmd) -> Result<String> {
    let out = match exec::run_unchecked(cmd) {
        Ok(out) => out,
        Err(err) if err.not_found => {
            return Err(Refused(
                "fail2ban is not installed (no fail2ban-client): install it \
                 (apt-get install fail2ban), then run `containarium host init`"
                    .into(),
            )
            .into());
        }
        Err(err) => return Err(err.into()),
    };
    if out.status.success() {
        return Ok(out.stdout);
    }
    match Trouble::of(&format!("{}{}", out.stdout, out.stderr)) {
        Some(Trouble::NoJail) => Err(Refused(format!(
            "fail2ban has no {JAIL} jail: fail2ban is not set up for containarium; \
             `containarium host init` sets it up"
        ))
        .into()),
        Some(Trouble::NotRunning) => Err(Refused(
            "fail2ban is not running: start it (systemctl start fail2ban, or fail2ban-server -b)"
                .into(),
        )
        .into()),
        None => Err(exec::failure(cmd, &out).into()),
    }
}

/// The failures of a `fail2ban-client` call an admin can fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Exit 255, "Sorry but the jail 'sshd' does not exist".
    NoJail,
    /// Exit 255, "… Is fail2ban running?".
    NotRunning,
}

impl Trouble {
    /// Which one a failed call's output (stdout and stderr) says, if any.
    pub fn of(output: &str) -> Option<Trouble> {
        if output.contains("Sorry but the jail") && output.contains("does not exist") {
            Some(Trouble::NoJail)
        } else if output.contains("Is fail2ban running?") {
            Some(Trouble::NotRunning)
        } else {
            None
        }
    }
}

/// `fail2ban-client status sshd`: a tree with a TAB after each colon.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JailStatus {
    pub currently_failed: u64,
    pub total_failed: u64,
    pub currently_banned: u64,
    pub total_banned: u64,
    pub banned: Vec<String>,
}

pub fn parse_status(text: &str) -> Result<JailStatus> {
    let mut status = JailStatus::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        // Drop the tree drawing ("|  |- ", "`- ") in front of the key.
        let key = key.trim_start_matches(|c: char| "|`- ".contains(c)).trim();
        let value = value.trim();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| anyhow::anyhow!("fail2ban-client status: {key} is {value:?}"))
        };
        match key {
            "Currently failed" => status.currently_failed = number()?,
            "Total failed" => status.total_failed = number()?,
            "Currently banned" => status.currently_banned = number()?,
            "Total banned" => status.total_banned = number()?,
            "Banned IP list" => {
                status.banned = value.split_whitespace().map(str::to_string).collect()
            }
            _ => continue,
        }
        seen += 1;
    }
    if seen < 5 {
        anyhow::bail!(
            "fail2ban-client status {JAIL} printed what containarium cannot read: {:?}",
            text.lines().next().unwrap_or_default()
        );
    }
    Ok(status)
}

/// One line of `fail2ban-client get sshd banip --with-time`:
/// `IP \tYYYY-mm-dd HH:MM:SS + SECONDS = YYYY-mm-dd HH:MM:SS`, local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub address: IpAddr,
    pub start: String,
    pub seconds: i64,
    pub end: String,
}

pub fn parse_bans(text: &str) -> Result<Vec<Ban>> {
    let mut bans = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ban = (|| {
            let (address, rest) = line.split_once(char::is_whitespace)?;
            let (start, rest) = rest.trim().split_once(" + ")?;
            let (seconds, end) = rest.split_once(" = ")?;
            Some(Ban {
                address: address.parse().ok()?,
                start: start.trim().to_string(),
                seconds: seconds.trim().parse().ok()?,
                end: end.trim().to_string(),
            })
        })();
        match ban {
            Some(ban) => bans.push(ban),
            None => anyhow::bail!(
                "fail2ban-client get {JAIL} banip --with-time printed a line containarium \
                 cannot read: {line:?}"
            ),
        }
    }
    Ok(bans)
}

/// `set sshd banip|unbanip IP` prints how many addresses it changed.
pub fn parse_count(text: &str) -> Result<u64> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("fail2ban-client printed {:?}, not a count", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn table(text: &str) -> Result<Settings, String> {
        Settings::from_table(toml::from_str(text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::default();
        assert!(s.enabled && s.bantime_increment);
        assert_eq!(s.maxretry, 5);
        assert_eq!(
            (
                s.findtime.seconds,
                s.bantime.seconds,
                s.bantime_maxtime.seconds
            ),
            (600, 3600, 604_800)
        );
        assert!(s.ignoreip.is_empty());
        assert_eq!(
            (s.banaction, s.backend, s.port),
            (None, Backend::Auto, None)
        );
        assert_eq!(s.logpath, "/var/log/auth.log");
    }

    /// The jail as `host init` writes it with the defaults and polling:
    /// aggressive mode, loopback not exempt.
    #[test]
    fn renders_the_default_jail() {
        insta::assert_snapshot!(jail(&Settings::default(), Backend::Polling, &[22]), @r"
        # Managed by containarium: the sshd jail, from the [fail2ban] table of
        # /etc/containarium/config.toml; `containarium host init` rewrites it.
        # Its `enabled` is in containarium.local, which fail2ban reads after
        # Debian's defaults-debian.conf. Loopback is banned like any address
        # unless ignoreip lists it (ignoreself = false; without ignoreip here,
        # one in [DEFAULT] of jail.local applies).
        [sshd]
        mode = aggressive
        port = 22
        backend = polling
        logpath = /var/log/auth.log
        maxretry = 5
        findtime = 10m
        bantime = 1h
        bantime.increment = true
        bantime.maxtime = 1w
        ignoreself = false
        ");
    }

    #[test]
    fn renders_every_setting() {
        let s = table(
            r#"enabled = false
maxretry = 3
findtime = "90s"
bantime = "2d"
bantime-increment = false
bantime-maxtime = "4w"
ignoreip = ["35.191.0.0/16", "203.0.113.7", "2001:db8::/32"]
banaction = "nftables[type=allports]"
backend = "systemd"
logpath = "/var/log/secure"
port = [22, 2222]
"#,
        )
        .unwrap();
        let text = jail(&s, s.backend, s.port.as_deref().unwrap());
        for line in [
            "port = 22,2222\n",
            "backend = systemd\n",
            "maxretry = 3\n",
            "findtime = 90s\n",
            "bantime = 2d\n",
            "bantime.increment = false\n",
            "bantime.maxtime = 4w\n",
            "ignoreip = 35.191.0.0/16 203.0.113.7 2001:db8::/32\n",
            "banaction = nftables[type=allports]\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        // The journal has no log file.
        assert!(!text.contains("logpath"), "{text}");
        assert!(!text.contains("\nenabled"), "{text}");
        assert!(jail_switch(s.enabled).ends_with("[sshd]\nenabled = false\n"));
        // Control: polling reads the configured log.
        assert!(jail(&s, Backend::Polling, &[22]).contains("logpath = /var/log/secure\n"));
    }

    /// Nothing in the table can add a line, an interpolation or a second
    /// value to the jail; each error is one line naming the key.
    #[test]
    fn refuses_every_bad_value_in_one_line() {
        for (text, key) in [
            ("maxretry = 0", "fail2ban.maxretry"),
            ("findtime = \"10 m\"", "fail2ban.findtime"),
            ("findtime = \"0s\"", "fail2ban.findtime"),
            ("bantime = \"1y\"", "fail2ban.bantime"),
            ("bantime = \"-1\"", "fail2ban.bantime"),
            (
                "bantime-maxtime = \"99999999999w\"",
                "fail2ban.bantime-maxtime",
            ),
            (
                "ignoreip = [\"127.0.0.1\\nbanaction = x\"]",
                "fail2ban.ignoreip",
            ),
            ("ignoreip = [\"10.0.0.0/33\"]", "fail2ban.ignoreip"),
            ("ignoreip = [\"example.com\"]", "fail2ban.ignoreip"),
            ("ignoreip = [\"10.0.0.0/\"]", "fail2ban.ignoreip"),
            (
                "banaction = \"dummy\\nignoreip = 0.0.0.0/0\"",
                "fail2ban.banaction",
            ),
            ("banaction = \"%(action_mwl)s\"", "fail2ban.banaction"),
            (
                "banaction = \"nftables[type=allports\"",
                "fail2ban.banaction",
            ),
            ("banaction = \"\"", "fail2ban.banaction"),
            ("backend = \"gamin\"", "fail2ban.backend"),
            ("logpath = \"var/log/auth.log\"", "fail2ban.logpath"),
            ("logpath = \"/var/log/a b\"", "fail2ban.logpath"),
            (
                "logpath = \"/var/log/auth.log\\nenabled = false\"",
                "fail2ban.logpath",
            ),
            ("logpath = \"/var/%(x)s\"", "fail2ban.logpath"),
            ("port = 0", "fail2ban.port"),
            ("port = []", "fail2ban.port"),
        ] {
            let err = table(text).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
            assert!(!err.contains('\n'), "{text}: {err}");
        }
        assert!(table("maxretries = 3").is_err(), "unknown keys are refused");
        assert!(table("port = 70000").is_err());
        // Control: the same keys with good values.
        let ok =
            table("maxretry = 1\nport = 22022\nignoreip = [\"::1\", \"127.0.0.1/8\"]").unwrap();
        assert_eq!(ok.port, Some(vec![22022]));
        assert_eq!(ok.ignoreip[1].to_string(), "127.0.0.1/8");
        assert_eq!("010m".parse::<Span>().unwrap().to_string(), "10m");
        assert_eq!("3600".parse::<Span>().unwrap().seconds, 3600);
    }

    /// Debian's defaults-debian.conf (only `enabled`, which our .local
    /// wins over) and the jail our cloud-init wrote before host init did.
    #[test]
    fn finds_the_sshd_keys_of_other_files() {
        assert_eq!(sshd_section_keys("[sshd]\nenabled = true\n"), ["enabled"]);
        let old = "[DEFAULT]\nignoreip = 127.0.0.1/8\n\n[sshd]\nenabled = true\n# x\nbackend = systemd\n\
                   MaxRetry: 5\n[other]\nbantime = 1\n";
        assert_eq!(sshd_section_keys(old), ["enabled", "backend", "maxretry"]);
        assert!(sshd_section_keys("[recidive]\nenabled = true\n").is_empty());
    }

    #[test]
    fn reads_the_ports_sshd_listens_on() {
        assert_eq!(parse_sshd_ports(&fixture("sshd-T-jump.txt")), [22]);
        assert_eq!(
            parse_sshd_ports("port 22\nport 2222\nport 22\nlistenaddress 0.0.0.0:22\n"),
            [22, 2222]
        );
    }

    /// Real `fail2ban-client status sshd` (fail2ban 1.0.2), TABs after the
    /// colons, with two addresses banned and with none.
    #[test]
    fn parses_real_status_output() {
        let status = parse_status(&fixture("fail2ban-status-sshd.txt")).unwrap();
        assert_eq!(
            status,
            JailStatus {
                currently_failed: 0,
                total_failed: 0,
                currently_banned: 2,
                total_banned: 3,
                banned: vec!["2001:db8::5".into(), "203.0.113.9".into()],
            }
        );
        let empty = parse_status(&fixture("fail2ban-status-sshd-empty.txt")).unwrap();
        assert_eq!((empty.currently_banned, empty.total_banned), (0, 3));
        assert!(empty.banned.is_empty());
        assert!(parse_status(&fixture("fail2ban-no-jail.txt")).is_err());
        assert!(parse_status("Currently failed:\tmany\n").is_err());
    }

    #[test]
    fn parses_real_bans_with_time() {
        let bans = parse_bans(&fixture("fail2ban-banip-with-time.txt")).unwrap();
        assert_eq!(
            bans,
            [
                Ban {
                    address: "2001:db8::5".parse().unwrap(),
                    start: "2026-12-01 13:44:42".into(),
                    seconds: 600,
                    end: "2026-12-01 13:54:42".into(),
                },
                Ban {
                    address: "203.0.113.9".parse().unwrap(),
                    start: "2026-12-01 13:44:48".into(),
                    seconds: 600,
                    end: "2026-12-01 13:54:48".into(),
                }
            ]
        );
        // What it prints with nothing banned: one empty line.
        assert_eq!(parse_bans("\n").unwrap(), []);
        assert!(parse_bans("203.0.113.9 \tsoon\n").is_err());
        assert_eq!(parse_count("1\n").unwrap(), 1);
        assert!(parse_count("Sorry\n").is_err());
    }

    #[test]
    fn commands_are_plain_argv() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            unban(ip).to_string(),
            "fail2ban-client set sshd unbanip 203.0.113.9"
        );
        assert_eq!(
            ban(ip).to_string(),
            "fail2ban-client set sshd banip 203.0.113.9"
        );
        assert_eq!(
            banned_with_time().to_string(),
            "fail2ban-client get sshd banip --with-time"
        );
    }

    #[test]
    fn the_filter_override_widens_the_daemon_and_the_journal_match() {
        let text = filter_override();
        assert!(text.starts_with(MARKER));
        assert!(text.contains("\n_daemon = sshd(?:-session)?\n"));
        assert!(text.contains("+ _COMM=sshd-session _UID=0\n"));
    }
}
