//! The Ed25519 keys that sign ID tokens.
//!
//! They live in the users database (`signing_keys`), so every replica of the
//! service on one PostgreSQL database signs with the same key and publishes
//! the same JWKS. The first start generates one (with `ring`, which
//! jsonwebtoken already uses for the signatures). Several keys may be
//! stored: the newest signs, all are published. Rotating (`ecom users keys
//! rotate`) adds a key, which signs from the next token on while tokens
//! signed by the older ones stay valid; retiring (`ecom users keys retire`)
//! removes an older key from the JWKS, and verifiers stop trusting it at
//! their next key-set refresh (`ecom_runtime::auth::KEYSET_MAX_AGE`).

use anyhow::Context as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ecom_model::Timestamp;
use ecom_runtime::auth::{TokenClaims, ALGORITHM};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// Signs ID tokens with the newest stored key, read at each signing (a
/// sign-in's password check costs a thousand times that read), so a key
/// added by a rotation signs at once, in every replica.
pub struct SigningKeys {
    db: Db,
}

impl SigningKeys {
    /// The signer of `db`'s keys, generating and storing the first key when
    /// there is none and checking that the newest one is usable.
    pub async fn load_or_create(db: &Db) -> anyhow::Result<SigningKeys> {
        let (_, pkcs8) = match newest(db).await? {
            Some(key) => key,
            None => {
                // Two replicas starting together may both add one: the
                // newest signs on both, and both keys are published.
                add_key(db).await?;
                newest(db)
                    .await?
                    .context("Failed to find the signing key just stored")?
            }
        };
        // Parse once here so that a damaged key fails at start, not per sign-in.
        Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| anyhow::anyhow!("Bad stored signing key: {e}"))?;
        Ok(SigningKeys { db: db.clone() })
    }

    /// Signs `claims` with the newest key, naming it in `kid`.
    pub async fn sign(&self, claims: &TokenClaims) -> anyhow::Result<String> {
        let (kid, pkcs8) = newest(&self.db)
            .await?
            .context("There is no signing key (was the last one retired?)")?;
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&pkcs8))
            .context("Failed to sign an ID token")
    }
}

/// The kid and private key (PKCS#8) of the newest key.
async fn newest(db: &Db) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let row =
        sqlx::query("SELECT kid, private_pkcs8 FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1")
            .fetch_optional(db.reader())
            .await
            .context("Failed to read the signing key")?;
    let Some(row) = row else { return Ok(None) };
    let pkcs8 = STANDARD
        .decode(row.try_get::<String, _>(1)?)
        .context("The stored signing key is not base64")?;
    Ok(Some((row.try_get(0)?, pkcs8)))
}

/// A stored key, for `ecom users keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its id, as tokens and the JWKS name it.
    pub kid: String,
    /// When it was added.
    pub created_at: Timestamp,
    /// Whether it signs new tokens (the newest does).
    pub signing: bool,
}

/// Every stored key, newest (the signing one) first.
pub async fn list(db: &Db) -> anyhow::Result<Vec<KeyInfo>> {
    let rows = sqlx::query("SELECT kid, created_at FROM signing_keys ORDER BY created_at DESC, kid DESC")
        .fetch_all(db.reader())
        .await
        .context("Failed to read the signing keys")?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let micros: i64 = row.try_get(1)?;
            Ok(KeyInfo {
                kid: row.try_get(0)?,
                created_at: Timestamp::from_unix_micros(micros)
                    .context("A key's creation time is out of range")?,
                signing: i == 0,
            })
        })
        .collect()
}

/// Removes an older key: it leaves the JWKS, so tokens it signed stop
/// being accepted once verifiers refresh their key set. The signing key
/// cannot be retired (rotate first), nor a key that does not exist.
pub async fn retire(db: &Db, kid: &str) -> anyhow::Result<()> {
    let keys = list(db).await?;
    match keys.iter().find(|k| k.kid == kid) {
        None => anyhow::bail!(
            "no signing key '{kid}'; the keys are: {}",
            keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Some(key) if key.signing => {
            anyhow::bail!(
                "key '{kid}' signs new tokens: rotate first (`ecom users keys rotate`), then retire it"
            )
        }
        Some(_) => {}
    }
    sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
        .bind(kid)
        .execute(db.writer())
        .await
        .context("Failed to retire the key")?;
    Ok(())
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

/// Generates a key pair and stores it; it signs from now on (a rotation).
/// Returns its kid.
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
    .bind(Timestamp::now().unix_micros())
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
