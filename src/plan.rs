//! Plans: what a mutating verb will do, computed from read-only probes
//! before anything changes, then either printed (`--dry-run`) or applied.
//!
//! A [`Step`] has a one-line synopsis, an [`Action`] and optionally the
//! action that undoes it. Applying runs the steps in order; when one fails
//! (or SIGINT/SIGTERM arrives), the undo actions of the steps already done
//! run in reverse and the original error is returned. Steps a probe found
//! satisfied are not in the plan at all but listed as `unchanged`, which is
//! what makes a rerun resume.
//!
//! Some arguments are only known while applying (a container's address is
//! learned from the container). Actions are therefore built from [`Facts`]
//! at the moment they run, and `--dry-run` shows a placeholder such as
//! `<ipv4>` for what is not known yet.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result, bail};

use crate::exec::{self, Cmd};
use crate::files::FileWrite;
use crate::lock::Lock;
use crate::ui;

/// What steps learn while applying.
#[derive(Debug, Default)]
pub struct Facts {
    pub ipv4: Option<Ipv4Addr>,
    /// Where the container's sshd is reached from the bastion: its address,
    /// port 22, or on a cluster its member's published port.
    pub endpoint: Option<SocketAddrV4>,
}

impl Facts {
    /// The address, or the placeholder `--dry-run` prints in its place.
    pub fn ipv4_text(&self) -> String {
        self.ipv4
            .map_or_else(|| "<ipv4>".to_string(), |ip| ip.to_string())
    }

    /// The endpoint as `ADDRESS:PORT`, or the dry run's placeholder.
    pub fn endpoint_text(&self) -> String {
        self.endpoint
            .map_or_else(|| "<endpoint>".to_string(), |to| to.to_string())
    }
}

type Build<T> = Box<dyn Fn(&Facts) -> T>;
type Check = Box<dyn Fn(&mut Facts) -> Result<()>>;

pub enum Action {
    Run(Build<Cmd>),
    /// A command that edits /etc/passwd or /etc/group: run under our lock and
    /// retried while another program holds the account database's lock.
    EditAccounts(Cmd),
    Write(Build<FileWrite>),
    Remove(PathBuf),
    /// A command run by a function that knows its known failures (a brief
    /// retry, a fix-up before a second try); described as the command.
    RunVia {
        cmd: Cmd,
        run: Box<dyn Fn() -> Result<()>>,
    },
    /// A wait or a verification, described in words.
    Check {
        description: String,
        check: Check,
    },
}

impl Action {
    pub fn run(cmd: Cmd) -> Action {
        Action::Run(Box::new(move |_| cmd.clone()))
    }

    pub fn run_with(build: impl Fn(&Facts) -> Cmd + 'static) -> Action {
        Action::Run(Box::new(build))
    }

    pub fn run_via(cmd: Cmd, run: impl Fn() -> Result<()> + 'static) -> Action {
        Action::RunVia {
            cmd,
            run: Box::new(run),
        }
    }

    pub fn write(file: FileWrite) -> Action {
        Action::Write(Box::new(move |_| file.clone()))
    }

    pub fn check(
        description: impl Into<String>,
        check: impl Fn(&mut Facts) -> Result<()> + 'static,
    ) -> Action {
        Action::Check {
            description: description.into(),
            check: Box::new(check),
        }
    }

    fn describe(&self, facts: &Facts) -> String {
        match self {
            Action::Run(build) => build(facts).to_string(),
            Action::EditAccounts(cmd) | Action::RunVia { cmd, .. } => cmd.to_string(),
            Action::Write(build) => build(facts).to_string(),
            Action::Remove(path) => format!("rm -f {}", exec::shell_quote(&path.to_string_lossy())),
            Action::Check { description, .. } => format!("# {description}"),
        }
    }

    fn apply(&self, ctx: &ApplyCtx, facts: &mut Facts) -> Result<()> {
        match self {
            Action::Run(build) => {
                exec::run(&build(facts))?;
            }
            Action::EditAccounts(cmd) => {
                if ctx.holds_lock() {
                    crate::accounts::edit_held(cmd)?
                } else {
                    crate::accounts::edit(&ctx.lock_path, cmd)?
                }
            }
            Action::RunVia { run, .. } => run()?,
            Action::Write(build) => build(facts).apply()?,
            Action::Remove(path) => match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("removing {}", path.display()));
                }
            },
            Action::Check { check, .. } => check(facts)?,
        }
        Ok(())
    }
}

pub struct Step {
    pub synopsis: String,
    pub action: Action,
    pub undo: Option<Action>,
    /// The undo also runs when this step itself fails: for a step that
    /// makes something the plan probed absent under our lock, so whatever
    /// a failed or interrupted attempt left is ours.
    pub undo_if_failed: bool,
    /// Our lock is released once this step is done: what follows (waiting
    /// for a boot, say) need not hold other runs up.
    pub releases_lock: bool,
}

impl Step {
    pub fn new(synopsis: impl Into<String>, action: Action) -> Step {
        Step {
            synopsis: synopsis.into(),
            action,
            undo: None,
            undo_if_failed: false,
            releases_lock: false,
        }
    }

    pub fn undo(mut self, undo: Action) -> Step {
        self.undo = Some(undo);
        self
    }

    pub fn undo_if_failed(mut self) -> Step {
        self.undo_if_failed = true;
        self
    }

    pub fn releases_lock(mut self) -> Step {
        self.releases_lock = true;
        self
    }

    /// Writes `file` unless it already holds exactly that; undone by
    /// putting back what was there (or removing it if nothing was).
    pub fn write_file(synopsis: impl Into<String>, file: FileWrite) -> Result<Option<Step>> {
        let previous = crate::files::read_optional(&file.path)?;
        if previous.as_deref() == Some(file.contents.as_str()) {
            return Ok(None);
        }
        let undo = match previous {
            Some(contents) => Action::write(FileWrite {
                contents,
                ..file.clone()
            }),
            None => Action::Remove(file.path.clone()),
        };
        Ok(Some(Step::new(synopsis, Action::write(file)).undo(undo)))
    }
}

/// What applying needs besides the steps.
struct ApplyCtx {
    lock_path: PathBuf,
    /// Our lock, while this plan holds it.
    held: RefCell<Option<Lock>>,
    /// The caller holds our lock for the whole of this plan.
    held_by_caller: bool,
}

impl ApplyCtx {
    fn holds_lock(&self) -> bool {
        self.held_by_caller || self.held.borrow().is_some()
    }
}

#[derive(Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Synopses of steps a probe found already satisfied.
    pub unchanged: Vec<String>,
}

impl Plan {
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    pub fn unchanged(&mut self, what: impl Into<String>) {
        self.unchanged.push(what.into());
    }

    /// The plan with no step undone on failure: for shared host setup
    /// (the group, the key directory, the drop-in) that a verb makes on
    /// the way, which another run may rely on as soon as it exists.
    pub fn kept_on_failure(mut self) -> Plan {
        for step in &mut self.steps {
            step.undo = None;
        }
        self
    }

    /// `other`'s steps after ours.
    pub fn append(&mut self, other: Plan) {
        self.steps.extend(other.steps);
        self.unchanged.extend(other.unchanged);
    }

    /// The plan as `--dry-run` prints it: each step's synopsis, then its
    /// exact commands, indented.
    pub fn describe(&self) -> String {
        let facts = Facts::default();
        let mut out = String::new();
        for what in &self.unchanged {
            writeln!(out, "unchanged: {what}").unwrap();
        }
        for (index, step) in self.steps.iter().enumerate() {
            writeln!(out, "{}. {}", index + 1, step.synopsis).unwrap();
            // Only the first line is indented: later lines belong to a
            // quoted argument or a here-document and must paste unchanged.
            writeln!(out, "    {}", step.action.describe(&facts)).unwrap();
        }
        out
    }

    /// Applies every step; on failure undoes what was done, in reverse.
    /// Account edits take our lock each.
    pub fn apply(self, lock_path: PathBuf, facts: &mut Facts) -> Result<()> {
        self.apply_in(
            ApplyCtx {
                lock_path,
                held: RefCell::new(None),
                held_by_caller: false,
            },
            facts,
        )
    }

    /// [`Plan::apply`] while the caller holds `lock` (for a verb that
    /// applies several plans from one probe).
    pub fn apply_under(self, lock: &Lock, facts: &mut Facts) -> Result<()> {
        self.apply_in(
            ApplyCtx {
                lock_path: lock.path().to_path_buf(),
                held: RefCell::new(None),
                held_by_caller: true,
            },
            facts,
        )
    }

    /// [`Plan::apply`] for a plan made under `lock`, which is held until
    /// the step that releases it (or the end) and taken again for undoing.
    pub fn apply_holding(self, lock: Lock, facts: &mut Facts) -> Result<()> {
        self.apply_in(
            ApplyCtx {
                lock_path: lock.path().to_path_buf(),
                held: RefCell::new(Some(lock)),
                held_by_caller: false,
            },
            facts,
        )
    }

    fn apply_in(self, ctx: ApplyCtx, facts: &mut Facts) -> Result<()> {
        for what in &self.unchanged {
            ui::note(&format!("{what}: unchanged"));
        }
        let _guard = SignalGuard::install();
        let mut done: Vec<(String, Option<Action>)> = Vec::new();
        for step in self.steps {
            // Arrived before this plan began (one of several a verb
            // applies): nothing more is started.
            if let Some(signal) = interrupted_by() {
                rollback(&ctx, facts, done);
                bail!("interrupted by {signal} before: {}", step.synopsis);
            }
            let result =
                ui::step(&step.synopsis, || step.action.apply(&ctx, facts)).and_then(|()| {
                    if let Some(signal) = interrupted_by() {
                        bail!("interrupted by {signal}")
                    }
                    Ok(())
                });
            if let Err(err) = result {
                // The failed step itself is not undone unless it says so:
                // it may have failed because what it would make already
                // existed, and that is not ours to remove.
                if step.undo_if_failed {
                    done.push((step.synopsis.clone(), step.undo));
                }
                rollback(&ctx, facts, done);
                return Err(err.context(format!("{} failed", step.synopsis)));
            }
            if step.releases_lock {
                ctx.held.borrow_mut().take();
            }
            done.push((step.synopsis, step.undo));
        }
        Ok(())
    }
}

fn rollback(ctx: &ApplyCtx, facts: &mut Facts, done: Vec<(String, Option<Action>)>) {
    // Undoing must not interleave with another run either.
    if !ctx.holds_lock()
        && let Ok(lock) = crate::lock::acquire(&ctx.lock_path, "rollback")
    {
        *ctx.held.borrow_mut() = Some(lock);
    }
    for (synopsis, undo) in done.into_iter().rev() {
        let Some(undo) = undo else { continue };
        let result = ui::step(&format!("undoing: {synopsis}"), || undo.apply(ctx, facts));
        if let Err(err) = result.or_else(|err| if already_gone(&err) { Ok(()) } else { Err(err) }) {
            ui::note(&format!(
                "warning: could not undo \"{synopsis}\": {err:#}; run `{}` by hand",
                undo.describe(facts)
            ));
        }
    }
}

/// Whether an undo failed only because what it removes is gone already
/// (another cleanup got there first): deleting the absent succeeds.
fn already_gone(err: &anyhow::Error) -> bool {
    let Some(err) = err.downcast_ref::<exec::CmdError>() else {
        return false;
    };
    match err.program.as_str() {
        // userdel(8), groupdel(8): 6 = the user or group does not exist.
        "userdel" | "groupdel" => err.code == Some(6),
        "incus" => err.stderr_contains("not found"),
        _ => false,
    }
}

/// The signal that arrived while a guard was alive (0: none), for the exit
/// status: 128 + its number, as a shell reports a command it ended.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_interrupt(signal: nix::libc::c_int) {
    INTERRUPTED.store(signal, Ordering::SeqCst);
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived while a guard was alive.
pub fn interrupted() -> bool {
    interrupted_by().is_some()
}

/// Which of them arrived (the last one).
pub fn interrupted_by() -> Option<nix::sys::signal::Signal> {
    nix::sys::signal::Signal::try_from(INTERRUPTED.load(Ordering::SeqCst)).ok()
}

type Dispositions = Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>;

/// How many guards are alive (plans apply in several threads under
/// `apply`), and the dispositions the first one replaced.
static GUARDS: std::sync::Mutex<(usize, Dispositions)> = std::sync::Mutex::new((0, Vec::new()));

/// While alive, SIGINT, SIGTERM and SIGHUP only set a flag, so a plan stops
/// between steps and undoes what it did instead of dying half-way.
pub struct SignalGuard(());

impl SignalGuard {
    pub fn install() -> SignalGuard {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        if guards.0 == 0 {
            let action = SigAction::new(
                SigHandler::Handler(note_interrupt),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                // SAFETY: the handler only stores to an atomic.
                if let Ok(old) = unsafe { sigaction(signal, &action) } {
                    guards.1.push((signal, old));
                }
            }
        }
        guards.0 += 1;
        SignalGuard(())
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        guards.0 -= 1;
        if guards.0 == 0 {
            for (signal, old) in guards.1.drain(..) {
                // SAFETY: restores the disposition we replaced.
                let _ = unsafe { nix::sys::signal::sigaction(signal, &old) };
            }
        }
    }
}
