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
