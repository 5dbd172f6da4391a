//! Progress on stderr: a spinner per step on a terminal, one plain line per
//! step otherwise (pipes, CI, Terraform startup scripts). stdout is left to
//! results.
//!
//! [`styled`] is the one place that decides whether a stream may carry
//! terminal escapes (the spinner here, clap's coloured help in main.rs);
//! nothing else writes any.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

thread_local! {
    /// What this thread's lines start with: the user, while `apply` works
    /// on several at once.
    static PREFIX: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Whether output to `stream` may carry escapes (colour, a spinner that
/// redraws its line), from the environment.
pub fn styled(stream: &impl IsTerminal) -> bool {
    escapes_allowed(
        stream.is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// Only on a terminal, never when `NO_COLOR` is set to anything but the
/// empty string (no-color.org), and only on a terminal that says what it is
/// and is not `dumb` (as clap's own check: no TERM is no escapes).
pub fn escapes_allowed(terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty) && term.is_some_and(|t| t != "dumb")
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
    let spinner = (alone && styled(&std::io::stderr())).then(|| {
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

/// Writes to standard output, as `print!` would, without its panic. A
/// reader that left (`| head`) is not an error: the rest of the output is
/// dropped and the work goes on, since a run stopped half-way (by SIGPIPE
/// or a panic) would not undo. Any other failure (a full disk under
/// `> file`) is kept for [`stdout_result`].
pub fn out(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(err) = std::io::stdout().write_fmt(args) {
        keep_stdout_error(err);
    }
}

static STDOUT_ERROR: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);

fn keep_stdout_error(err: std::io::Error) {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        return;
    }
    let mut kept = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    kept.get_or_insert(err);
}

/// At exit: flushes standard output and returns the first failure to write
/// it that was not a reader leaving.
pub fn stdout_result() -> std::io::Result<()> {
    use std::io::Write;
    if let Err(err) = std::io::stdout().flush() {
        keep_stdout_error(err);
    }
    match STDOUT_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `print!` through [`out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::ui::out(format_args!($($arg)*)) };
}

/// `println!` through [`out`].
#[macro_export]
macro_rules! outln {
    () => { $crate::ui::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::ui::out(format_args!("{}\n", format_args!($($arg)*))) };
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

#[cfg(test)]
mod tests {
    use super::escapes_allowed;
    use std::ffi::OsStr;

    #[test]
    fn escapes_only_on_a_terminal_without_no_color_that_is_not_dumb() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let xterm = os("xterm-256color");
        // The one case that may: a terminal, NO_COLOR unset or empty.
        assert!(escapes_allowed(true, None, xterm));
        assert!(escapes_allowed(true, os(""), xterm));
        assert!(escapes_allowed(true, None, os("linux")));
        // NO_COLOR with any value, even "0" or "false".
        for value in ["1", "0", "false", "yes"] {
            assert!(!escapes_allowed(true, os(value), xterm), "NO_COLOR={value}");
        }
        // A dumb terminal, or one that does not say what it is.
        assert!(!escapes_allowed(true, None, os("dumb")));
        assert!(!escapes_allowed(true, None, None));
        // Not a terminal (a pipe, a file, the journal): never.
        for no_color in [None, os(""), os("1")] {
            for term in [xterm, os("dumb"), None] {
                assert!(
                    !escapes_allowed(false, no_color, term),
                    "{no_color:?} {term:?}"
                );
            }
        }
    }
}
