//! Progress on stderr: a spinner per step on a terminal, one plain line per
//! step otherwise (pipes, CI, Terraform startup scripts). stdout is left to
//! results.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

thread_local! {
    /// What this thread's lines start with: the user, while `apply` works
    /// on several at once.
    static PREFIX: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs `work` with every line of progress it makes starting `prefix` (and
/// no spinner: lines of several threads interleave).
pub fn with_prefix<T>(prefix: &str, work: impl FnOnce() -> T) -> T {
    PREFIX.with(|p| *p.borrow_mut() = prefix.to_string());
    let result = work();
    PREFIX.with(|p| p.borrow_mut().clear());
    result
}

/// Runs `work` as a step called `synopsis`, reporting it and its duration.
pub fn step<T, E>(synopsis: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let start = Instant::now();
    let alone = PREFIX.with(|p| p.borrow().is_empty());
    let spinner = (alone && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap());
        bar.set_message(synopsis.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let result = work();
    let outcome = if result.is_ok() { "done" } else { "failed" };
    let line = format!("{synopsis}... {outcome} ({})", seconds(start.elapsed()));
    match spinner {
        // The line that stays on screen carries its own duration.
        Some(bar) => {
            bar.set_style(ProgressStyle::with_template("{msg}").unwrap());
            bar.finish_with_message(line);
        }
        None => note(&line),
    }
    result
}

/// A line of progress that is not a timed step. Progress is best effort:
/// a closed stderr (`… 2>&1 | grep -q`) must not kill a run half-way, as
/// `eprintln!` would.
pub fn note(message: &str) {
    use std::io::Write;
    let prefix = PREFIX.with(|p| p.borrow().clone());
    let _ = writeln!(std::io::stderr(), "{prefix}{message}");
}

pub fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}
