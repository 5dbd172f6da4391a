//! `containarium info USER`: one container in detail.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{Env, print_json};
use crate::accounts;
use crate::files;
use crate::incus::{Instance, key};
use crate::names::UserName;
use crate::size::human;

/// Show one user's container, limits, usage and keys
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// User name
    user: UserName,

    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl InfoArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let name = self.user.container();
        let instance = super::managed(env, &self.user)?;
        let key_text = files::read_optional(&env.paths.key_file(&self.user))?.unwrap_or_default();
        let (_, keys) = accounts::parse_jump_key_file(&key_text);
        let jump = match accounts::lookup(self.user.as_str())? {
            Some(account) if accounts::is_ours(&account)? => "present".to_string(),
            Some(_) => "a host account not made by containarium".to_string(),
            None => "missing".to_string(),
        };
        let uptime = uptime(&instance);
        let fields: Vec<(&str, serde_json::Value)> = vec![
            ("user", self.user.as_str().into()),
            ("container", name.clone().into()),
            ("state", super::list::state(&instance).into()),
            ("ipv4", instance.ipv4().or(instance.pinned_ipv4()).map(|ip| ip.to_string()).into()),
            ("disk_quota", instance.root_size().map(str::to_string).into()),
            ("disk_used", instance.disk_used().into()),
            ("memory_limit", instance.config_value("limits.memory").map(str::to_string).into()),
            ("memory_used", instance.memory_used().into()),
            ("cpu_limit", instance.config_value("limits.cpu").map(str::to_string).into()),
            ("uptime_seconds", uptime.map(|d| d.as_secs()).into()),
            ("autostart", instance.autostart().into()),
            ("template", instance.config_value(key::TEMPLATE).map(str::to_string).into()),
            ("created", instance.config_value(key::CREATED).map(str::to_string).into()),
            ("jump_account", jump.clone().into()),
            (
                "keys",
                keys.iter()
                    .map(|k| serde_json::json!({"fingerprint": k.fingerprint(), "comment": k.comment(), "type": k.kind()}))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        ];
        if self.json {
            print_json(&serde_json::Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ));
            return Ok(());
        }
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!("user:         {}", self.user);
        println!("container:    {name}");
        println!("state:        {}", super::list::state(&instance));
        println!(
            "ipv4:         {}",
            or_dash(
                instance
                    .ipv4()
                    .or(instance.pinned_ipv4())
                    .map(|ip| ip.to_string())
            )
        );
        println!(
            "disk:         {} used of {}",
            or_dash(instance.disk_used().map(human)),
            instance.root_size().unwrap_or("-")
        );
        println!(
            "memory:       {} used of {}",
            or_dash(instance.memory_used().map(human)),
            instance.config_value("limits.memory").unwrap_or("-")
        );
        println!(
            "cpu:          {}",
            instance.config_value("limits.cpu").unwrap_or("-")
        );
        println!("uptime:       {}", or_dash(uptime.map(format_duration)));
        println!(
            "autostart:    {}",
            if instance.autostart() { "yes" } else { "no" }
        );
        println!(
            "template:     {}",
            instance.config_value(key::TEMPLATE).unwrap_or("-")
        );
        println!(
            "created:      {}",
            instance.config_value(key::CREATED).unwrap_or("-")
        );
        println!("jump account: {} ({jump})", self.user);
        for key in &keys {
            println!(
                "key:          {} {} ({})",
                key.fingerprint(),
                key.comment(),
                key.kind()
            );
        }
        Ok(())
    }
}

/// How long the container's init has run: its start time in clock ticks
/// after boot (/proc/PID/stat field 22) against the host's uptime.
fn uptime(instance: &Instance) -> Option<Duration> {
    let pid = instance.state.as_ref()?.pid;
    if !instance.is_running() || pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let after = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(Duration::from_secs_f64(
        (host_uptime - start_ticks / ticks as f64).max(0.0),
    ))
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60) {
        (0, 0, m) => format!("{m}m {}s", secs % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (days, h, _) => format!("{days}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_secs(75)), "1m 15s");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 3600 + 120)),
            "3h 2m"
        );
        assert_eq!(
            format_duration(Duration::from_secs(2 * 86_400 + 5 * 3600)),
            "2d 5h"
        );
    }
}
