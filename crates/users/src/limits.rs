//! Rate limits on failed sign-ins, per account and per client address.
//!
//! A fixed window per key: after `limit` failures within [`WINDOW`] the key
//! is refused until the window ends (429 with `Retry-After`). A successful
//! sign-in clears the account's count. Counts live in this process's memory:
//! simple and fast, at the price that N replicas allow N times the failures
//! and a restart forgets them (recorded in docs/decisions.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins allowed per account per window.
pub const PER_ACCOUNT: u32 = 5;
/// Failed sign-ins allowed per client address per window (several people
/// may share one address).
pub const PER_ADDRESS: u32 = 20;
/// Keys remembered before expired windows are swept.
const MAX_KEYS: usize = 100_000;

struct Window {
    started: Instant,
    failures: u32,
}

/// Failed sign-in counts by key (`account:<email>`, `address:<ip>`).
#[derive(Default)]
pub struct Limiter {
    windows: Mutex<HashMap<String, Window>>,
}

impl Limiter {
    /// `Err(retry_after)` when any of `keys` (each with its limit) has used
    /// up its failures.
    pub fn check(&self, keys: &[(&str, u32)]) -> Result<(), Duration> {
        let Ok(windows) = self.windows.lock() else {
            return Ok(());
        };
        let wait = keys
            .iter()
            .filter_map(|(key, limit)| {
                let w = windows.get(*key)?;
                let left = WINDOW.checked_sub(w.started.elapsed())?;
                (w.failures >= *limit).then_some(left)
            })
            .max();
        match wait {
            Some(left) => Err(left.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Counts one failure against each of `keys`.
    pub fn failed(&self, keys: &[&str]) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, w| w.started.elapsed() < WINDOW);
        }
        for key in keys {
            let w = windows.entry((*key).to_owned()).or_insert(Window {
                started: Instant::now(),
                failures: 0,
            });
            if w.started.elapsed() >= WINDOW {
                *w = Window {
                    started: Instant::now(),
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// Forgets the failures of `key`.
    pub fn clear(&self, key: &str) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_limit_until_cleared() {
        let limiter = Limiter::default();
        for _ in 0..3 {
            assert!(limiter.check(&[("account:a", 3), ("address:x", 10)]).is_ok());
            limiter.failed(&["account:a", "address:x"]);
        }
        let wait = limiter.check(&[("account:a", 3), ("address:x", 10)]).unwrap_err();
        assert!(wait > Duration::from_secs(14 * 60) && wait <= WINDOW);
        assert!(limiter.check(&[("account:b", 3), ("address:x", 10)]).is_ok());
        limiter.clear("account:a");
        assert!(limiter.check(&[("account:a", 3)]).is_ok());
    }
}
