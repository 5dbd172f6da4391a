//! The two kinds of failure, which end differently.
//!
//! A [`Refused`] is expected: bad input, or a fact about the host that forbids
//! the action (the user exists, Incus is down). It is found before anything
//! changes, printed as one line and ends with exit code 2. Anything else is
//! unexpected and printed with its whole context chain, exit code 1.

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

/// The exit code for `err`: 2 when it is (or wraps) a refusal, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|cause| cause.is::<Refused>()) {
        2
    } else {
        1
    }
}

/// Folds a multi-line message (clap's) into one line: everything before the
/// first blank line, whitespace collapsed.
pub fn one_line(message: &str) -> String {
    let head = message.split("\n\n").next().unwrap_or_default();
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn folds_clap_messages() {
        let clap = "error: the following required arguments were not provided:\n  --ssh-key <FILE>\n\nUsage: containarium create --ssh-key <FILE> <USER>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line(clap),
            "error: the following required arguments were not provided: --ssh-key <FILE>"
        );
    }
}
