//! The bastion's OpenSSH server: our drop-in, the proof that its policy is
//! what sshd applies to jump accounts, reload, and ending a jump account's
//! live sessions.
//!
//! sshd takes the first value it meets for each keyword, and at connection
//! time the values of the matching `Match` blocks, in file order, override
//! everything outside them. Our drop-in is therefore named to sort first in
//! sshd_config.d, puts every setting inside its `Match Group containarium`
//! block, and `check_policy` asks `sshd -T` what is really in effect.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::accounts::{GROUP, SHELL};
use crate::config::KEYS_DIR;
use crate::exec::{self, Cmd};

/// First line of the drop-in; a file at our path without it is someone
/// else's and is never overwritten.
pub const MARKER: &str = "# Managed by containarium";

/// Our drop-in's file name: "00-" sorts before the usual "10-", "50-cloud-init"
/// and before any name starting with a letter.
pub const DROPIN_NAME: &str = "00-containarium.conf";

/// The name earlier versions used; it sorted after most other drop-ins.
pub const OLD_DROPIN_NAME: &str = "containarium.conf";

/// `host init --harden`'s drop-in (and the bastion cloud-init's, byte for
/// byte): it sorts before every other drop-in, ours included, and holds no
/// Match block.
pub const HARDENING_NAME: &str = "00-containarium-hardening.conf";

/// Addresses `check_policy` asks `sshd -T` about: loopback, private and
/// public, so a `Match Address` block that wins for one of them shows.
pub const SAMPLE_ADDRS: [&str; 3] = ["127.0.0.1", "10.0.0.1", "203.0.113.1"];

/// Every setting of our Match block, keyword as written and value as `sshd
/// -T` prints it. A jump account may authenticate only with a key from our
/// key file (which carries `permitopen`), and may then only forward to it.
pub fn policy() -> Vec<(&'static str, String)> {
    let mut settings = vec![("AuthorizedKeysFile", format!("{KEYS_DIR}/%u"))];
    settings.extend(
        [
            // No other key source: a host-wide AuthorizedKeysCommand (GCE OS
            // Login, EC2 Instance Connect) or user CA would hand out keys
            // without our permitopen.
            ("AuthorizedKeysCommand", "none"),
            ("AuthorizedPrincipalsCommand", "none"),
            ("AuthorizedPrincipalsFile", "none"),
            ("TrustedUserCAKeys", "none"),
            ("AuthenticationMethods", "publickey"),
            ("PasswordAuthentication", "no"),
            ("KbdInteractiveAuthentication", "no"),
            ("HostbasedAuthentication", "no"),
            ("GSSAPIAuthentication", "no"),
            // Local forwarding only, which the key's permitopen narrows to
            // the container's port 22.
            ("AllowTcpForwarding", "local"),
            ("AllowStreamLocalForwarding", "no"),
            ("PermitListen", "none"),
            ("GatewayPorts", "no"),
            ("PermitTunnel", "no"),
            ("X11Forwarding", "no"),
            ("AllowAgentForwarding", "no"),
            // No shell, command or subsystem session (forwarding still works).
            ("MaxSessions", "0"),
            ("PermitTTY", "no"),
            ("PermitUserRC", "no"),
            ("ForceCommand", SHELL),
            // `containarium audit`: the key of every accepted and refused
            // login (`Failed publickey ... SHA256:...`), which INFO omits.
            ("LogLevel", "VERBOSE"),
        ]
        .map(|(keyword, value)| (keyword, value.to_string())),
    );
    settings
}

/// Global settings, above our Match block (sshd takes the first value it
/// reads, and Debian includes sshd_config.d at the top of sshd_config).
///
/// OpenSSH's default `MaxStartups 10:30:100` starts dropping
/// unauthenticated connections beyond 10: a class of 50 logging in at 9:00
/// would see a third of them refused. 100 may be in authentication at once
/// before random early drop starts, and at most 300 (an unauthenticated
/// sshd costs a few MB). One address, which may be a whole class behind
/// one NAT, may hold up to 100 of them. That is the whole of the
/// drop-free range, so one address alone can reach it: with its 100 in
/// authentication, every other address's new connection is refused with
/// probability 30% and up (MaxStartups' start:rate), all of them once 300
/// are open, which that address cannot reach alone (100 < 300). Its flood
/// slows the others rather than locking them out, until fail2ban bans it.
/// A per-source cap below 100 would make one address harmless, and refuse
/// a class of more than that many logging in at once behind one NAT.
pub const GLOBAL: [(&str, &str); 2] = [
    ("MaxStartups", "100:30:300"),
    ("PerSourceMaxStartups", "100"),
];

/// Whether this host's sshd knows `PerSourceMaxStartups` (OpenSSH 8.5 and
/// later; Debian 11 has 8.4, on which `sshd -t` would refuse the drop-in).
/// An sshd whose version cannot be read is taken to be current.
pub fn supports_per_source() -> bool {
    let out = exec::run_unchecked(&Cmd::new("sshd").arg("-V"));
    let text = out.map(|o| o.stdout + &o.stderr).unwrap_or_default();
    parse_version(&text).is_none_or(|v| v >= (8, 5))
}

/// `OpenSSH_9.2p1 …` (what `sshd -V` prints, or its usage on an sshd that
/// has no -V) → (9, 2).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The host certificate of the bastion's ed25519 key (`host sign`), which
/// every bastion of a cluster presents so users trust one host CA.
pub const HOST_CERT: &str = "/etc/ssh/ssh_host_ed25519_key-cert.pub";

/// The drop-in: the global settings (`PerSourceMaxStartups` only where
/// sshd has it, `HostCertificate` where `host sign` made one), then the
/// jump accounts' policy inside its Match block, so it applies to them
/// only.
pub fn dropin(per_source: bool, host_cert: bool) -> String {
    let mut out = format!(
        "{MARKER}: jump accounts (group {GROUP}) may only open a tunnel
# to port 22 of their own container; their keys are in {KEYS_DIR}.
# This file must sort first in sshd_config.d: sshd applies the first
# matching Match block's value of each setting.
# Room for a class logging in at once (see the README):
"
    );
    for (keyword, value) in GLOBAL {
        if per_source || keyword != "PerSourceMaxStartups" {
            out.push_str(&format!("{keyword} {value}\n"));
        }
    }
    if host_cert {
        out.push_str(&format!("HostCertificate {HOST_CERT}\n"));
    }
    out.push_str(&format!("Match Group {GROUP}\n"));
    for (keyword, value) in policy() {
        out.push_str(&format!("    {keyword} {value}\n"));
    }
    out
}

/// The bastion's algorithms, as removals from OpenSSH's defaults (so an
/// sshd that gains a better default, such as ML-KEM key exchange in 9.9,
/// keeps it): no NIST-curve key exchange or host key, no finite-field
/// Diffie-Hellman, no SHA-1, only encrypt-then-MAC MACs with 128-bit tags,
/// no CBC. What ssh-audit fails is gone; the README lists what it still
/// warns about, and why.
pub const HARDENING: [(&str, &str); 4] = [
    ("KexAlgorithms", "-ecdh-sha2-*,diffie-hellman-*"),
    (
        "HostKeyAlgorithms",
        "-ecdsa-sha2-*,sk-ecdsa-sha2-*,ssh-rsa,ssh-rsa-cert-v01@openssh.com",
    ),
    ("Ciphers", "-*-cbc"),
    (
        "MACs",
        "-*-sha1*,umac-64*,hmac-sha2-256,hmac-sha2-512,umac-128@openssh.com",
    ),
];

/// `host init --harden`'s drop-in.
pub fn hardening() -> String {
    let mut out = format!(
        "{MARKER}: the bastion's key exchange, host key, cipher and MAC
# algorithms (`containarium host init --harden`). Global: no Match block.
"
    );
    for (keyword, value) in HARDENING {
        out.push_str(&format!("{keyword} {value}\n"));
    }
    out
}

/// Algorithms an sshd offers that an auditor fails or that we removed:
/// `effective` is `sshd -T`'s global output. Each as `kind name`.
pub fn weak_algorithms(effective: &HashMap<String, String>) -> Vec<String> {
    const WEAK: [(&str, &[&str]); 4] = [
        (
            "kexalgorithms",
            &["ecdh-sha2-*", "diffie-hellman-*", "*sha1"],
        ),
        (
            "hostkeyalgorithms",
            &[
                "ecdsa-sha2-*",
                "sk-ecdsa-sha2-*",
                "ssh-rsa",
                "ssh-rsa-cert-*",
                "ssh-dss*",
            ],
        ),
        ("ciphers", &["*-cbc", "3des*", "arcfour*", "rijndael*"]),
        (
            "macs",
            &[
                "*sha1*",
                "*md5*",
                "umac-64*",
                "hmac-sha2-256",
                "hmac-sha2-512",
                "umac-128@*",
            ],
        ),
    ];
    let mut weak = Vec::new();
    for (key, patterns) in WEAK {
        let offered = effective.get(key).map(String::as_str).unwrap_or_default();
        for name in offered.split(',').filter(|n| !n.is_empty()) {
            if patterns.iter().any(|p| glob(p, name)) {
                weak.push(format!("{key} {name}"));
            }
        }
    }
    weak
}

/// sshd's algorithm-list patterns: `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

/// `text` with every `Include` replaced by the text of the files it names,
/// as sshd reads them: a relative path is under /etc/ssh, a `*` or `?` in
/// the file name matches in byte order, nesting stops at sshd's own depth
/// (16). The Include of sshd_config.d itself is kept as it is:
/// [`earlier_match`] needs to know where it stands. `at` maps a host path
/// (a test's scratch root). Refused, with the reason: an Include we cannot
/// follow as sshd would (a pattern in a directory, a `[class]`, quotes),
/// more than 256 files, or one that is not a regular file of at most 1 MiB.
pub fn resolve_includes(text: &str, at: &dyn Fn(&str) -> PathBuf) -> Result<String, String> {
    fn resolve(
        text: &str,
        at: &dyn Fn(&str) -> PathBuf,
        depth: usize,
        files: &mut usize,
        out: &mut String,
    ) -> Result<(), String> {
        for line in text.lines() {
            if !keyword(line).eq_ignore_ascii_case("include") || is_dropin_include(line) {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            for pattern in line.split_whitespace().skip(1) {
                let path = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("/etc/ssh/{pattern}")
                };
                let (dir, _) = path.rsplit_once('/').unwrap_or_default();
                if dir.contains(['*', '?', '[']) || path.contains(['[', '"', '\'']) {
                    return Err(format!(
                        "`Include {pattern}`: containarium cannot follow a pattern in a directory, \
                         a [class] or quotes; name the files"
                    ));
                }
                for file in matching(&path, at) {
                    *files += 1;
                    if *files > 256 || depth >= 16 {
                        return Err(format!(
                            "`Include {pattern}`: more than 256 files or 16 levels"
                        ));
                    }
                    resolve(&read_config(&file)?, at, depth + 1, files, out)?;
                }
            }
        }
        Ok(())
    }
    let mut out = String::new();
    resolve(text, at, 0, &mut 0, &mut out)?;
    Ok(out)
}

/// An included file: a regular file of at most 1 MiB (never a FIFO or a
/// device, which would never end); one that does not exist adds nothing,
/// as in sshd.
fn read_config(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = match std::fs::metadata(file) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(err) => return Err(format!("{}: {err}", file.display())),
    };
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(format!(
            "{} is not a regular file of at most 1 MiB",
            file.display()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .map_err(|err| format!("{}: {err}", file.display()))?;
    Ok(text)
}

/// The files `path` names, its file name a pattern (`*`, `?`), in byte order.
fn matching(path: &str, at: &dyn Fn(&str) -> PathBuf) -> Vec<PathBuf> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if !name.contains(['*', '?']) {
        return vec![at(path)];
    }
    let Ok(entries) = std::fs::read_dir(at(if dir.is_empty() { "/" } else { dir })) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| glob(&name.replace('?', "*"), n))
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// An address for each `Match Address` pattern of sshd's whole
/// configuration (`main` and the `dropins`, Includes resolved), for `sshd
/// -T` to be asked about: a CIDR's first host, a pattern's `*` as 1, a plain
/// address as it is; negations too.
pub fn match_addresses(main: &str, dropins: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let texts = std::iter::once(main).chain(dropins.iter().map(|(_, text)| text.as_str()));
    for line in texts.flat_map(str::lines) {
        if !keyword(line).eq_ignore_ascii_case("match") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for pair in words.chunks(2) {
            let [criterion, patterns] = pair else {
                continue;
            };
            if !criterion.eq_ignore_ascii_case("address") {
                continue;
            }
            for pattern in patterns.split(',') {
                if let Some(addr) = sample_of(pattern.trim_start_matches('!'))
                    && !out.contains(&addr)
                {
                    out.push(addr);
                }
            }
        }
    }
    out
}

fn sample_of(pattern: &str) -> Option<String> {
    if let Some((net, bits)) = pattern.split_once('/') {
        let net: std::net::IpAddr = net.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        // The first host; a /31, /32 (or /127, /128) is its own address.
        return Some(match net {
            std::net::IpAddr::V4(v4) if bits < 31 => {
                std::net::Ipv4Addr::from(u32::from(v4).checked_add(1)?).to_string()
            }
            std::net::IpAddr::V6(v6) if bits < 127 => {
                std::net::Ipv6Addr::from(u128::from(v6).checked_add(1)?).to_string()
            }
            addr => addr.to_string(),
        });
    }
    let mut octets: Vec<String> = pattern
        .split('.')
        .map(|o| {
            if o.contains(['*', '?']) {
                "1".into()
            } else {
                o.into()
            }
        })
        .collect();
    while octets.len() < 4 && pattern.contains('*') {
        octets.push("1".into());
    }
    let addr = octets.join(".");
    addr.parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// Whether sshd_config reads sshd_config.d at all.
pub fn includes_dropins(sshd_config: &str) -> bool {
    sshd_config.lines().any(is_dropin_include)
}

fn is_dropin_include(line: &str) -> bool {
    keyword(line).eq_ignore_ascii_case("include")
        && line
            .split_whitespace()
            .skip(1)
            .any(|p| matches!(p, "/etc/ssh/sshd_config.d/*.conf" | "sshd_config.d/*.conf"))
}

/// A config line's keyword; sshd splits on whitespace or `=`.
fn keyword(line: &str) -> &str {
    let line = line.trim_start();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    &line[..end]
}

fn has_match(text: &str) -> bool {
    text.lines()
        .any(|l| keyword(l).eq_ignore_ascii_case("match"))
}

/// Why another Match block could take effect before ours, if one can: a
/// Match in sshd_config above its Include of sshd_config.d (the drop-ins
/// would then only apply inside it), or one in a drop-in whose name sorts
/// before ours (sshd reads them in byte order). `others` are the other
/// `*.conf` files of sshd_config.d, name and text.
pub fn earlier_match(sshd_config: &str, others: &[(String, String)]) -> Option<String> {
    let head: Vec<&str> = sshd_config
        .lines()
        .take_while(|l| !is_dropin_include(l))
        .collect();
    if has_match(&head.join("\n")) {
        return Some("sshd_config has a Match block above its Include of sshd_config.d".into());
    }
    others
        .iter()
        .filter(|(name, _)| name.as_bytes() < DROPIN_NAME.as_bytes())
        .find(|(_, text)| has_match(text))
        .map(|(name, _)| {
            format!("sshd_config.d/{name} sorts before {DROPIN_NAME} and has a Match block")
        })
}

/// `sshd -t`: checks the whole configuration, drop-ins included.
pub fn validate(sshd_config: &Path) -> Cmd {
    Cmd::new("sshd").args(["-t", "-f", &sshd_config.to_string_lossy()])
}

/// `sshd -T` without a connection: the global settings.
pub fn global_cmd(sshd_config: &Path) -> Cmd {
    Cmd::new("sshd").args(["-T", "-f", &sshd_config.to_string_lossy()])
}

/// `sshd -T`: the configuration sshd would apply to a connection of `user`
/// from `addr`.
pub fn effective_cmd(sshd_config: &Path, user: &str, addr: &str) -> Cmd {
    Cmd::new("sshd").args([
        "-T",
        "-f",
        &sshd_config.to_string_lossy(),
        "-C",
        &format!("user={user},addr={addr},host={addr}"),
    ])
}

/// `sshd -T` output: one `keyword value` line per setting, keywords in
/// lower case. A keyword printed more than once keeps its first value.
pub fn parse_effective(text: &str) -> HashMap<String, String> {
    let mut settings = HashMap::new();
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        settings
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }
    settings
}

/// The settings of our policy that `effective` does not show, as
/// `keyword is "actual", not "ours"`.
pub fn policy_mismatches(effective: &HashMap<String, String>) -> Vec<String> {
    policy()
        .into_iter()
        .filter_map(|(keyword, value)| {
            let key = keyword.to_ascii_lowercase();
            match effective.get(&key) {
                Some(actual) if *actual == value => None,
                Some(actual) => Some(format!("{key} is \"{actual}\", not \"{value}\"")),
                None => Some(format!("{key} is not shown, not \"{value}\"")),
            }
        })
        .collect()
}

/// Proves with `sshd -T` that sshd would apply every setting of our Match
/// block to `user`, a jump account, from each of [`SAMPLE_ADDRS`] and of
/// `more` (one per `Match Address` of the configuration); fails in one line
/// naming the first address and the settings that differ.
pub fn check_policy(sshd_config: &Path, user: &str, more: &[String]) -> Result<()> {
    for addr in SAMPLE_ADDRS
        .iter()
        .copied()
        .chain(more.iter().map(String::as_str))
    {
        let output = exec::run(&effective_cmd(sshd_config, user, addr))?;
        let wrong = policy_mismatches(&parse_effective(&output.stdout));
        if !wrong.is_empty() {
            bail!(
                "sshd would not apply containarium's policy to jump account {user} from {addr}: \
                 {}; another Match block wins (a drop-in sorting before {DROPIN_NAME}?)",
                wrong.join(", ")
            );
        }
    }
    Ok(())
}

/// The running sshd's PID, from its pid file, if that process is root's and
/// an sshd: a stale pid file may name a PID now used by anything else.
pub fn running_pid(proc: &Path, pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let is_sshd = comm(proc, pid).as_deref() == Some("sshd") && real_uid(proc, pid) == Some(0);
    (pid > 0 && is_sshd).then_some(pid)
}

/// SIGHUP to the sshd in `pid_file`, checked again right before: what
/// `systemctl reload ssh` does, with or without systemd.
pub fn reload(pid_file: &Path) -> Result<()> {
    let Some(pid) = running_pid(Path::new("/proc"), pid_file) else {
        bail!(
            "{} no longer names a running sshd; not signalling it",
            pid_file.display()
        );
    };
    kill(Pid::from_raw(pid), Signal::SIGHUP)?;
    Ok(())
}

/// The sshd processes of one account: the unprivileged half of each of its
/// connections (`sshd: alice`, or `sshd-session` from OpenSSH 9.8 on),
/// which runs with the account's real UID. The privileged monitor beside it
/// runs as root and is never listed, nor is anything that is not an sshd,
/// belongs to another UID or lives in another PID namespace (a container).
pub fn session_pids(proc: &Path, uid: u32) -> Vec<i32> {
    let ours = std::fs::read_link(proc.join("self/ns/pid")).ok();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            matches!(comm(proc, pid).as_deref(), Some("sshd" | "sshd-session"))
                && real_uid(proc, pid) == Some(uid)
                && ours.is_some()
                && std::fs::read_link(proc.join(format!("{pid}/ns/pid"))).ok() == ours
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// How long a session gets to end on SIGTERM before SIGKILL, and how long
/// in all before we give up.
const TERM_GRACE: Duration = Duration::from_secs(2);
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Ends every live session of the account with `uid` on this host (see
/// [`session_pids`]) and waits until their processes are gone, which is
/// what `userdel` needs. Returns how many sessions were ended. Each process
/// is checked again right before every signal.
pub fn end_sessions(uid: u32) -> Result<usize> {
    let proc = Path::new("/proc");
    let start = Instant::now();
    let mut seen: HashMap<i32, Instant> = HashMap::new();
    loop {
        let live = session_pids(proc, uid);
        if live.is_empty() {
            return Ok(seen.len());
        }
        if start.elapsed() > KILL_GRACE {
            bail!(
                "sshd processes of UID {uid} did not end within {}s: PIDs {live:?}",
                KILL_GRACE.as_secs()
            );
        }
        for pid in live {
            let first = *seen.entry(pid).or_insert_with(Instant::now);
            let signal = if first.elapsed() < TERM_GRACE {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            // Gone already (ESRCH) is what we want; a zombie ignores both.
            let _ = kill(Pid::from_raw(pid), signal);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn comm(proc: &Path, pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(proc.join(format!("{pid}/comm"))).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

fn real_uid(proc: &Path, pid: i32) -> Option<u32> {
    parse_real_uid(&std::fs::read_to_string(proc.join(format!("{pid}/status"))).ok()?)
}

/// The real UID from /proc/PID/status: `Uid:` real, effective, saved, fs.
fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn a_match_block_reached_through_an_include_is_found() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(at("/etc/ssh/sshd_config.d")).unwrap();
        let sftp = "Match Address 192.168.0.0/16,!10.1.*\n    ForceCommand internal-sftp\n";
        std::fs::write(at("/etc/ssh/extra.conf"), sftp).unwrap();
        std::fs::write(at("/etc/ssh/nested.conf"), "Include extra.conf\n").unwrap();
        let main = "Include /etc/ssh/nested.conf\nInclude /etc/ssh/sshd_config.d/*.conf\nPort 22\n";
        let resolved = resolve_includes(main, &at).unwrap();
        assert!(
            resolved.contains("ForceCommand internal-sftp"),
            "{resolved}"
        );
        assert!(
            resolved.contains("Include /etc/ssh/sshd_config.d/*.conf"),
            "{resolved}"
        );
        assert!(
            earlier_match(&resolved, &[])
                .unwrap()
                .contains("above its Include")
        );
        // Control: the same text unresolved, as the check read it before.
        assert_eq!(earlier_match(main, &[]), None);

        // A drop-in sorting before ours that only includes the Match.
        let dropin = resolve_includes("Include /etc/ssh/extra.co?f\n", &at).unwrap();
        let others = [("00-aaa.conf".to_string(), dropin)];
        let plain = "Include /etc/ssh/sshd_config.d/*.conf\n";
        assert!(
            earlier_match(plain, &others)
                .unwrap()
                .contains("00-aaa.conf")
        );
        assert_eq!(
            match_addresses(&resolved, &[]),
            ["192.168.0.1".to_string(), "10.1.1.1".to_string()]
        );
        assert_eq!(
            match_addresses("Match User bob Address 203.0.113.7,2001:db8::/32\n", &[]),
            ["203.0.113.7".to_string(), "2001:db8::1".to_string()]
        );
        assert_eq!(
            match_addresses(
                "Match Address 203.0.113.7/32,255.255.255.255/32,10.9.0.0/16\n",
                &[]
            ),
            ["203.0.113.7", "255.255.255.255", "10.9.0.1"].map(String::from)
        );
        // An Include that names nothing adds nothing; a loop, a wide one, a
        // FIFO and what we cannot follow as sshd would are refused.
        assert_eq!(
            resolve_includes("Include /etc/ssh/none*.conf\n", &at).unwrap(),
            ""
        );
        std::fs::write(
            at("/etc/ssh/loop.conf"),
            "Include loop.conf loop.conf loop.conf\n",
        )
        .unwrap();
        let err = resolve_includes("Include loop.conf\n", &at).unwrap_err();
        assert!(err.contains("more than 256 files or 16 levels"), "{err}");
        nix::unistd::mkfifo(&at("/etc/ssh/fifo.conf"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = resolve_includes("Include fifo.conf\n", &at).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        for unfollowable in [
            "Include /etc/ssh/*/x.conf",
            "Include x[ab].conf",
            "Include \"a b.conf\"",
        ] {
            let err = resolve_includes(unfollowable, &at).unwrap_err();
            assert!(err.contains("cannot follow"), "{unfollowable}: {err}");
        }
    }

    #[test]
    fn recognises_debian_include() {
        assert!(includes_dropins(
            "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n"
        ));
        assert!(!includes_dropins(
            "#Include /etc/ssh/sshd_config.d/*.conf\n"
        ));
        assert!(!includes_dropins("Port 22\n"));
    }

    #[test]
    fn dropin_holds_every_setting_inside_the_match_block() {
        let text = dropin(true, false);
        assert!(text.starts_with(MARKER));
        let (head, block) = text.split_once("Match Group containarium\n").unwrap();
        let settings: Vec<&str> = head.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            settings,
            ["MaxStartups 100:30:300", "PerSourceMaxStartups 100"],
            "only the global settings sit above the Match block"
        );
        assert_eq!(block.lines().count(), policy().len());
        for line in [
            "    AuthorizedKeysFile /etc/containarium/keys/%u\n",
            "    AuthorizedKeysCommand none\n",
            "    TrustedUserCAKeys none\n",
            "    MaxSessions 0\n",
            "    ForceCommand /usr/sbin/nologin\n",
            "    LogLevel VERBOSE\n",
        ] {
            assert!(block.contains(line), "{line:?} missing from\n{text}");
        }
    }

    /// OpenSSH 9.2's defaults, from a real `sshd -T`, offer the six
    /// algorithms ssh-audit fails and the MACs it warns about; with our
    /// hardening drop-in included, the same sshd offers none of them.
    #[test]
    fn hardening_removes_every_weak_algorithm_of_a_real_sshd() {
        let default = weak_algorithms(&parse_effective(&fixture("sshd-T-default.txt")));
        for failed in [
            "kexalgorithms ecdh-sha2-nistp256",
            "kexalgorithms ecdh-sha2-nistp521",
            "kexalgorithms diffie-hellman-group14-sha256",
            "hostkeyalgorithms ecdsa-sha2-nistp256",
            "macs hmac-sha1",
            "macs hmac-sha1-etm@openssh.com",
            "macs umac-64-etm@openssh.com",
            "macs hmac-sha2-256",
        ] {
            assert!(
                default.contains(&failed.to_string()),
                "{failed}: {default:?}"
            );
        }
        let hardened = parse_effective(&fixture("sshd-T-hardened.txt"));
        assert_eq!(weak_algorithms(&hardened), Vec::<String>::new());
        // What stays: post-quantum and X25519 key exchange, Ed25519 and
        // RSA-SHA2 host keys, AEAD and CTR ciphers, ETM MACs.
        assert!(hardened["kexalgorithms"].starts_with("sntrup761x25519-sha512,"));
        assert!(hardened["hostkeyalgorithms"].contains("ssh-ed25519,"));
        assert_eq!(
            hardened["macs"],
            "umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com"
        );
    }

    /// `sshd -V` of OpenSSH 9.2 (Debian 12), and the usage an OpenSSH 8.4
    /// (Debian 11), which has no -V, prints instead.
    #[test]
    fn older_sshd_gets_no_per_source_max_startups() {
        assert_eq!(
            parse_version("OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026\n"),
            Some((9, 2))
        );
        let usage = "unknown option -- V\nOpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w  11 Sep 2023\nusage: sshd [-46DdeiqTt] [-C connection_spec] [-c host_cert_file]\n";
        assert_eq!(parse_version(usage), Some((8, 4)));
        assert_eq!(parse_version(""), None);
        assert!(!dropin(false, false).contains("PerSourceMaxStartups"));
        assert!(!dropin(true, false).contains("HostCertificate"));
        assert!(
            dropin(true, true).contains(&format!("\nHostCertificate {HOST_CERT}\nMatch Group"))
        );
        assert!(dropin(false, false).contains("\nMaxStartups 100:30:300\n"));
    }

    #[test]
    fn glob_matches_like_sshd_patterns() {
        assert!(glob("ecdh-sha2-*", "ecdh-sha2-nistp256"));
        assert!(glob("*-sha1*", "hmac-sha1-etm@openssh.com"));
        assert!(glob("*-sha1*", "hmac-sha1"));
        assert!(glob("*-cbc", "aes128-cbc"));
        assert!(!glob("*-cbc", "aes128-ctr"));
        assert!(!glob("ssh-rsa", "rsa-sha2-256"));
        assert!(!glob("umac-128@*", "umac-128-etm@openssh.com"));
    }

    /// The bastion's cloud-init writes the same hardening file, byte for
    /// byte, so `host init --harden` on such a bastion changes nothing.
    #[test]
    fn cloud_init_writes_our_hardening_drop_in() {
        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("cloud-init/bastion.yaml"),
        )
        .unwrap();
        let header = format!("  - path: /etc/ssh/sshd_config.d/{HARDENING_NAME}\n");
        let (_, entry) = yaml.split_once(&header).expect("cloud-init writes it");
        let (_, body) = entry.split_once("    content: |\n").unwrap();
        let content: String = body
            .lines()
            .take_while(|l| l.starts_with("      ") || l.is_empty())
            .map(|l| format!("{}\n", l.strip_prefix("      ").unwrap_or(l)))
            .collect();
        assert_eq!(content.trim_end(), hardening().trim_end());
    }

    /// Real `sshd -T -C user=…` output (OpenSSH 9.2) where our Match block
    /// applies: nothing differs. The positive control of the next tests.
    #[test]
    fn real_sshd_output_with_our_block_in_effect_passes() {
        let effective = parse_effective(&fixture("sshd-T-jump.txt"));
        assert_eq!(
            effective.get("forcecommand").map(String::as_str),
            Some("/usr/sbin/nologin")
        );
        assert_eq!(policy_mismatches(&effective), Vec::<String>::new());
        // A host-wide AuthorizedKeysCommand does not reach the jump account.
        let with_akc = parse_effective(&fixture("sshd-T-jump-akc.txt"));
        assert_eq!(policy_mismatches(&with_akc), Vec::<String>::new());
    }

    /// Real output for a connection from 10.1.2.3 when a drop-in sorting
    /// before ours has `Match Address 10.0.0.0/8` with `ForceCommand
    /// internal-sftp` and `AllowTcpForwarding yes`: both are caught.
    #[test]
    fn real_sshd_output_with_an_earlier_match_block_fails() {
        let effective = parse_effective(&fixture("sshd-T-hostile-match.txt"));
        assert_eq!(
            policy_mismatches(&effective),
            vec![
                "allowtcpforwarding is \"yes\", not \"local\"".to_string(),
                "forcecommand is \"internal-sftp\", not \"/usr/sbin/nologin\"".to_string(),
            ]
        );
    }

    /// The real output of a bastion whose drop-in predates `LogLevel
    /// VERBOSE` (sshd -T printed `loglevel INFO` for the jump account): the
    /// check names it, so `host init` rewrites the drop-in.
    #[test]
    fn a_jump_account_logging_at_info_fails_the_check() {
        let old = fixture("sshd-T-jump.txt").replace("loglevel VERBOSE\n", "loglevel INFO\n");
        assert_eq!(
            policy_mismatches(&parse_effective(&old)),
            vec!["loglevel is \"INFO\", not \"VERBOSE\"".to_string()]
        );
    }

    /// Real output for an account our block does not match, on a host with
    /// a host-wide AuthorizedKeysCommand: every key source and the default
    /// key file are reported.
    #[test]
    fn real_sshd_output_without_our_block_fails_on_every_key_source() {
        let effective = parse_effective(&fixture("sshd-T-other-akc.txt"));
        let wrong = policy_mismatches(&effective);
        for expected in [
            "authorizedkeysfile is \".ssh/authorized_keys .ssh/authorized_keys2\", not \"/etc/containarium/keys/%u\"",
            "authorizedkeyscommand is \"/usr/bin/false\", not \"none\"",
            "forcecommand is \"none\", not \"/usr/sbin/nologin\"",
            "maxsessions is \"10\", not \"0\"",
        ] {
            assert!(wrong.contains(&expected.to_string()), "{wrong:#?}");
        }
        let missing = parse_effective("port 22\n");
        assert_eq!(policy_mismatches(&missing).len(), policy().len());
    }

    #[test]
    fn finds_match_blocks_that_sshd_reads_before_ours() {
        let main = "Include /etc/ssh/sshd_config.d/*.conf\nMatch User x\n  ForceCommand y\n";
        let quiet = |name: &str| (name.to_string(), "PrintMotd no\n".to_string());
        let matching = |name: &str| (name.to_string(), "  match=Address 10.0.0.0/8\n".to_string());
        // Controls: later Match blocks, earlier files without one.
        assert_eq!(
            earlier_match(
                main,
                &[
                    quiet("0-a.conf"),
                    matching("000-x.conf"),
                    matching("10-x.conf"),
                    matching(OLD_DROPIN_NAME)
                ]
            ),
            None
        );
        assert_eq!(
            earlier_match(main, &[matching("0-a.conf")]).as_deref(),
            Some("sshd_config.d/0-a.conf sorts before 00-containarium.conf and has a Match block")
        );
        assert_eq!(
            earlier_match(main, &[matching("00-a.conf")]).as_deref(),
            Some("sshd_config.d/00-a.conf sorts before 00-containarium.conf and has a Match block")
        );
        assert_eq!(
            earlier_match(
                "Match Address 10.0.0.0/8\nInclude /etc/ssh/sshd_config.d/*.conf\n",
                &[]
            )
            .as_deref(),
            Some("sshd_config has a Match block above its Include of sshd_config.d")
        );
    }

    #[test]
    fn parses_the_real_uid_not_the_effective_one() {
        // Captured from `setpriv --ruid 1234 cat /proc/self/status`.
        assert_eq!(parse_real_uid(&fixture("proc-status.txt")), Some(1234));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    /// A scratch /proc: only the sshd process of the UID, in our PID
    /// namespace, is a session; its neighbours are the controls.
    #[test]
    fn session_pids_are_sshd_processes_of_that_uid_only() {
        let proc = tempfile::tempdir().unwrap();
        let ns = "pid:[4026531836]";
        let add = |pid: &str, comm: &str, uid: u32, pid_ns: &str| {
            let dir = proc.path().join(pid);
            std::fs::create_dir_all(dir.join("ns")).unwrap();
            std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            let status = format!("Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n");
            std::fs::write(dir.join("status"), status).unwrap();
            std::os::unix::fs::symlink(pid_ns, dir.join("ns/pid")).unwrap();
        };
        add("self", "containarium", 0, ns);
        add("100", "sshd", 0, ns); // the privileged monitor
        add("101", "sshd", 1001, ns); // alice's session (OpenSSH 9.2)
        add("102", "sshd-session", 1001, ns); // alice's session (9.8+)
        add("103", "sleep", 1001, ns); // alice, but not sshd
        add("104", "sshd", 1002, ns); // bob's session
        add("105", "sshd", 1001, "pid:[4026532999]"); // in a container
        assert_eq!(session_pids(proc.path(), 1001), vec![101, 102]);
        assert_eq!(session_pids(proc.path(), 1002), vec![104]);
        assert_eq!(session_pids(proc.path(), 1003), Vec::<i32>::new());
    }

    #[test]
    fn pid_file_must_name_root_s_sshd() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sshd.pid");
        // This test's own process is not an sshd.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(running_pid(Path::new("/proc"), &pid_file), None);
        let proc = dir.path().join("proc");
        for (pid, comm, uid) in [("7", "sshd", 0), ("8", "bash", 0), ("9", "sshd", 1000)] {
            std::fs::create_dir_all(proc.join(pid)).unwrap();
            std::fs::write(proc.join(pid).join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(
                proc.join(pid).join("status"),
                format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
            )
            .unwrap();
        }
        for (pid, expected) in [("7", Some(7)), ("8", None), ("9", None), ("nope", None)] {
            std::fs::write(&pid_file, pid).unwrap();
            assert_eq!(running_pid(&proc, &pid_file), expected, "{pid}");
        }
    }

    /// Real processes: a copy of sleep named `sshd` running as an unused
    /// UID is ended; the same UID's non-sshd process and another UID's
    /// "sshd" are left alone. Runs as root, like the tool.
    #[test]
    fn end_sessions_signals_only_that_uid_s_sshd_processes() {
        use std::os::unix::process::CommandExt;
        assert!(nix::unistd::geteuid().is_root(), "run the tests as root");
        let dir = tempfile::tempdir().unwrap();
        for name in ["sshd", "sleep"] {
            std::fs::copy("/bin/sleep", dir.path().join(name)).unwrap();
        }
        let spawn = |name: &str, uid: u32| {
            std::process::Command::new(dir.path().join(name))
                .arg("60")
                .uid(uid)
                .spawn()
                .unwrap()
        };
        let (target_uid, other_uid) = (64_901, 64_902);
        let target = spawn("sshd", target_uid);
        let mut not_sshd = spawn("sleep", target_uid);
        let mut other = spawn("sshd", other_uid);
        let target_pid = target.id() as i32;
        // Reap the target as it dies, the way sshd's monitor reaps its child.
        let reaper = std::thread::spawn(move || {
            let mut target = target;
            target.wait().unwrap()
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !session_pids(Path::new("/proc"), target_uid).contains(&target_pid) {
            assert!(Instant::now() < deadline, "the fake session never showed");
            std::thread::sleep(Duration::from_millis(10));
        }

        assert_eq!(end_sessions(target_uid).unwrap(), 1);
        let status = reaper.join().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        assert!(not_sshd.try_wait().unwrap().is_none(), "non-sshd killed");
        assert!(other.try_wait().unwrap().is_none(), "other UID killed");
        assert_eq!(end_sessions(target_uid).unwrap(), 0);
        for child in [&mut not_sshd, &mut other] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
