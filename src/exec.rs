//! The one place that spawns processes.
//!
//! A [`Cmd`] is a value: program, arguments and optional standard input. Its
//! `Display` is a shell-escaped line that can be pasted into a terminal, which
//! is what `--dry-run` prints and what `-v` logs. Commands are always run from
//! an argv, never through `sh -c`, so nothing a user typed is ever parsed by a
//! shell. Failures carry the command, its exit code or signal and the tail of
//! its stderr, because duct's own error says none of that. Children run
//! with `LC_ALL=C`, so the messages we recognise ("cannot lock /etc/passwd",
//! "not found") are the English ones whatever the admin's locale.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU8, Ordering};

/// How much stderr a failure keeps: enough for Incus's one-line errors and a
/// cloud-init traceback's last lines, little enough for a terminal.
const STDERR_TAIL: usize = 1024;

static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Sets the `-v` count; at 1 and above every command is logged to stderr.
pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    /// Runs in a process group of its own, so a terminal's Ctrl-C reaches
    /// only us: for a command that must not die half-way (`incus init`
    /// would leave a half-made instance that its undo cannot yet see). The
    /// plan stops after it and undoes it instead.
    pub uninterruptible: bool,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            uninterruptible: false,
        }
    }

    pub fn uninterruptible(mut self) -> Self {
        self.uninterruptible = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
}

/// Marks the end of a here-document in `Display`; chosen so that no key file or
/// user-data line plausibly equals it.
const HEREDOC_END: &str = "CONTAINARIUM_EOF";

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        if let Some(stdin) = &self.stdin {
            let text = String::from_utf8_lossy(stdin);
            write!(f, " <<'{HEREDOC_END}'\n{text}")?;
            if !text.ends_with('\n') {
                f.write_str("\n")?;
            }
            f.write_str(HEREDOC_END)?;
        }
        Ok(())
    }
}

/// Quotes `s` for a POSIX shell, leaving plain words alone for readability.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=,@%+".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A command that could not be started, or that ended unsuccessfully.
#[derive(Debug)]
pub struct CmdError {
    pub command: String,
    pub program: String,
    /// `None` when the program could not be started at all.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr: String,
    pub not_found: bool,
}

impl CmdError {
    /// Whether stderr contains `needle`; the usual way to recognise a known
    /// failure of a tool that has no structured errors.
    pub fn stderr_contains(&self, needle: &str) -> bool {
        self.stderr.contains(needle)
    }
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.not_found {
            return write!(
                f,
                "{} is not installed (running `{}`)",
                self.program, self.command
            );
        }
        write!(f, "`{}` failed", self.command)?;
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, " with exit code {code}")?,
            (None, Some(sig)) => write!(f, " killed by signal {sig}")?,
            (None, None) => f.write_str(" to start")?,
        }
        let tail = self.stderr.trim();
        if !tail.is_empty() {
            write!(f, ": {}", crate::error::printable(tail))?;
        }
        Ok(())
    }
}

impl std::error::Error for CmdError {}

/// Runs `cmd`, returning its output whatever its exit status.
pub fn run_unchecked(cmd: &Cmd) -> Result<Output, CmdError> {
    let output = expression(cmd)
        .stdout_capture()
        .run()
        .map_err(|err| spawn_error(cmd, &err))?;
    Ok(Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// How long [`run_bounded`] lets a child take: a read of a guest's file
/// that has not ended by then (a FIFO, a trickle) is stopped.
pub const BOUNDED_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `cmd` and fails unless it exits 0 within `deadline` having printed
/// at most `limit` bytes: past either the child is killed and the run
/// fails. For what a guest wrote (a tenant's /etc/passwd could be
/// gigabytes, or a FIFO): it costs us `limit` bytes and `deadline`, never a
/// verb that hangs holding our lock.
pub fn run_bounded(cmd: &Cmd, limit: usize) -> Result<Output, CmdError> {
    run_bounded_within(cmd, limit, BOUNDED_DEADLINE)
}

pub fn run_bounded_within(
    cmd: &Cmd,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Output, CmdError> {
    use std::io::Read;
    let reader = expression(cmd)
        .reader()
        .map_err(|err| spawn_error(cmd, &err))?;
    let mut stdout = Vec::new();
    let (done, timer) = std::sync::mpsc::channel::<()>();
    let (read, late) = std::thread::scope(|scope| {
        let reader = &reader;
        let watch = scope.spawn(move || {
            let late = timer.recv_timeout(deadline).is_err();
            if late {
                let _ = reader.kill();
            }
            late
        });
        let read = reader.take(limit as u64 + 1).read_to_end(&mut stdout);
        let _ = done.send(());
        (read, watch.join().unwrap_or(true))
    });
    // What we killed, and why.
    let stopped = |why: String| CmdError {
        command: abbreviate(&cmd.to_string()),
        program: cmd.program.clone(),
        code: None,
        signal: Some(nix::sys::signal::Signal::SIGKILL as i32),
        not_found: false,
        stderr: format!("{why}; stopped there"),
    };
    if late {
        let secs = deadline.as_secs();
        return Err(stopped(format!("it had not finished after {secs}s")));
    }
    read.map_err(|err| spawn_error(cmd, &err))?;
    if stdout.len() > limit {
        let _ = reader.kill();
        return Err(stopped(format!("it printed more than {limit} bytes")));
    }
    let done = reader
        .try_wait()
        .map_err(|err| spawn_error(cmd, &err))?
        .expect("a child whose output ended was waited for");
    let output = Output {
        status: done.status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
    };
    if output.status.success() {
        Ok(output)
    } else {
        Err(failure(cmd, &output))
    }
}

fn spawn_error(cmd: &Cmd, err: &io::Error) -> CmdError {
    CmdError {
        command: abbreviate(&cmd.to_string()),
        program: cmd.program.clone(),
        code: None,
        signal: None,
        not_found: err.kind() == io::ErrorKind::NotFound,
        stderr: err.to_string(),
    }
}

/// `cmd` as a duct expression, stdout not yet decided: stderr captured, the
/// status not checked, stdin given or null, INCUS_* and LANGUAGE dropped.
fn expression(cmd: &Cmd) -> duct::Expression {
    if VERBOSITY.load(Ordering::Relaxed) > 0 {
        crate::ui::note(&format!("+ {}", abbreviate(&cmd.to_string())));
    }
    let mut expr = duct::cmd(&cmd.program, &cmd.args)
        .stderr_capture()
        .unchecked();
    expr = match &cmd.stdin {
        Some(bytes) => expr.stdin_bytes(bytes.clone()),
        None => expr.stdin_null(),
    };
    if cmd.uninterruptible {
        expr = expr.before_spawn(|child| {
            use std::os::unix::process::CommandExt;
            child.process_group(0);
            Ok(())
        });
    }
    // Incus reads INCUS_PROJECT, INCUS_REMOTE and friends: a stray one in the
    // admin's environment must not redirect what we do.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("INCUS_") {
            expr = expr.env_remove(key);
        }
    }
    // LANGUAGE would win over LC_ALL for gettext's messages in any locale
    // but C; drop it as well.
    expr.env("LC_ALL", "C").env_remove("LANGUAGE")
}

/// Runs `cmd` and fails unless it exits 0.
pub fn run(cmd: &Cmd) -> Result<Output, CmdError> {
    let output = run_unchecked(cmd)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(failure(cmd, &output))
    }
}

/// The error for a command that ran and ended unsuccessfully.
pub fn failure(cmd: &Cmd, output: &Output) -> CmdError {
    CmdError {
        command: abbreviate(&cmd.to_string()),
        program: cmd.program.clone(),
        code: output.status.code(),
        signal: output.status.signal(),
        stderr: tail(&output.stderr, STDERR_TAIL).to_string(),
        not_found: false,
    }
}

/// Shortens a command line for messages: a launch carries the whole
/// user-data, which helps nobody in a one-line error.
fn abbreviate(line: &str) -> String {
    const MAX: usize = 400;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_run_stops_the_child_past_its_limit() {
        let started = std::time::Instant::now();
        let err = run_bounded(&Cmd::new("yes"), 1000).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("killed by signal 9: it printed more than 1000 bytes; stopped there"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Control: what fits is read whole, and a failure is still one.
        let out = run_bounded(&Cmd::new("printf").arg("%01000d"), 1000).unwrap();
        assert_eq!(out.stdout.len(), 1000);
        let err = run_bounded(&Cmd::new("false"), 1000).unwrap_err();
        assert!(err.to_string().contains("exit code 1"), "{err}");
        // A child that never ends (a guest's FIFO) is stopped at the deadline.
        let started = std::time::Instant::now();
        let slow = Cmd::new("sleep").arg("30");
        let err =
            run_bounded_within(&slow, 1000, std::time::Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("had not finished after"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn display_is_copy_pastable() {
        let cmd = Cmd::new("useradd").args(["--comment", "it's me", "-p", "*", "alice"]);
        assert_eq!(
            cmd.to_string(),
            r"useradd --comment 'it'\''s me' -p '*' alice"
        );
        let out = duct::cmd!(
            "sh",
            "-c",
            format!(
                "printf '%s\\n' {}",
                cmd.to_string().split_once(' ').unwrap().1
            )
        )
        .read()
        .unwrap();
        assert_eq!(out, "--comment\nit's me\n-p\n*\nalice");
    }

    #[test]
    fn display_shows_stdin_as_heredoc() {
        let cmd = Cmd::new("incus")
            .args(["file", "push", "-", "c/etc/x"])
            .stdin("a\nb");
        assert_eq!(
            cmd.to_string(),
            "incus file push - c/etc/x <<'CONTAINARIUM_EOF'\na\nb\nCONTAINARIUM_EOF"
        );
    }

    #[test]
    fn failure_carries_command_code_and_stderr() {
        let cmd = Cmd::new("sh").args(["-c", "echo oops >&2; exit 3"]);
        let err = run(&cmd).unwrap_err();
        assert_eq!(err.code, Some(3));
        assert_eq!(
            err.to_string(),
            "`sh -c 'echo oops >&2; exit 3'` failed with exit code 3: oops"
        );
    }

    #[test]
    fn missing_program_is_named() {
        let err = run(&Cmd::new("containarium-no-such-tool")).unwrap_err();
        assert!(err.not_found);
        assert!(
            err.to_string()
                .starts_with("containarium-no-such-tool is not installed")
        );
    }

    #[test]
    fn stdin_is_passed_and_env_scrubbed() {
        // SAFETY: tests in this module do not read these concurrently.
        unsafe {
            std::env::set_var("INCUS_PROJECT", "elsewhere");
            std::env::set_var("LC_ALL", "de_DE.UTF-8");
            std::env::set_var("LANGUAGE", "de");
        }
        let out = run(&Cmd::new("sh")
            .args([
                "-c",
                "cat; echo \"${INCUS_PROJECT-unset} $LC_ALL ${LANGUAGE-unset}\"",
            ])
            .stdin("in\n"))
        .unwrap();
        assert_eq!(out.stdout, "in\nunset C unset\n");
    }
}
