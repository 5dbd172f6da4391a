//! Moments and durations: [`Time`] (UTC, microseconds, RFC 3339 in and
//! out) and [`Span`] (`90s`, `10m`, `2h`, `7d`, `1w`), for sshd's log,
//! fail2ban's settings, expiry and idle stop. No date crate for this much.

use std::fmt;
use std::str::FromStr;

/// A moment, in microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub i64);

pub(crate) const SECOND: i64 = 1_000_000;
pub(crate) const DAY: i64 = 86_400 * SECOND;

impl Time {
    pub fn now() -> Time {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time(since_epoch.as_micros() as i64)
    }

    /// `secs` seconds later.
    pub fn plus_secs(self, secs: u64) -> Time {
        Time(self.0 + secs as i64 * SECOND)
    }

    /// `secs` seconds earlier.
    pub fn minus_secs(self, secs: u64) -> Time {
        Time(self.0 - secs as i64 * SECOND)
    }

    pub fn from_civil(year: i64, month: u32, day: u32, secs_of_day: i64) -> Time {
        Time(days_from_civil(year, month, day) * DAY + secs_of_day * SECOND)
    }

    pub fn year(self) -> i64 {
        civil_from_days(self.0.div_euclid(DAY)).0
    }

    /// `YYYY-mm-dd[( |T)HH:MM[:SS[.frac]]][Z|±HH:MM|±HHMM]`; without a zone
    /// the time is UTC.
    pub fn parse(text: &str) -> Option<Time> {
        let b = text.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = text.get(from..from + len)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (year, month, day) = (num(0, 4)?, num(5, 2)? as u32, num(8, 2)? as u32);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let mut secs = 0;
        let mut micros = 0;
        let mut rest = &text[10..];
        if let Some(time) = rest.strip_prefix([' ', 'T']) {
            let tb = time.as_bytes();
            if tb.len() < 5 || tb[2] != b':' {
                return None;
            }
            let (h, m) = (num(11, 2)?, num(14, 2)?);
            secs = h * 3600 + m * 60;
            rest = &time[5..];
            if let Some(s) = rest.strip_prefix(':') {
                secs += num(17, 2)?;
                rest = s.get(2..)?;
                if let Some(frac) = rest.strip_prefix(['.', ',']) {
                    let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
                    if digits == 0 {
                        return None;
                    }
                    let shown = &frac[..digits.min(6)];
                    micros = shown.parse::<i64>().ok()? * 10_i64.pow(6 - shown.len() as u32);
                    rest = &frac[digits..];
                }
            }
            if h > 23 || m > 59 || secs - h * 3600 - m * 60 > 60 {
                return None;
            }
        }
        let offset = match rest {
            "" | "Z" | "z" => 0,
            zone => {
                let sign = match zone.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let digits = zone[1..].replace(':', "");
                if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                let (h, m): (i64, i64) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
                sign * (h * 3600 + m * 60)
            }
        };
        Some(Time(
            Time::from_civil(year, month, day, secs - offset).0 + micros,
        ))
    }
}

/// RFC 3339, UTC, whole seconds: `2026-12-01T13:42:13Z` (so that strings
/// compare as times do).
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d) = civil_from_days(self.0.div_euclid(DAY));
        let s = self.0.rem_euclid(DAY) / SECOND;
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A positive duration as fail2ban writes it (and `reap` and `apply` take): digits and one unit of
/// `s`, `m`, `h`, `d` or `w` (seconds without a unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub seconds: u64,
    text: String,
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        let bad = || format!("{s:?} is not a duration like 90s, 10m, 1h, 2d or 1w");
        let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &s[digits.len()..];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(bad()),
        };
        let seconds = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|&n| n > 0 && n <= i32::MAX as u64)
            .ok_or_else(bad)?;
        Ok(Span {
            seconds,
            text: format!("{}{}", digits.trim_start_matches('0'), unit),
        })
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
