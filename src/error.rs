//! The two kinds of failure, which end differently, and every exit status.
//!
//! A [`Refused`] is expected: bad input, or a fact about the host that forbids
//! the action (the user exists, Incus is down). It is found before anything
//! changes, printed as one line and ends with exit code 2. Anything else is
//! unexpected and printed with its whole context chain, exit code 1.
//! [`EXIT_STATUS`] is the one table of what each code means: containarium(1)
//! is generated from it and a test holds the README to it.

use std::fmt;

#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Returns early with a [`Refused`] built like `format!`.
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::error::Refused(format!($($arg)*)).into())
    };
}

pub const FAILURE: i32 = 1;
pub const REFUSED: i32 = 2;
/// `apply --detailed-exitcode` when the plan had changes, as `terraform plan
/// -detailed-exitcode` says so.
pub const CHANGES: i32 = 2;
/// Plus the signal's number: a run stopped by SIGINT, SIGTERM or SIGHUP
/// (the shell's own convention for a command a signal ended).
pub const SIGNALLED: i32 = 128;

/// Every exit status and what it means, as containarium(1) and the README
/// show them.
pub const EXIT_STATUS: [(&str, &str); 4] = [
    (
        "0",
        "Success. --dry-run printed its plan; host doctor found no check that \
         FAILed (warnings do not count); apply --detailed-exitcode found nothing \
         to change.",
    ),
    (
        "1",
        "Failure: a command containarium ran failed, or something unexpected \
         happened (printed with its whole context: the command, its exit code \
         and stderr). Steps this run had done are undone first. host doctor: \
         at least one check FAILed; reap and sync-accounts: a user failed \
         (the others were done); apply: a user failed (no more were started).",
    ),
    (
        "2",
        "Refused: bad input (a bad argument or option, a malformed key file, a \
         taken name) or a fact about the host that forbids the action (not \
         root, Incus not answering, a file at one of our paths that is not \
         ours). Printed as one line; nothing was changed. Also apply \
         --detailed-exitcode when the plan had changes (applied unless \
         --dry-run).",
    ),
    (
        "128+N",
        "Stopped by signal N: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, 129 for \
         SIGHUP. While the steps of a plan run, containarium stops between steps and \
         undoes the steps it had done first; at any other moment (reading, \
         probing, asking) the signal ends it at once, before anything changed.",
    ),
];

/// The exit code for `err`: 2 when it is (or wraps) a refusal, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|cause| cause.is::<Refused>()) {
        REFUSED
    } else {
        FAILURE
    }
}

/// The exit code of a run that `signal` stopped.
pub fn signalled(signal: nix::sys::signal::Signal) -> i32 {
    SIGNALLED + signal as i32
}

/// `text` with every control character but the newline escaped (`\u{1b}`):
/// what a guest wrote (its cloud-init log, a command's stderr) reaches the
/// admin's terminal as text, never as escape sequences.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Folds a multi-line message (clap's) into one line: everything before the
/// first blank line, whitespace collapsed.
pub fn one_line(message: &str) -> String {
    let head = message.split("\n\n").next().unwrap_or_default();
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn what_a_guest_wrote_prints_as_text() {
        assert_eq!(
            printable("ok\n\u{1b}]0;owned\u{7}\u{1b}[2J\rdone\ttab"),
            "ok\n\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\rdone\\ttab"
        );
        assert_eq!(printable("plain, ünïcode\n"), "plain, ünïcode\n");
    }

    /// The table names the codes the functions return, in order.
    #[test]
    fn the_exit_status_table_is_the_codes_returned() {
        let codes: Vec<&str> = EXIT_STATUS.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, ["0", "1", "2", "128+N"]);
        let refused: anyhow::Error = Refused("no".into()).into();
        assert_eq!(exit_code(&refused.context("creating alice")), 2);
        assert!(EXIT_STATUS[2].1.starts_with("Refused"));
        assert_eq!(exit_code(&anyhow::anyhow!("incus init failed")), 1);
        assert!(EXIT_STATUS[1].1.starts_with("Failure"));
        assert_eq!((FAILURE, REFUSED, CHANGES), (1, 2, 2));
        assert_eq!(signalled(Signal::SIGINT), 130);
        assert_eq!(signalled(Signal::SIGTERM), 143);
        assert_eq!(signalled(Signal::SIGHUP), 129);
        for (code, signal) in [("130", "SIGINT"), ("143", "SIGTERM"), ("129", "SIGHUP")] {
            assert!(EXIT_STATUS[3].1.contains(&format!("{code} for {signal}")));
        }
    }

    #[test]
    fn folds_clap_messages() {
        let clap = "error: the following required arguments were not provided:\n  --ssh-key <FILE>\n\nUsage: containarium create --ssh-key <FILE> <USER>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(clap),
            "error: the following required arguments were not provided: --ssh-key <FILE>"
        );
    }
}
