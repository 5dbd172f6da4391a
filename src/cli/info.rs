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

/// What `info` reports, gathered once and printed as JSON or text.
#[derive(Debug, serde::Serialize)]
struct Info {
    user: String,
    container: String,
    state: String,
    ipv4: Option<String>,
    /// On a cluster: its member, and that member's status when not online.
    location: Option<String>,
    /// Where the jump account's tunnel goes (`ADDRESS:PORT`).
    endpoint: Option<String>,
    disk_quota: Option<String>,
    disk_used: Option<u64>,
    memory_limit: Option<String>,
    memory_used: Option<u64>,
    cpu_limit: Option<String>,
    uptime_seconds: Option<u64>,
    autostart: bool,
    template: Option<String>,
    created: Option<String>,
    expires: Option<String>,
    idle_stop: Option<String>,
    /// The last time `reap` saw an SSH connection.
    last_active: Option<String>,
    jump_account: &'static str,
    keys: Vec<KeyInfo>,
}

#[derive(Debug, serde::Serialize)]
struct KeyInfo {
    fingerprint: String,
    #[serde(rename = "type")]
    kind: String,
    comment: String,
}

impl InfoArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let instance = super::managed(env, &self.user)?;
        let key_text = files::read_optional(&env.paths.key_file(&self.user))?.unwrap_or_default();
        let (_, keys) = accounts::parse_jump_key_file(&key_text);
        let config = |key: &str| instance.config_value(key).map(str::to_string);
        let info = Info {
            user: self.user.to_string(),
            container: instance.name.clone(),
            state: super::list::state(&instance),
            // The pinned address: what the jump account may reach. What the
            // guest reports is the tenant's to choose.
            ipv4: instance.pinned_ipv4().map(|ip| ip.to_string()),
            location: match instance.member() {
                Some(member) => Some(super::list::location(member, &env.incus.members()?)),
                None => None,
            },
            endpoint: match super::endpoints(env).of(&instance) {
                Ok(to) => Some(to.to_string()),
                Err(err) => {
                    crate::ui::note(&format!("warning: {err:#}"));
                    None
                }
            },
            disk_quota: instance.root_size().map(str::to_string),
            disk_used: instance.disk_used(),
            memory_limit: config("limits.memory"),
            memory_used: instance.memory_used(),
            cpu_limit: config("limits.cpu"),
            uptime_seconds: uptime(&instance).map(|d| d.as_secs()),
            autostart: instance.autostart(),
            template: config(key::TEMPLATE),
            created: config(key::CREATED),
            expires: config(key::EXPIRES),
            idle_stop: config(key::IDLE_STOP),
            last_active: config(key::LAST_ACTIVE),
            jump_account: match accounts::lookup(self.user.as_str())? {
                Some(account) if accounts::is_ours(&account)? => "present",
                Some(_) => "a host account not made by containarium",
                None => "missing",
            },
            keys: keys
                .iter()
                .map(|k| KeyInfo {
                    fingerprint: k.fingerprint(),
                    kind: k.kind().into(),
                    comment: k.comment().into(),
                })
                .collect(),
        };
        if self.json {
            print_json(&serde_json::to_value(&info)?);
        } else {
            crate::out!("{}", text(&info));
        }
        Ok(())
    }
}

fn text(i: &Info) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "user:         {}\ncontainer:    {}\nstate:        {}\nipv4:         {}\n\
         disk:         {} used of {}\nmemory:       {} used of {}\ncpu:          {}\n\
         uptime:       {}\nautostart:    {}\ntemplate:     {}\ncreated:      {}\n\
         expires:      {}\nidle-stop:    {}\nlast active:  {}\njump account: {} ({})\n",
        i.user,
        i.container,
        i.state,
        dash(&i.ipv4),
        dash(&i.disk_used.map(human)),
        dash(&i.disk_quota),
        dash(&i.memory_used.map(human)),
        dash(&i.memory_limit),
        dash(&i.cpu_limit),
        dash(
            &i.uptime_seconds
                .map(|s| format_duration(Duration::from_secs(s)))
        ),
        if i.autostart { "yes" } else { "no" },
        dash(&i.template),
        dash(&i.created),
        dash(&i.expires),
        dash(&i.idle_stop),
        dash(&i.last_active),
        i.user,
        i.jump_account,
    );
    if let Some(location) = &i.location {
        out.push_str(&format!(
            "location:     {location}\nendpoint:     {}\n",
            dash(&i.endpoint)
        ));
    }
    for k in &i.keys {
        out.push_str(&format!(
            "key:          {} {} ({})\n",
            k.fingerprint, k.comment, k.kind
        ));
    }
    out
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
    fn text_lists_every_field() {
        let info = Info {
            user: "alice".into(),
            container: "alice-container".into(),
            state: "running".into(),
            ipv4: Some("10.197.83.7".into()),
            location: None,
            endpoint: Some("10.197.83.7:22".into()),
            disk_quota: Some("20GiB".into()),
            disk_used: Some(3 << 29),
            memory_limit: Some("2GiB".into()),
            memory_used: None,
            cpu_limit: Some("2".into()),
            uptime_seconds: Some(3720),
            autostart: true,
            template: Some("default".into()),
            created: None,
            expires: Some("2027-01-31T00:00:00Z".into()),
            idle_stop: Some("2h".into()),
            last_active: None,
            jump_account: "present",
            keys: vec![KeyInfo {
                fingerprint: "SHA256:x".into(),
                kind: "ssh-ed25519".into(),
                comment: "a@laptop".into(),
            }],
        };
        insta::assert_snapshot!(text(&info), @r"
        user:         alice
        container:    alice-container
        state:        running
        ipv4:         10.197.83.7
        disk:         1.5GiB used of 20GiB
        memory:       - used of 2GiB
        cpu:          2
        uptime:       1h 2m
        autostart:    yes
        template:     default
        created:      -
        expires:      2027-01-31T00:00:00Z
        idle-stop:    2h
        last active:  -
        jump account: alice (present)
        key:          SHA256:x a@laptop (ssh-ed25519)
        ");
    }

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
