//! `containarium move USER --target MEMBER`: puts a user's container on
//! another cluster member, with their way in following it.
//!
//! Stop, `incus move`, point the published sshd (`incus::PROXY_DEVICE`) at
//! the new member's address, rewrite the jump key file for it, start, and
//! wait until sshd answers there. Any failure moves everything back, in
//! reverse. The port stays (it follows from the address, which the
//! container keeps); the other bastions' key files follow on their next
//! `sync-accounts`.

use std::net::SocketAddrV4;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Env;
use crate::accounts;
use crate::error::Refused;
use crate::files::FileWrite;
use crate::incus::PROXY_DEVICE;
use crate::names::UserName;
use crate::network;
use crate::plan::{Action, Facts, Plan, Step};

/// Move a user's container to another cluster member
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// User name
    user: UserName,

    /// The cluster member to move it to
    #[arg(long, value_name = "MEMBER")]
    target: String,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl MoveArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let user = &self.user;
        let (_user_lock, lock) = super::lock_user(env, user, &format!("move {user}"))?;
        let Some(plan) = plan(env, user, &self.target)? else {
            crate::outln!(
                "{} is on {} already; nothing changed",
                user.container(),
                self.target
            );
            return Ok(());
        };
        if self.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
        plan.apply_holding(lock, &mut Facts::default())?;
        crate::outln!("moved {} to {}", user.container(), self.target);
        Ok(())
    }
}

/// The plan, or `None` when the container is on `target` already.
fn plan(env: &Env, user: &UserName, target: &str) -> Result<Option<Plan>> {
    let incus = &env.incus;
    let instance = super::managed(env, user)?;
    let name = instance.name.as_str();
    let Some(from) = instance.member() else {
        bail!(Refused(format!(
            "{name} is not on an Incus cluster: there is nowhere to move it"
        )));
    };
    let members = incus.members()?;
    let Some(to) = members.iter().find(|m| m.server_name == target) else {
        let names: Vec<&str> = members.iter().map(|m| m.server_name.as_str()).collect();
        bail!(Refused(format!(
            "no cluster member {target:?} (members: {}); nothing changed",
            names.join(", ")
        )));
    };
    if from == target {
        return Ok(None);
    }
    if !to.is_online() {
        bail!(Refused(format!(
            "cluster member {target} is {}; nothing changed",
            to.status.to_lowercase()
        )));
    }
    let ip = instance
        .pinned_ipv4()
        .with_context(|| format!("{name} has no pinned address"))?;
    let net = super::tenant_net(env)?;
    let port = network::proxy_port(&net, ip)?;
    // Where it is published now; a device that is not containarium's is
    // refused rather than re-pointed (one that is missing is added).
    let endpoints = network::Endpoints::new(incus, || Ok(net.clone()));
    let old = match instance.expanded_devices.contains_key(PROXY_DEVICE) {
        true => Some(endpoints.of(&instance)?),
        false => None,
    };
    let new = SocketAddrV4::new(to.address()?, port);
    let keys = instance.keys()?;

    let mut plan = Plan::default();
    let running = instance.is_running();
    if running {
        plan.push(
            Step::new(
                format!("stop {name}"),
                Action::run(incus.cmd(["stop", name])),
            )
            .undo(Action::run(incus.cmd(["start", name]))),
        );
    }
    plan.push(
        Step::new(
            format!("move {name} from {from} to {target}"),
            Action::run(incus.cmd(["move", name, "--target", target])),
        )
        .undo(Action::run(incus.cmd(["move", name, "--target", from]))),
    );
    let has_device = instance.expanded_devices.contains_key(PROXY_DEVICE);
    let (publish, unpublish) = match (has_device, old) {
        (true, Some(old)) => (
            incus.proxy_listen_cmd(name, new),
            incus.proxy_listen_cmd(name, old),
        ),
        (true, None) => (
            incus.proxy_listen_cmd(name, new),
            incus.proxy_remove_cmd(name),
        ),
        (false, _) => (
            incus.proxy_add_cmd(name, new, ip),
            incus.proxy_remove_cmd(name),
        ),
    };
    plan.push(
        Step::new(
            format!("publish {name}'s sshd on {target} at {new}"),
            Action::run(publish),
        )
        .undo(Action::run(unpublish)),
    );
    let write = FileWrite {
        path: env.paths.key_file(user),
        mode: 0o644,
        contents: accounts::jump_key_file(&new.to_string(), &keys),
    };
    if let Some(step) = Step::write_file(format!("point {user}'s jump keys at {new}"), write)? {
        plan.push(step);
    }
    if running {
        plan.push(
            Step::new(
                format!("start {name}"),
                Action::run(incus.cmd(["start", name])),
            )
            .undo(Action::run(incus.cmd(["stop", name]))),
        );
        plan.push(super::create::sshd_ready_step(Some(new)));
    }
    Ok(Some(plan))
}
