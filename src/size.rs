//! Sizes for disk and memory quotas, in the units Incus accepts.

use std::fmt;
use std::str::FromStr;

use crate::error::Refused;

/// A positive size, kept in the unit it was given in so the value Incus sees
/// is the one the admin typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize {
    value: u64,
    unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    B,
    KB,
    MB,
    GB,
    TB,
    KiB,
    MiB,
    GiB,
    TiB,
}

const UNITS: [(&str, Unit, u64); 9] = [
    ("B", Unit::B, 1),
    ("kB", Unit::KB, 1_000),
    ("MB", Unit::MB, 1_000_000),
    ("GB", Unit::GB, 1_000_000_000),
    ("TB", Unit::TB, 1_000_000_000_000),
    ("KiB", Unit::KiB, 1 << 10),
    ("MiB", Unit::MiB, 1 << 20),
    ("GiB", Unit::GiB, 1 << 30),
    ("TiB", Unit::TiB, 1 << 40),
];

impl ByteSize {
    pub fn bytes(self) -> u64 {
        let factor = UNITS.iter().find(|u| u.1 == self.unit).map_or(1, |u| u.2);
        self.value * factor
    }
}

impl FromStr for ByteSize {
    type Err = Refused;

    fn from_str(s: &str) -> Result<Self, Refused> {
        let invalid = || {
            Refused(format!(
                "invalid size \"{}\": expected a whole number and a unit, such as 512MiB or 20GiB",
                s.escape_debug()
            ))
        };
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = s.split_at(digits);
        let value: u64 = number.parse().map_err(|_| invalid())?;
        let (_, unit, factor) = UNITS
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(unit))
            .ok_or_else(invalid)?;
        if value == 0 {
            return Err(Refused(format!(
                "invalid size \"{s}\": it must be more than zero"
            )));
        }
        if value.checked_mul(*factor).is_none() {
            return Err(Refused(format!("invalid size \"{s}\": too large")));
        }
        Ok(ByteSize { value, unit: *unit })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = UNITS.iter().find(|u| u.1 == self.unit).map_or("B", |u| u.0);
        write!(f, "{}{}", self.value, name)
    }
}

/// Formats a byte count for people, in binary units: `1.5GiB`.
pub fn human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return if unit == "B" {
                format!("{bytes}B")
            } else {
                format!("{value:.1}{unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{value:.1}TiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_incus_units() {
        let s: ByteSize = "20GiB".parse().unwrap();
        assert_eq!(s.bytes(), 20 << 30);
        assert_eq!(s.to_string(), "20GiB");
        assert_eq!("512mib".parse::<ByteSize>().unwrap().to_string(), "512MiB");
        assert_eq!("3GB".parse::<ByteSize>().unwrap().bytes(), 3_000_000_000);
        assert!("4096".parse::<ByteSize>().unwrap_err().0.contains("unit"));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "abc",
            "-5GB",
            "0",
            "0GiB",
            "5 GiB",
            "1.5GiB",
            "GiB",
            "5XB",
            "",
            "99999999999TiB",
        ] {
            let err = bad.parse::<ByteSize>().unwrap_err().to_string();
            assert!(err.starts_with("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(3 << 29), "1.5GiB");
        assert_eq!(human(38 * 1024 * 1024), "38.0MiB");
    }
}
