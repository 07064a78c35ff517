//! Service credentials: how `/backend/` routes know which service calls.
//!
//! A credential is a JWT signed with HMAC-SHA256 by the platform's service
//! key, naming the calling service in `sub`, for audience `ecom-backend`,
//! valid five minutes. One symmetric key is enough because every holder of
//! it is one of our own services; end users never see it. Their tokens
//! (signed by the users service with its own key pair, another algorithm and
//! audience) are therefore refused here.

use crate::ApiError;
use anyhow::Context as _;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "ecom";
const AUDIENCE: &str = "ecom-backend";
/// How long a credential is valid.
pub const LIFETIME_SECONDS: u64 = 300;
const KEY_FILE: &str = "service.key";
/// How long a credential handed out is handed out again: every call a
/// service makes carries one, and signing each anew was a measurable part
/// of an order's cost. A reused credential still has four minutes left.
const REISSUE_AFTER_SECONDS: u64 = 60;
/// Credentials remembered as verified (all of them are cleared when full).
const VERIFIED_CAPACITY: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// The secret that signs and checks service credentials. Cheap to clone.
#[derive(Clone)]
pub struct ServiceKey(Arc<Keys>);

struct Keys {
    /// The raw secret, for [`ServiceKey::mac`].
    secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The credential last issued for each service, and when.
    issued: Mutex<HashMap<String, (String, u64)>>,
    /// Credentials that verified, with their subject and expiry: the same
    /// few are presented again and again.
    verified: Mutex<HashMap<String, (String, u64)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceKey(…)")
    }
}

/// The service a `/backend/` request came from, put in the request's
/// extensions by [`require_service`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller(pub String);

impl ServiceKey {
    /// A key from raw secret bytes.
    pub fn from_secret(secret: &[u8]) -> ServiceKey {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        validation.leeway = 5;
        ServiceKey(Arc::new(Keys {
            secret: secret.to_vec(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issued: Mutex::default(),
            verified: Mutex::default(),
        }))
    }

    /// A key from its hex text (config `service-key` / `ECOM_SERVICE_KEY`).
    pub fn from_hex(text: &str) -> anyhow::Result<ServiceKey> {
        let bytes = crate::hex::decode(text.trim()).context("service key must be hex text")?;
        anyhow::ensure!(
            bytes.len() >= 16,
            "service key must be at least 16 bytes (32 hex digits)"
        );
        Ok(ServiceKey::from_secret(&bytes))
    }

    /// The configured key, or the one in `<data_dir>/service.key`, created
    /// (32 random bytes, readable by the owner only) on first start.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<ServiceKey> {
        if let Some(hex) = configured {
            return ServiceKey::from_hex(hex);
        }
        let path = data_dir.join(KEY_FILE);
        ecom_storage::files::private_dir(data_dir)?;
        if let Ok(text) = std::fs::read_to_string(&path) {
            ecom_storage::files::tighten(&path, ecom_storage::files::FILE_MODE)?;
            return ServiceKey::from_hex(&text).with_context(|| format!("in {}", path.display()));
        }
        let secret: [u8; 32] = rand::random();
        write_private(&path, &crate::hex::encode(&secret))?;
        // Another process may have raced us; whatever is on disk now wins.
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        ServiceKey::from_hex(&text)
    }

    /// A credential for `service`, valid at least [`LIFETIME_SECONDS`] less
    /// a minute: the one issued for it in the last minute, or a new one.
    pub fn issue(&self, service: &str) -> anyhow::Result<String> {
        let iat = now();
        if let Some((token, issued_at)) = lock(&self.0.issued).get(service) {
            if *issued_at <= iat && iat - issued_at < REISSUE_AFTER_SECONDS {
                return Ok(token.clone());
            }
        }
        let token = self.sign(service, iat)?;
        lock(&self.0.issued).insert(service.to_owned(), (token.clone(), iat));
        Ok(token)
    }

    fn sign(&self, service: &str, iat: u64) -> anyhow::Result<String> {
        let claims = Claims {
            sub: service.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + LIFETIME_SECONDS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .context("Failed to sign a service credential")
    }

    /// HMAC-SHA256 of `data` under a key derived from the service key for
    /// `purpose`, so that values a service hands out (page tokens) cannot be
    /// forged or altered, and a MAC made for one purpose is worthless for
    /// another.
    pub fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        use ring::hmac;
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.0.secret),
            purpose.as_bytes(),
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The service named by a valid credential. One verified before is
    /// taken from memory until it expires.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        if let Some((sub, exp)) = lock(&self.0.verified).get(token) {
            if now() < *exp {
                return Ok(sub.clone());
            }
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map_err(|e| ApiError::unauthorized(refusal(e.kind())))?
            .claims;
        let mut verified = lock(&self.0.verified);
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_owned(), (claims.sub.clone(), claims.exp));
        Ok(claims.sub)
    }
}

/// What a caller is told when its service credential is refused: what is
/// wrong and what to do, not the JWT library's error name.
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => {
            "this route is for services: it takes a service credential (print one with `ecom token --service NAME`), not a user's ID token".to_owned()
        }
        ErrorKind::InvalidSignature => {
            "invalid service credential: it was signed with another service key (was it made for another data dir or ECOM_SERVICE_KEY than the server's?)".to_owned()
        }
        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
            "the service credential has expired: make a new one with `ecom token --service NAME`".to_owned()
        }
        other => format!("invalid service credential ({other:?}): make one with `ecom token --service NAME`"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => f
            .write_all(text.as_bytes())
            .with_context(|| format!("Failed to write {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("Failed to create {}", path.display())),
    }
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("Failed to write {}", path.display()))
}

/// Middleware for `/backend/` routes: refuses (401) any request without a
/// valid service credential in `Authorization: Bearer …`.
pub async fn require_service(
    State(key): State<ServiceKey>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(req.headers()).ok_or_else(|| {
        ApiError::unauthorized(
            "this route is for services: send a service credential as 'Authorization: Bearer …'",
        )
    })?;
    let caller = key.verify(token)?;
    req.extensions_mut().insert(ServiceCaller(caller));
    Ok(next.run(req).await)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl<S: Send + Sync> FromRequestParts<S> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ServiceCaller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("a service credential is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_names_its_service_and_only_our_key_accepts_it() {
        let key = ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let other = ServiceKey::from_secret(b"fedcba9876543210fedcba9876543210");
        let token = key.issue("orders").unwrap();
        assert_eq!(key.verify(&token).ok(), Some("orders".to_owned()));
        assert!(other.verify(&token).is_err());
        assert!(key.verify("not-a-token").is_err());
    }

    #[test]
    fn macs_depend_on_key_purpose_and_data() {
        let key = ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let other = ServiceKey::from_secret(b"fedcba9876543210fedcba9876543210");
        assert_eq!(key.mac("page", b"x"), key.mac("page", b"x"));
        assert_ne!(key.mac("page", b"x"), key.mac("page", b"y"));
        assert_ne!(key.mac("page", b"x"), key.mac("other", b"x"));
        assert_ne!(key.mac("page", b"x"), other.mac("page", b"x"));
    }

    #[test]
    fn credentials_are_reused_per_service_and_remembered_once_verified() {
        let key = ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let orders = key.issue("orders").unwrap();
        assert_eq!(key.issue("orders").unwrap(), orders, "reissued within the minute");
        let payment = key.issue("payment").unwrap();
        assert_ne!(payment, orders);
        for _ in 0..2 {
            assert_eq!(key.verify(&orders).ok(), Some("orders".to_owned()));
            assert_eq!(key.verify(&payment).ok(), Some("payment".to_owned()));
        }
        // A token the other key signed is still refused once ours are remembered.
        let other = ServiceKey::from_secret(b"fedcba9876543210fedcba9876543210");
        assert!(key.verify(&other.issue("orders").unwrap()).is_err());
        // An expired credential is refused, and not remembered.
        let expired = key.sign("orders", now() - LIFETIME_SECONDS - 60).unwrap();
        assert!(key.verify(&expired).is_err());
        assert!(key.verify(&expired).is_err());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let key = ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef");
        // {"alg":"none"} . {"sub":"orders","iss":"ecom","aud":"ecom-backend","exp":9999999999} .
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJvcmRlcnMiLCJpc3MiOiJlY29tIiwiYXVkIjoiZWNvbS1iYWNrZW5kIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(key.verify(none).is_err());
    }

    #[test]
    fn the_generated_key_is_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServiceKey::load_or_create(None, dir.path()).unwrap();
        let second = ServiceKey::load_or_create(None, dir.path()).unwrap();
        let token = first.issue("payment").unwrap();
        assert_eq!(second.verify(&token).ok(), Some("payment".to_owned()));
    }
}
