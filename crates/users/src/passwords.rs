//! Password hashing with argon2id, off the async runtime.
//!
//! Parameters are the `argon2` crate's defaults, which are OWASP's
//! recommendation for argon2id: 19 MiB of memory, 2 passes, 1 lane. The
//! PHC string stored with each hash records them, so raising them later
//! leaves old hashes verifiable.
//!
//! Each hash holds 19 MiB and a core for tens of milliseconds, so requests
//! hash through a [`Gate`]: at most `concurrency` at once (the rest wait
//! their turn) and at most `queue` waiting, past which the request is
//! refused at once ([`Busy`], answered 503 with `Retry-After`). Without
//! it, 200 parallel sign-ups ran 200 hashes on the blocking pool: 1.8 GB of
//! memory and every other request starved of CPU.

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use ecom_runtime::metrics::{self, Counter, Gauge};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// Bounds the password hashing of one service (see the module doc).
#[derive(Clone)]
pub struct Gate {
    inner: Arc<GateInner>,
}

struct GateInner {
    permits: Arc<Semaphore>,
    /// Hashes admitted: running or waiting for a permit.
    admitted: AtomicUsize,
    most: usize,
    running_gauge: Arc<Gauge>,
    refused: Arc<Counter>,
}

/// The gate is full: the caller should answer 503 and retry later.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

/// Why a gated hash did not happen.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Too many waiting.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Hashing failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Counts one admitted hash until dropped.
struct Admitted(Arc<GateInner>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Hashes running in this process, whatever the gate (the gauge is per process).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Counts one running hash until dropped.
struct Running(Arc<GateInner>);

impl Running {
    fn new(inner: Arc<GateInner>) -> Running {
        let n = RUNNING.fetch_add(1, Ordering::AcqRel) + 1;
        inner.running_gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        Running(inner)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let n = RUNNING.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.0.running_gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

impl Gate {
    /// At most `concurrency` hashes at once and `queue` waiting.
    pub fn new(concurrency: usize, queue: usize) -> Gate {
        let concurrency = concurrency.max(1);
        Gate {
            inner: Arc::new(GateInner {
                permits: Arc::new(Semaphore::new(concurrency)),
                admitted: AtomicUsize::new(0),
                most: concurrency.saturating_add(queue),
                running_gauge: metrics::gauge(
                    "ecom_users_password_hashes_running",
                    "Password hashes being computed now.",
                    &[],
                ),
                refused: metrics::counter(
                    "ecom_users_password_hashes_refused_total",
                    "Sign-ups and sign-ins answered 503 because too many password hashes were waiting.",
                    &[],
                ),
            }),
        }
    }

    /// Runs `work` on the blocking pool when a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, GateError> {
        let inner = &self.inner;
        if inner.admitted.fetch_add(1, Ordering::AcqRel) >= inner.most {
            inner.admitted.fetch_sub(1, Ordering::AcqRel);
            inner.refused.inc();
            return Err(Busy.into());
        }
        let admitted = Admitted(inner.clone());
        let permit = inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .context("The password hashing gate is closed")?;
        let running = Running::new(inner.clone());
        // Permit and counts go with the work: a caller that gives up
        // (client gone) does not free the slot while the hash still runs.
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop((permit, running, admitted));
            result
        })
        .await
        .context("Failed to run the password hash")?
        .map_err(GateError::from)
    }

    /// [`hash`], through the gate.
    pub async fn hash(&self, password: &str) -> Result<String, GateError> {
        let password = password.to_owned();
        self.run(move || hash_now(&password)).await
    }

    /// [`verify`], through the gate.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, GateError> {
        let password = password.to_owned();
        self.run(move || verify_now(&password, hash)).await
    }
}

/// Hashes `password` (a PHC string) on the blocking pool: a hash takes tens
/// of milliseconds of CPU, which must not stall the request threads.
pub async fn hash(password: &str) -> anyhow::Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .context("Failed to run the password hash")?
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("Failed to hash a password: {e}"))
}

/// True when `password` matches the stored `hash`. With `None` (no such
/// user) a dummy hash is checked instead, so that an unknown email costs
/// the same time as a wrong password and timing does not tell them apart.
pub async fn verify(password: &str, hash: Option<String>) -> anyhow::Result<bool> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || verify_now(&password, hash))
        .await
        .context("Failed to run the password check")?
}

fn verify_now(password: &str, hash: Option<String>) -> anyhow::Result<bool> {
    let known = hash.is_some();
    let stored = match hash {
        Some(h) => h,
        None => dummy_hash()?.to_owned(),
    };
    let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("Bad stored hash: {e}"))?;
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Ok(known && matches)
}

/// Computes the dummy hash now (at start), so that the first sign-in with
/// an unknown email does not take longer than later ones.
pub async fn prepare() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(|| dummy_hash().map(|_| ()))
        .await
        .context("Failed to run the password hash")?
}

fn dummy_hash() -> anyhow::Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let random: [u8; 16] = rand::random();
    let h = hash_now(&format!("{random:?}"))?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("Passw0rd!").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Passw0rd!", Some(h.clone())).await.unwrap());
        assert!(!verify("passw0rd!", Some(h)).await.unwrap());
        assert!(!verify("anything", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_gate_refuses_at_once_and_frees_its_places() {
        let gate = Gate::new(1, 1);
        // Hold the one permit so that the first two wait and the third finds
        // the gate full, whatever the speed of the machine.
        let held = gate.inner.permits.clone().acquire_owned().await.unwrap();
        let (first, second, third, ()) = tokio::join!(
            gate.hash("Passw0rd!"),
            gate.verify("Passw0rd!", None),
            gate.hash("Passw0rd!"),
            async {
                tokio::task::yield_now().await;
                drop(held);
            }
        );
        assert!(first.is_ok());
        assert!(matches!(second, Ok(false)));
        assert!(matches!(third, Err(GateError::Busy(_))));
        assert_eq!(gate.inner.admitted.load(Ordering::Acquire), 0);
        assert!(gate.hash("again").await.is_ok());
    }
}
