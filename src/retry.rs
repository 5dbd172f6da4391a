//! A bounded retry loop with exponential backoff and jitter.
//!
//! Only errors the caller calls transient are retried; there is no sleep
//! after the last try, and the error returned is the last real one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Backoff {
    pub first: Duration,
    pub max_delay: Duration,
    /// Total time after which no further try is started.
    pub budget: Duration,
}

impl Backoff {
    /// For a lock held by another program (a cloud guest agent editing
    /// /etc/passwd): about a minute in all.
    pub const ACCOUNT_DB: Backoff = Backoff {
        first: Duration::from_millis(200),
        max_delay: Duration::from_secs(8),
        budget: Duration::from_secs(60),
    };
}

/// Calls `op` until it succeeds, fails with an error `transient` rejects, or
/// the budget is spent. `on_retry` hears of every retry (for progress output).
pub fn retry<T, E>(
    backoff: &Backoff,
    mut op: impl FnMut() -> Result<T, E>,
    transient: impl Fn(&E) -> bool,
    mut on_retry: impl FnMut(&E, Duration),
) -> Result<T, E> {
    let start = Instant::now();
    let mut delay = backoff.first;
    loop {
        let err = match op() {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let sleep = jitter(delay);
        if !transient(&err) || start.elapsed() + sleep > backoff.budget {
            return Err(err);
        }
        on_retry(&err, sleep);
        std::thread::sleep(sleep);
        delay = (delay * 2).min(backoff.max_delay);
    }
}

/// Scales `delay` by a factor in [0.5, 1.5), so parallel runs spread out.
fn jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = nanos ^ std::process::id().rotate_left(16);
    let fraction = f64::from(seed % 1000) / 1000.0;
    delay.mul_f64(0.5 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Backoff = Backoff {
        first: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        budget: Duration::from_millis(200),
    };

    #[test]
    fn retries_transient_errors_until_success() {
        let mut calls = 0;
        let mut retries = 0;
        let result = retry(
            &FAST,
            || {
                calls += 1;
                if calls < 4 { Err("locked") } else { Ok(calls) }
            },
            |e| *e == "locked",
            |_, _| retries += 1,
        );
        assert_eq!(result, Ok(4));
        assert_eq!(retries, 3);
    }

    #[test]
    fn permanent_errors_end_at_once() {
        let mut calls = 0;
        let result: Result<(), _> = retry(
            &FAST,
            || {
                calls += 1;
                Err("bad")
            },
            |e| *e == "locked",
            |_, _| {},
        );
        assert_eq!(result, Err("bad"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn gives_up_with_the_last_error_when_the_budget_is_spent() {
        let start = Instant::now();
        let mut calls = 0;
        let result: Result<(), String> = retry(
            &FAST,
            || {
                calls += 1;
                Err(format!("locked {calls}"))
            },
            |e| e.starts_with("locked"),
            |_, _| {},
        );
        assert_eq!(result, Err(format!("locked {calls}")));
        assert!(calls > 5);
        assert!(start.elapsed() < Duration::from_millis(400));
    }
}
