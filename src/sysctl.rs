//! Kernel limits a host of many containers needs, kept by `host init` in
//! `/etc/sysctl.d/60-containarium.conf` and applied with `sysctl -p`.
//!
//! Found by the benchmark: on a stock Debian 12 host the 14th container's
//! systemd-networkd failed with "Too many open files" and never got an
//! address. Every unprivileged container maps to the same host UIDs, so
//! they all share one user's inotify instances (128 by default), and each
//! container's systemd, udev, networkd and resolved take several.
//!
//! Keys are shared the same way: 50 idle tenants held 850 keys under the
//! containers' root UID (/proc/key-users), so the 2000 allowed ran out at
//! about 120, and at 200 it held 2079 of 2000. Past the quota a new key in
//! any container fails with EDQUOT, and `docker run` with it (runc makes a
//! session keyring per container). 20000 is room for about 1100 tenants,
//! more than a host's memory holds at ~30 MiB each.
//!
//! Limits are only ever raised: a host that has more keeps its value, and
//! the file records the larger one, so it cannot lower it at the next boot.

use std::path::Path;

use crate::sshd::MARKER;

/// Each limit, its minimum, and why.
pub const LIMITS: [(&str, u64, &str); 8] = [
    (
        "fs.inotify.max_user_instances",
        1_048_576,
        "shared by every container (one host UID range); 128 stops the 14th",
    ),
    (
        "fs.inotify.max_user_watches",
        1_048_576,
        "shared the same way; editors and Docker watch many files",
    ),
    (
        "fs.inotify.max_queued_events",
        1_048_576,
        "events not yet read, per instance",
    ),
    (
        "kernel.keys.maxkeys",
        20_000,
        "keys per UID, shared by the containers: about 17 each (systemd per unit, runc per Docker container); 2000 ran out at ~120",
    ),
    (
        "kernel.keys.maxbytes",
        20_000_000,
        "bytes of keys per UID, shared the same way",
    ),
    (
        "kernel.pid_max",
        4_194_304,
        "every process and thread of every container is a host PID; 32768, the kernel's default where systemd does not raise it, wraps within minutes on a busy host",
    ),
    (
        "net.ipv4.neigh.default.gc_thresh3",
        8_192,
        "neighbour table: every container is an entry on the bridge",
    ),
    (
        "net.ipv6.neigh.default.gc_thresh3",
        8_192,
        "the same for IPv6",
    ),
];

/// `/proc/sys` path of a key: dots are directories.
pub fn proc_path(proc_sys: &Path, key: &str) -> std::path::PathBuf {
    proc_sys.join(key.replace('.', "/"))
}

/// What the host needs: each limit this kernel has, with the value to keep
/// (ours, or the host's when larger), and whether it must be raised now.
/// `current` reads a key's value (`None`: this kernel has no such key).
pub fn wanted(current: impl Fn(&str) -> Option<u64>) -> Vec<(&'static str, u64, bool)> {
    LIMITS
        .iter()
        .filter_map(|&(key, min, _)| {
            let now = current(key)?;
            Some((key, now.max(min), now < min))
        })
        .collect()
}

/// The sysctl.d file for `wanted`'s values.
pub fn file(wanted: &[(&str, u64, bool)]) -> String {
    let mut out = format!(
        "{MARKER}: kernel limits for many containers (`containarium host init`).\n\
         # Only ever raised: a value the host had above ours is kept.\n"
    );
    for (key, value, _) in wanted {
        let why = LIMITS
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, why)| *why)
            .unwrap_or_default();
        out.push_str(&format!("# {why}\n{key} = {value}\n"));
    }
    out
}

/// A `/proc/sys` value: one unsigned number.
pub fn parse(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_only_what_is_below_and_keeps_a_larger_value() {
        // Stock Debian 12 values (read on this machine), except one the
        // admin raised beyond ours, and no IPv6 on this kernel.
        let host = |key: &str| match key {
            "fs.inotify.max_user_instances" => Some(128),
            "fs.inotify.max_user_watches" => Some(192_530),
            "fs.inotify.max_queued_events" => Some(16_384),
            "kernel.keys.maxkeys" => Some(200),
            "kernel.keys.maxbytes" => Some(20_000),
            "net.ipv4.neigh.default.gc_thresh3" => Some(16_384),
            _ => None,
        };
        let wanted = wanted(host);
        assert_eq!(wanted.len(), 6, "a key the kernel lacks is left out");
        assert!(wanted.contains(&("fs.inotify.max_user_instances", 1_048_576, true)));
        assert!(wanted.contains(&("net.ipv4.neigh.default.gc_thresh3", 16_384, false)));
        let text = file(&wanted);
        assert!(text.starts_with(MARKER));
        assert!(
            text.contains("\nnet.ipv4.neigh.default.gc_thresh3 = 16384\n"),
            "{text}"
        );
        assert!(!text.contains("ipv6"), "{text}");
        // Control: a host already at our values needs nothing raised.
        let raised = |key: &str| LIMITS.iter().find(|l| l.0 == key).map(|l| l.1);
        assert!(super::wanted(raised).iter().all(|(_, _, raise)| !raise));
    }

    #[test]
    fn proc_values_parse() {
        assert_eq!(parse("128\n"), Some(128));
        assert_eq!(parse("4096\t87380\n"), None);
        let p = proc_path(Path::new("/proc/sys"), "fs.inotify.max_user_instances");
        assert_eq!(p, Path::new("/proc/sys/fs/inotify/max_user_instances"));
    }
}
