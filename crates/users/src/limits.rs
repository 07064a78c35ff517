//! Rate limits on sign-in and sign-up attempts, as token buckets.
//!
//! Each key (`pair:<email>|<ip>`, `address:<ip>`, `account:<email>`,
//! `sign-up:<ip>`) has a bucket of `burst` tokens that refills at a steady
//! rate. An attempt takes one token from *every* key it concerns, all under
//! one lock and *before* the password is hashed, so parallel guesses cannot
//! slip past the count while their hashes run: of 200 guesses sent at once,
//! at most `burst` are checked. An attempt that turns out not to count (a
//! successful sign-in, a server too busy to hash) gives its tokens back.
//!
//! Buckets, unlike the fixed windows they replace, slow an attacker without
//! a lockout anyone else can trigger:
//! - per (account, address), strict ([`PAIR`]): the one attacker guessing
//!   one account from one address is stopped after a few guesses;
//! - per address, across accounts ([`ADDRESS`]): one address guessing many
//!   accounts;
//! - per account, across addresses ([`ACCOUNT`]): a slow-down only. Its
//!   burst exceeds the pair's, so one attacker address is stopped by its
//!   pair bucket before it can drain the account's; only a distributed
//!   attack drains it, and then the owner waits at most one refill interval
//!   (30 s), not a lockout.
//!
//! Counts live in this process's memory: simple and fast, at the price that
//! N replicas allow N times the attempts and a restart forgets them
//! (recorded in docs/decisions.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's shape: how many attempts at once, and one more per `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens when full.
    pub burst: u32,
    /// Time to earn back one token.
    pub every: Duration,
}

/// Failed sign-ins per (account, client address): 5, then one per 3 minutes.
pub const PAIR: Rate = Rate {
    burst: 5,
    every: Duration::from_secs(180),
};
/// Failed sign-ins per client address, whatever the account (several people
/// may share one address): 20, then one per 45 s.
pub const ADDRESS: Rate = Rate {
    burst: 20,
    every: Duration::from_secs(45),
};
/// Failed sign-ins per account from every address: 10, then one per 30 s.
pub const ACCOUNT: Rate = Rate {
    burst: 10,
    every: Duration::from_secs(30),
};

/// Sign-ups per client address: `per_hour` at once, refilling over the hour.
pub fn sign_up_rate(per_hour: u32) -> Rate {
    Rate {
        burst: per_hour.max(1),
        every: Duration::from_secs(3600) / per_hour.max(1),
    }
}

/// Keys remembered before full buckets (which mean nothing) are swept.
const MAX_KEYS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Refills for the time passed since last seen.
    fn refill(&mut self, rate: Rate, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / rate.every.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(rate.burst));
        self.at = now;
    }

    /// Time until one token is there.
    fn wait(&self, rate: Rate) -> Duration {
        rate.every.mul_f64((1.0 - self.tokens).max(0.0))
    }
}

/// Token buckets by key.
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, (Rate, Bucket)>>,
}

/// Tokens taken by [`Limiter::reserve`], to give back with
/// [`Limiter::refund`] when the attempt does not count.
#[must_use = "an attempt that does not count must be refunded"]
pub struct Reservation(Vec<String>);

impl Limiter {
    /// Takes one token from each of `keys` (each with its rate), or none
    /// and `Err(wait)` when any is empty, `wait` being when it will have one.
    pub fn reserve(&self, keys: &[(&str, Rate)]) -> Result<Reservation, Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS {
            sweep(&mut buckets, now);
        }
        let mut wait = Duration::ZERO;
        for (key, rate) in keys {
            if let Some((_, bucket)) = buckets.get_mut(*key) {
                bucket.refill(*rate, now);
                if bucket.tokens < 1.0 {
                    wait = wait.max(bucket.wait(*rate));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait.max(Duration::from_secs(1)));
        }
        for (key, rate) in keys {
            let (_, bucket) = buckets.entry((*key).to_owned()).or_insert_with(|| {
                (
                    *rate,
                    Bucket {
                        tokens: f64::from(rate.burst),
                        at: now,
                    },
                )
            });
            bucket.tokens -= 1.0;
        }
        Ok(Reservation(keys.iter().map(|(k, _)| (*k).to_owned()).collect()))
    }

    /// Gives back the tokens of an attempt that did not count.
    pub fn refund(&self, reservation: Reservation) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for key in reservation.0 {
            if let Some((rate, bucket)) = buckets.get_mut(&key) {
                bucket.tokens = (bucket.tokens + 1.0).min(f64::from(rate.burst));
            }
        }
    }

    /// Fills `key`'s bucket again (the owner proved the password: failures
    /// from their own address no longer count).
    pub fn reset(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.remove(key);
    }
}

/// Forgets full buckets (as good as absent); if every bucket is in use,
/// forgets them all rather than grow without bound (100,000 keys in use is
/// an attack from very many addresses, which these limits cannot stop anyway).
fn sweep(buckets: &mut HashMap<String, (Rate, Bucket)>, now: Instant) {
    buckets.retain(|_, (rate, bucket)| {
        bucket.refill(*rate, now);
        bucket.tokens < f64::from(rate.burst)
    });
    if buckets.len() >= MAX_KEYS {
        tracing::warn!("sign-in rate limits: every bucket is in use; forgetting them all");
        buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Rate = Rate {
        burst: 3,
        every: Duration::from_secs(600),
    };

    #[test]
    fn a_key_is_refused_once_empty_and_refunds_or_a_reset_give_back() {
        let limiter = Limiter::default();
        let keys = [("pair:a", SLOW), ("address:x", PAIR)];
        let taken: Vec<_> = (0..3).map(|_| limiter.reserve(&keys).unwrap()).collect();
        let wait = limiter.reserve(&keys).err().unwrap();
        assert!(wait > Duration::from_secs(590) && wait <= SLOW.every, "{wait:?}");
        // A refused attempt took nothing from the other key.
        assert!(limiter.reserve(&[("address:x", PAIR)]).is_ok());
        // Another pair from the same address is still open.
        assert!(limiter.reserve(&[("pair:b", SLOW)]).is_ok());
        let mut taken = taken;
        limiter.refund(taken.pop().unwrap());
        assert!(limiter.reserve(&keys).is_ok());
        assert!(limiter.reserve(&keys).is_err());
        limiter.reset("pair:a");
        assert!(limiter.reserve(&[("pair:a", SLOW)]).is_ok());
    }

    #[test]
    fn the_account_bucket_outlasts_one_address_so_the_owner_elsewhere_gets_in() {
        let limiter = Limiter::default();
        let attacker = [("pair:a|1", PAIR), ("address:1", ADDRESS), ("account:a", ACCOUNT)];
        let checked = (0..200).filter(|_| limiter.reserve(&attacker).is_ok()).count();
        assert_eq!(checked, PAIR.burst as usize);
        let owner = [("pair:a|2", PAIR), ("address:2", ADDRESS), ("account:a", ACCOUNT)];
        assert!(limiter.reserve(&owner).is_ok());
    }

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let mut bucket = Bucket {
            tokens: 0.0,
            at: Instant::now(),
        };
        assert_eq!(bucket.wait(PAIR), PAIR.every);
        let later = bucket.at + PAIR.every / 2;
        bucket.refill(PAIR, later);
        assert!((bucket.tokens - 0.5).abs() < 1e-9);
        bucket.refill(PAIR, later + PAIR.every * 100);
        assert_eq!(bucket.tokens, f64::from(PAIR.burst));
    }
}
