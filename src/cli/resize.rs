//! `containarium resize USER`: disk, CPU, memory and process limits,
//! changed live.

use anyhow::Result;
use clap::Args;

use super::{Env, print_json};
use crate::error::Refused;
use crate::incus::Instance;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};
use crate::size::{ByteSize, human};

/// Change a container's disk, CPU, memory or process limits, live
#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// User name
    user: UserName,

    #[command(flatten)]
    limits: super::LimitArgs,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print before and after as JSON
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

impl ResizeArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let l = &self.limits;
        if l.disk.is_none() && l.cpu.is_none() && l.memory.is_none() && l.processes.is_none() {
            return Err(Refused(
                "nothing to change: give --disk, --cpu, --memory or --processes".into(),
            )
            .into());
        }
        let lock = super::lock(env, &format!("resize {}", self.user))?;
        let before = super::managed(env, &self.user)?;
        let plan = self.plan(env, &before)?;
        if self.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
        plan.apply_holding(lock, &mut Facts::default())?;
        let after = super::managed(env, &self.user)?;
        let (b, a) = (limits(&before), limits(&after));
        if self.json {
            print_json(&serde_json::json!({ "user": self.user.as_str(), "before": b, "after": a }));
        } else {
            for what in ["disk", "cpu", "memory", "processes"] {
                crate::outln!(
                    "{what:<9} {} -> {}",
                    b[what].as_str().unwrap_or("-"),
                    a[what].as_str().unwrap_or("-")
                );
            }
        }
        Ok(())
    }

    fn plan(&self, env: &Env, instance: &Instance) -> Result<Plan> {
        let limits = &self.limits;
        let (disk, cpu, memory) = (limits.disk, limits.cpu, limits.memory);
        plan(env, instance, disk, cpu, memory, limits.processes)
    }
}

/// The steps that set the limits given, live; refuses to shrink below what
/// is in use. `apply` changes limits through this too.
pub(super) fn plan(
    env: &Env,
    instance: &Instance,
    disk: Option<ByteSize>,
    cpu: Option<u32>,
    memory: Option<ByteSize>,
    processes: Option<u32>,
) -> Result<Plan> {
    let name = instance.name.as_str();
    let mut plan = Plan::default();
    if let Some(disk) = disk {
        if let Some(used) = instance.disk_used()
            && disk.bytes() < used
        {
            return Err(Refused(format!(
                "{name} uses {} of disk; it cannot shrink to {disk}",
                human(used)
            ))
            .into());
        }
        let verb = instance.device_verb("root");
        plan.push(Step::new(
            format!("set the disk quota to {disk}"),
            Action::run(
                env.incus
                    .cmd(["config", "device", verb, name, "root"])
                    .arg(format!("size={disk}")),
            ),
        ));
    }
    if let Some(memory) = memory
        && let Some(used) = instance.memory_used()
        && memory.bytes() < used
    {
        return Err(Refused(format!(
            "{name} uses {} of memory; it cannot shrink to {memory}",
            human(used)
        ))
        .into());
    }
    let mut limits = Vec::new();
    if let Some(cpu) = cpu {
        limits.push(format!("limits.cpu={cpu}"));
    }
    if let Some(memory) = memory {
        limits.push(format!("limits.memory={memory}"));
    }
    // Live too (the pids cgroup): a container above it keeps its processes
    // and cannot start more until below.
    if let Some(processes) = processes {
        limits.push(format!("limits.processes={processes}"));
    }
    if !limits.is_empty() {
        plan.push(Step::new(
            format!("set {}", limits.join(" ")),
            Action::run(env.incus.cmd(["config", "set", name]).args(limits)),
        ));
    }
    Ok(plan)
}

fn limits(instance: &Instance) -> serde_json::Value {
    serde_json::json!({
        "disk": instance.root_size(),
        "cpu": instance.config_value("limits.cpu"),
        "memory": instance.config_value("limits.memory"),
        "processes": instance.config_value("limits.processes"),
    })
}
