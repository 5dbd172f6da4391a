//! Containarium: per-user Incus development containers behind locked-down
//! SSH jump accounts. See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod activity;
pub mod authlog;
pub mod cli;
pub mod cloud_init;
pub mod cohort;
pub mod config;
pub mod error;
pub mod exec;
pub mod fail2ban;
pub mod files;
pub mod incus;
pub mod keys;
pub mod lock;
pub mod names;
pub mod network;
pub mod plan;
pub mod retry;
pub mod size;
pub mod sshd;
pub mod sysctl;
pub mod time;
pub mod ui;

/// A captured real output in tests/fixtures, for the unit tests.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
