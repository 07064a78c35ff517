//! Password hashing with argon2id, off the async runtime.
//!
//! Parameters are the `argon2` crate's defaults, which are OWASP's
//! recommendation for argon2id: 19 MiB of memory, 2 passes, 1 lane. The
//! PHC string stored with each hash records them, so raising them later
//! leaves old hashes verifiable.

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

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
    tokio::task::spawn_blocking(move || {
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
    })
    .await
    .context("Failed to run the password check")?
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
}
