//! `containarium start|stop|restart USER`.

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// User name
    user: UserName,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Power {
    Start,
    Stop,
    Restart,
}

impl PowerArgs {
    pub fn run(self, env: &Env, power: Power) -> Result<()> {
        let lock = super::lock(env, &format!("{power:?} {}", self.user).to_lowercase())?;
        let instance = super::managed(env, &self.user)?;
        let name = instance.name.clone();
        let mut plan = Plan::default();
        let verb = match power {
            Power::Start if instance.is_running() => None,
            Power::Stop if !instance.is_running() => None,
            Power::Start => Some("start"),
            Power::Stop => Some("stop"),
            Power::Restart if instance.is_running() => Some("restart"),
            Power::Restart => Some("start"),
        };
        match verb {
            Some(verb) => {
                plan.push(
                    Step::new(
                        format!("{verb} {name}"),
                        Action::run(env.incus.cmd([verb, name.as_str()])),
                    )
                    .releases_lock(),
                );
                if verb != "stop" {
                    let to = super::endpoints(env).of(&instance)?;
                    plan.push(super::create::sshd_ready_step(Some(to)));
                }
            }
            None => plan.unchanged(format!("{name} is {}", instance.status.to_lowercase())),
        }
        if self.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
        plan.apply_holding(lock, &mut Facts::default())
    }
}
