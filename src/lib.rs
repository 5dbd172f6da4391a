//! Containarium: per-user Incus development containers behind locked-down
//! SSH jump accounts. See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod authlog;
pub mod cli;
pub mod cloud_init;
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
pub mod ui;
