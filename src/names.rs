//! User names, which also name the container and the jump account.
//!
//! The rule is the portable subset of what `useradd` accepts, narrowed so the
//! name is safe everywhere it ends up: a host account, an Incus instance name
//! (`NAME-container`), a file under /etc/containarium/keys and an ssh config
//! alias. A name is 2 to 31 characters of lowercase ASCII letters, digits and
//! `-`; it starts with a letter and does not end with `-`.

use std::fmt;
use std::str::FromStr;

use crate::error::Refused;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

/// Longest accepted name: useradd's 32-byte limit minus one, so a NUL-terminated
/// copy fits everywhere.
const MAX_LEN: usize = 31;

impl UserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Incus instance that belongs to this user.
    pub fn container(&self) -> String {
        format!("{}-container", self.0)
    }
}

impl FromStr for UserName {
    type Err = Refused;

    fn from_str(s: &str) -> Result<Self, Refused> {
        let shown = s.escape_debug();
        let valid_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_chars {
            return Err(Refused(format!(
                "invalid user name \"{shown}\": use lowercase letters, digits and '-' only"
            )));
        }
        if s.len() < 2 || s.len() > MAX_LEN {
            return Err(Refused(format!(
                "invalid user name \"{shown}\": it must be 2 to {MAX_LEN} characters long"
            )));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Refused(format!(
                "invalid user name \"{shown}\": it must start with a lowercase letter"
            )));
        }
        if s.ends_with('-') {
            return Err(Refused(format!(
                "invalid user name \"{shown}\": it must not end with '-'"
            )));
        }
        Ok(UserName(s.to_string()))
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Recovers the user from an instance name we made; `None` for anything else.
pub fn user_of_container(instance: &str) -> Option<UserName> {
    instance.strip_suffix("-container")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_portable_names() {
        for ok in [
            "al",
            "alice",
            "bob-2",
            "a1",
            "x234567890123456789012345678901",
        ] {
            assert_eq!(ok.parse::<UserName>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        let cases = [
            ("a", "2 to 31"),
            ("", "2 to 31"),
            ("x2345678901234567890123456789012", "2 to 31"),
            ("Alice", "lowercase letters"),
            ("1bob", "start with a lowercase letter"),
            ("-bob", "start with a lowercase letter"),
            ("bob-", "end with '-'"),
            ("bo b", "lowercase letters"),
            ("bob\nroot", "lowercase letters"),
            ("bob\r", "lowercase letters"),
            ("bob.smith", "lowercase letters"),
            ("bob_smith", "lowercase letters"),
            ("../etc", "lowercase letters"),
            ("élise", "lowercase letters"),
        ];
        for (bad, why) in cases {
            let err = bad.parse::<UserName>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{bad:?}: one line: {err}");
        }
    }

    #[test]
    fn container_name_round_trips() {
        let alice: UserName = "alice".parse().unwrap();
        assert_eq!(alice.container(), "alice-container");
        assert_eq!(user_of_container("alice-container"), Some(alice));
        assert_eq!(user_of_container("alice"), None);
        assert_eq!(user_of_container("Web-container"), None);
    }
}
