//! Whether anyone is using a container: established TCP connections to its
//! port 22, seen from the bastion (`ss`, the jump accounts' forwards) and
//! from inside its network namespace (`/proc/PID/net/tcp` of its init, read
//! on the host: no exec into the container).
//!
//! Both are the kernel's own tables; a tenant can make their container look
//! busy (an open connection to its own sshd), never a neighbour's.

use std::net::SocketAddrV4;
use std::path::Path;

use anyhow::{Context, Result};

use crate::exec::{self, Cmd};

/// `ss` listing the bastion's established TCP connections (to port 22 of
/// containers; on a cluster, to their members' published ports).
pub fn ss_cmd() -> Cmd {
    Cmd::new("ss").args(["-tnH", "state", "established"])
}

/// The established connections to `to` (a container's endpoint) in
/// `ss_cmd`'s output, whose columns are Recv-Q, Send-Q, local and peer
/// address.
pub fn bastion_connections(ss: &str, to: SocketAddrV4) -> usize {
    let wanted = to.to_string();
    ss.lines()
        .filter(|line| line.split_whitespace().nth(3) == Some(wanted.as_str()))
        .count()
}

/// The bastion's established connections to port 22, from `ss`.
pub fn read_bastion() -> Result<String> {
    Ok(exec::run(&ss_cmd())?.stdout)
}

/// Established connections whose local port is 22 in a `/proc/net/tcp` or
/// `tcp6` table (`sl local rem st ...`, addresses as `HEX:PORTHEX`, state
/// `01` for established).
pub fn inbound_ssh(table: &str) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3
                && fields[3] == "01"
                && fields[1].rsplit_once(':').map(|(_, port)| port) == Some("0016")
        })
        .count()
}

/// The connections to the sshd inside the container whose init is `pid`
/// (its network namespace), IPv4 and IPv6.
pub fn inside(proc_root: &Path, pid: i64) -> Result<usize> {
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let path = proc_root.join(format!("{pid}/net/{table}"));
        match std::fs::read_to_string(&path) {
            Ok(text) => count += inbound_ssh(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && table == "tcp6" => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_bastions_forwards_to_one_container() {
        // `ss -tnH state established` on a bastion with two forwards to .5,
        // one to .6, one to a cluster member's published port for .7, and
        // one session elsewhere.
        let ss = "0      0      10.197.83.1:41234   10.197.83.5:22\n\
                  0      0      10.197.83.1:41240   10.197.83.5:22\n\
                  0      0      10.197.83.1:50000   10.197.83.6:22\n\
                  0      0      10.0.0.11:50002     10.0.0.12:10007\n\
                  0      0      127.0.0.1:60000     127.0.0.1:22\n";
        let at = |s: &str| s.parse().unwrap();
        assert_eq!(bastion_connections(ss, at("10.197.83.5:22")), 2);
        assert_eq!(bastion_connections(ss, at("10.197.83.6:22")), 1);
        assert_eq!(bastion_connections(ss, at("10.0.0.12:10007")), 1);
        assert_eq!(bastion_connections(ss, at("10.0.0.12:22")), 0);
        assert_eq!(bastion_connections(ss, at("10.197.83.50:22")), 0);
        assert_eq!(bastion_connections("", at("10.197.83.5:22")), 0);
    }

    #[test]
    fn counts_established_connections_to_port_22_only() {
        // A container's /proc/net/tcp: sshd listening (0A), one session in
        // (01, local :0016), one connection out to a port 22 elsewhere
        // (remote :0016, not ours to count), a web server's client.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n\
   1: 0553C50A:0016 0153C50A:A1B2 01 00000000:00000000 02:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1\n\
   2: 0553C50A:C350 0753C50A:0016 01 00000000:00000000 02:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1\n\
   3: 0553C50A:1F90 0153C50A:D000 01 00000000:00000000 02:00000000 00000000    33        0 4 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(inbound_ssh(table), 1);
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0000000000000000FFFF00000553C50A:0016 0000000000000000FFFF00000153C50A:A1B4 01 00000000:00000000 02:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(inbound_ssh(tcp6), 1);
        assert_eq!(inbound_ssh(table.lines().next().unwrap()), 0);
    }

    #[test]
    fn reads_a_namespace_tables_from_proc() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("42/net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(
            net.join("tcp"),
            "sl local rem st\n 0: 0553C50A:0016 0153C50A:A1B2 01 x\n",
        )
        .unwrap();
        assert_eq!(inside(dir.path(), 42).unwrap(), 1);
        assert!(inside(dir.path(), 43).is_err());
    }
}
