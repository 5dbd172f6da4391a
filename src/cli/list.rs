//! `containarium list`: the containers Containarium manages, from a single
//! `incus list --format json`.

use anyhow::Result;
use clap::Args;

use super::{Env, print_json};
use crate::incus::{Instance, Member, key};

/// List the containers containarium manages
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let mut rows: Vec<Row> = env.incus.instances()?.iter().filter_map(Row::of).collect();
        // Only a cluster costs the extra call: which members are down.
        let clustered = rows.iter().any(|r| r.location.is_some());
        if clustered {
            let members = env.incus.members()?;
            for row in &mut rows {
                if let Some(member) = &row.location {
                    row.location = Some(location(member, &members));
                }
            }
            for down in members.iter().filter(|m| !m.is_online()) {
                crate::ui::note(&format!(
                    "warning: cluster member {} is {}: its containers' state is not known{}",
                    down.server_name,
                    down.status.to_lowercase(),
                    if down.message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", down.message)
                    }
                ));
            }
        }
        if self.json {
            print_json(&serde_json::Value::Array(
                rows.iter().map(Row::to_json).collect(),
            ));
        } else {
            crate::out!("{}", table(&rows, clustered));
        }
        Ok(())
    }
}

/// `member`, with its status when it is not online: `m3 (offline)`.
pub fn location(member: &str, members: &[Member]) -> String {
    match members.iter().find(|m| m.server_name == member) {
        Some(m) if !m.is_online() => format!("{member} ({})", m.status.to_lowercase()),
        _ => member.to_string(),
    }
}

/// One managed container, as `list` shows it.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub user: String,
    pub state: String,
    pub ipv4: String,
    pub disk: String,
    pub cpu: String,
    pub memory: String,
    pub autostart: bool,
    /// When it ends (`reap` stops it), or "-".
    pub expires: String,
    /// Its idle-stop (`reap` stops it after this long without SSH), or "-".
    pub idle: String,
    /// On a cluster, its member (see [`location`]).
    pub location: Option<String>,
}

impl Row {
    /// `None` for instances we did not make.
    pub fn of(instance: &Instance) -> Option<Row> {
        let user = instance.owner()?.to_string();
        Some(Row {
            name: instance.name.clone(),
            user,
            state: state(instance),
            // Pinned, never what the guest reports (the tenant's to choose).
            ipv4: instance
                .pinned_ipv4()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into()),
            disk: instance.root_size().unwrap_or("-").to_string(),
            cpu: instance
                .config_value("limits.cpu")
                .unwrap_or("-")
                .to_string(),
            memory: instance
                .config_value("limits.memory")
                .unwrap_or("-")
                .to_string(),
            autostart: instance.autostart(),
            expires: instance
                .config_value(key::EXPIRES)
                .unwrap_or("-")
                .to_string(),
            idle: instance
                .config_value(key::IDLE_STOP)
                .unwrap_or("-")
                .to_string(),
            location: instance.member().map(str::to_string),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "user": self.user,
            "state": self.state,
            "ipv4": (self.ipv4 != "-").then_some(&self.ipv4),
            "disk": self.disk,
            "cpu": self.cpu,
            "memory": self.memory,
            "autostart": self.autostart,
            "expires": (self.expires != "-").then_some(&self.expires),
            "idle_stop": (self.idle != "-").then_some(&self.idle),
            "location": self.location,
        })
    }
}

/// `running`/`stopped`, or `pending` while provisioning has not finished
/// (or was interrupted: `delete` cleans such a container up).
pub fn state(instance: &Instance) -> String {
    match instance.config_value(key::STATE) {
        Some("ready") | None => instance.status.to_lowercase(),
        Some(other) => other.to_string(),
    }
}

/// The table; on a cluster with a LOCATION column.
fn table(rows: &[Row], clustered: bool) -> String {
    let header = [
        "NAME",
        "USER",
        "STATE",
        "IPV4",
        "DISK",
        "CPU",
        "MEMORY",
        "AUTOSTART",
        "EXPIRES",
        "IDLE",
        "LOCATION",
    ];
    let cells: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.user.clone(),
                r.state.clone(),
                r.ipv4.clone(),
                r.disk.clone(),
                r.cpu.clone(),
                r.memory.clone(),
                if r.autostart { "yes" } else { "no" }.to_string(),
                r.expires.clone(),
                r.idle.clone(),
                r.location.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let columns = if clustered { 11 } else { 10 };
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header.map(String::from)[..columns]);
    for row in &cells {
        out.push_str(&line(&row[..columns]));
    }
    out
}
