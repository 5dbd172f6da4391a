//! The bastion's OpenSSH server: our drop-in, its validation and reload.

use std::path::Path;

use crate::config::KEYS_DIR;
use crate::exec::Cmd;

/// First line of the drop-in; a file at our path without it is someone
/// else's and is never overwritten.
pub const MARKER: &str = "# Managed by containarium";

/// The drop-in. Everything is inside the Match block so it applies to jump
/// accounts only; sshd takes the first value it sees for each option, and
/// Debian's sshd_config includes sshd_config.d before its own settings.
pub fn dropin() -> String {
    format!(
        "{MARKER}: jump accounts (group containarium) may only open a tunnel
# to port 22 of their own container; their keys are in {KEYS_DIR}.
Match Group containarium
    AuthorizedKeysFile {KEYS_DIR}/%u
    AuthenticationMethods publickey
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    AllowTcpForwarding local
    AllowStreamLocalForwarding no
    PermitListen none
    GatewayPorts no
    PermitTTY no
    X11Forwarding no
    AllowAgentForwarding no
    PermitTunnel no
    PermitUserRC no
    ForceCommand /usr/sbin/nologin
"
    )
}

/// Whether sshd_config reads sshd_config.d at all.
pub fn includes_dropins(sshd_config: &str) -> bool {
    sshd_config.lines().any(|line| {
        let line = line.trim();
        line.get(..8)
            .is_some_and(|w| w.eq_ignore_ascii_case("include "))
            && line.contains("sshd_config.d")
    })
}

/// `sshd -t`: checks the whole configuration, drop-ins included.
pub fn validate(sshd_config: &Path) -> Cmd {
    Cmd::new("sshd").args(["-t", "-f", &sshd_config.to_string_lossy()])
}

/// What `systemctl reload ssh` does, for hosts with or without systemd.
pub fn reload(pid: i32) -> Cmd {
    Cmd::new("kill").args(["-HUP", &pid.to_string()])
}

/// The running sshd's PID, from its pid file, if that process is alive.
pub fn running_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
