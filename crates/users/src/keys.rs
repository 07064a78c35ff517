//! The Ed25519 keys that sign ID tokens.
//!
//! They live in the users database (`signing_keys`), so every replica of the
//! service on one PostgreSQL database signs with the same key and publishes
//! the same JWKS. The first start generates one (with `ring`, which
//! jsonwebtoken already uses for the signatures). Several keys may be
//! stored: the newest signs, all are published, so adding a key rotates
//! without invalidating tokens signed by the previous one.

use anyhow::Context as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ecom_runtime::auth::{TokenClaims, ALGORITHM};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// The key that signs (the newest when this process started; a key added
/// later signs after a restart, while the JWKS publishes it at once).
pub struct SigningKeys {
    kid: String,
    encoding: EncodingKey,
}

impl SigningKeys {
    /// The stored keys, generating and storing the first one when there is none.
    pub async fn load_or_create(db: &Db) -> anyhow::Result<SigningKeys> {
        if let Some(keys) = SigningKeys::load(db).await? {
            return Ok(keys);
        }
        add_key(db).await?;
        // Two replicas starting together may both have added one: the
        // newest signs on both, and both keys are published.
        SigningKeys::load(db)
            .await?
            .context("Failed to find the signing key just stored")
    }

    async fn load(db: &Db) -> anyhow::Result<Option<SigningKeys>> {
        let row = sqlx::query(
            "SELECT kid, private_pkcs8 FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .fetch_optional(db.reader())
        .await
        .context("Failed to read the signing key")?;
        let Some(row) = row else { return Ok(None) };
        let pkcs8 = STANDARD
            .decode(row.try_get::<String, _>(1)?)
            .context("The stored signing key is not base64")?;
        // Parse once here so that a damaged key fails at start, not per sign-in.
        Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| anyhow::anyhow!("Bad stored signing key: {e}"))?;
        Ok(Some(SigningKeys {
            kid: row.try_get(0)?,
            encoding: EncodingKey::from_ed_der(&pkcs8),
        }))
    }

    /// Signs `claims` with the newest key, naming it in `kid`.
    pub fn sign(&self, claims: &TokenClaims) -> anyhow::Result<String> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("Failed to sign an ID token")
    }
}

/// Every stored public key, as served at `/.well-known/jwks.json`. Read from
/// the database on each call (verifiers fetch it rarely), so that every
/// replica publishes every replica's key, even one added after it started.
pub async fn published(db: &Db) -> anyhow::Result<JwkSet> {
    let rows = sqlx::query("SELECT kid, public_key FROM signing_keys ORDER BY created_at DESC, kid DESC")
        .fetch_all(db.reader())
        .await
        .context("Failed to read the public keys")?;
    let keys = rows
        .iter()
        .map(|row| Ok(jwk(row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(JwkSet { keys })
}

/// Generates a key pair and stores it; it signs from the next load on.
pub async fn add_key(db: &Db) -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| anyhow::anyhow!("Failed to generate a signing key: {e}"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| anyhow::anyhow!("Failed to read the generated key: {e}"))?;
    let kid = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_pkcs8, public_key, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&kid)
    .bind(STANDARD.encode(pkcs8.as_ref()))
    .bind(URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()))
    .bind(ecom_model::Timestamp::now().unix_micros())
    .execute(db.writer())
    .await
    .context("Failed to store a signing key")?;
    Ok(kid)
}

fn jwk(kid: String, x: String) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(kid),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x,
        }),
    }
}
