//! End-user authentication: verifying the ID tokens (JWTs) the users
//! service signs.
//!
//! The users service signs with Ed25519 (`alg: EdDSA`) and publishes its
//! public keys at `GET /users/.well-known/jwks.json`. A [`Verifier`] fetches
//! that key set through [`Clients`](crate::Clients) (in process when users
//! runs here, over HTTP at `ECOM_USERS_URL` otherwise), keeps the keys by
//! `kid`, and fetches again when a token names a `kid` it does not know (at
//! most once per [`REFETCH_INTERVAL`], so forged `kid`s cannot make it hammer
//! the users service) and when its key set is older than [`KEYSET_MAX_AGE`],
//! so that a key the users service retired stops being trusted, together
//! with the tokens it signed that were remembered as verified. It accepts only `EdDSA` (so `alg: none` and HMAC
//! tokens are refused), our issuer and audience, and unexpired tokens.
//!
//! # In a handler
//!
//! The binary puts one `Verifier` into every request's extensions
//! (`router.layer(axum::Extension(verifier))`), so any handler, whatever its
//! state, can ask for the caller:
//!
//! ```ignore
//! use ecom_contracts::Group;
//! use ecom_runtime::auth::User;
//!
//! async fn my_orders(User(claims): User, State(db): State<Db>) -> Result<Json<Value>, ApiError> {
//!     claims.require_group(Group::WAREHOUSE_STAFF)?; // 403 unless warehouse staff or admin
//!     // claims.sub is the user id
//! }
//! ```
//!
//! `User` reads `Authorization: Bearer <idToken>` or, as the original's
//! GraphQL API allowed, the bare token. No or a bad token answers 401.
//! `Option<User>` is `None` without an `Authorization` header (and still
//! 401 for a bad token), for routes open to anonymous callers.
//!
//! # Speed
//!
//! An Ed25519 signature check costs tens of microseconds. Every
//! authenticated request checks one, mostly the same token again and again,
//! so verified tokens are remembered (up to [`CACHE_CAPACITY`], keyed by the
//! whole token string including its signature, and only until their `exp`).
//! A tampered token is a different string and is checked in full.
//!
//! # Revocation
//!
//! A token carries `ver`, the user's token version when it was issued. The
//! users service raises a user's version when it deletes them or removes
//! one of their groups, and tells every [`Verifier`]: the one of its own
//! process at once ([`Verifier::revoke`]), the others through
//! `GET /users/backend/revocations?since=…`, which each process polls
//! every [`REVOCATION_POLL_INTERVAL`] ([`Verifier::poll_revocations`]). A
//! token whose `ver` is below its user's known version is refused with 401,
//! cached or not; a new sign-in gets the new version and works at once. A
//! revocation is kept [`REVOCATION_KEPT`], longer than any ID token lives.

use crate::{ApiError, BackendClient};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use ecom_contracts::Group;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `iss` of every ID token.
pub const ISSUER: &str = "ecom-users";
/// `aud` of every ID token.
pub const AUDIENCE: &str = "ecom";
/// The one algorithm ID tokens are signed with.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;
/// Where the users service publishes its public keys (below `/users`).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Shortest time between two fetches of the key set.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// How old a fetched key set may grow before the next verification fetches
/// it again (a retired key is trusted at most this long after).
pub const KEYSET_MAX_AGE: Duration = Duration::from_secs(300);
/// How many verified tokens are remembered.
pub const CACHE_CAPACITY: usize = 10_000;
/// Tolerated clock difference between signer and verifier, in seconds.
const LEEWAY_SECONDS: u64 = 10;
/// How often a process asks the users service for new revocations: a
/// revocation made in another process is in force here within twice this.
pub const REVOCATION_POLL_INTERVAL: Duration = Duration::from_secs(25);
/// How long a revocation is remembered: longer than an ID token lives
/// (an hour), after which every token it refused has expired anyway.
pub const REVOCATION_KEPT: Duration = Duration::from_secs(3 * 3600);
/// Where the users service lists revocations (below `/users`).
pub const REVOCATIONS_PATH: &str = "/backend/revocations";

/// The claims of a verified end-user ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// Staff groups: `admin`, `warehouse`, `delivery`.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Claims {
    /// Whether the user belongs to at least one of `groups`. A group name
    /// in the token that is no [`Group`] (none is issued) matches nothing.
    pub fn belongs_to(&self, groups: &[Group]) -> bool {
        self.groups
            .iter()
            .any(|g| groups.iter().any(|wanted| wanted.as_str() == g))
    }

    /// Ok when the user belongs to at least one of `groups`; 403 otherwise.
    pub fn require_group(&self, groups: &[Group]) -> Result<(), ApiError> {
        if self.belongs_to(groups) {
            Ok(())
        } else {
            let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "this operation needs one of the groups: {}",
                names.join(", ")
            )))
        }
    }
}

/// What an ID token carries on the wire: [`Claims`] plus the registered
/// claims. The users service signs this; [`Verifier`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// Staff groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Issuer, [`ISSUER`].
    pub iss: String,
    /// Audience, [`AUDIENCE`].
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The user's token version when issued (see "Revocation" above);
    /// absent (0) in tokens of users never revoked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ver: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One user's revocation: tokens with a `ver` below `version` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// The user.
    pub user_id: String,
    /// The lowest token version still accepted.
    pub version: u64,
    /// When it was revoked (Unix microseconds).
    pub revoked_at: i64,
}

/// What `GET /users/backend/revocations?since=…` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocations {
    /// Revocations made at or after `since` (and within [`REVOCATION_KEPT`]).
    pub revocations: Vec<Revocation>,
    /// The users service's clock (Unix microseconds), for the next `since`.
    pub now: i64,
}

impl TokenClaims {
    /// Claims for `user`, issued now and valid `lifetime`.
    pub fn issue(claims: Claims, lifetime: Duration) -> TokenClaims {
        let iat = unix_now();
        TokenClaims {
            sub: claims.sub,
            email: claims.email,
            groups: claims.groups,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + lifetime.as_secs(),
            ver: 0,
        }
    }

    /// The same claims at token version `ver`.
    pub fn with_version(mut self, ver: u64) -> TokenClaims {
        self.ver = ver;
        self
    }
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks end-user tokens. Cheap to clone; clones share keys and cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    validation: Validation,
    /// Public keys by `kid`. A std lock: held only for map look-ups, never
    /// across an await.
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    /// Serialises fetches and remembers when the last one ended and
    /// whether it succeeded.
    fetch: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// When the key set was last fetched (Unix seconds; 0 = never).
    fetched_at: AtomicU64,
    /// No refresh of a stale key set is tried before this (Unix seconds),
    /// so that an unreachable users service costs verifications nothing.
    refresh_after: AtomicU64,
    /// Verified tokens: their claims, until when, and the `kid` that signed.
    cache: Mutex<HashMap<String, Remembered>>,
    /// Known revocations: the lowest accepted version and when revoked
    /// (Unix µs), by user id. Empty almost always, so checked only when
    /// `any_revoked` says there is something to check.
    revoked: RwLock<HashMap<String, (u64, i64)>>,
    any_revoked: std::sync::atomic::AtomicBool,
}

struct Remembered {
    claims: Claims,
    until: u64,
    kid: String,
    ver: u64,
}

enum Source {
    /// No users service is reachable: every token is refused.
    Unavailable(String),
    /// A fixed key set (tests, benchmarks).
    Fixed,
    /// The users service's JWKS.
    Users(BackendClient),
}

impl Default for Verifier {
    /// A verifier that refuses every token (no users service configured).
    fn default() -> Verifier {
        Verifier::with_source(Source::Unavailable(
            "user authentication is not configured: run the users service or set ECOM_USERS_URL".to_owned(),
        ))
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(…)")
    }
}

impl Verifier {
    /// A verifier fetching keys from the users service through `users`
    /// (`clients.get(Service::Users)`); when that failed, one refusing every
    /// token with the reason.
    pub fn from_users(users: anyhow::Result<BackendClient>) -> Verifier {
        match users {
            Ok(client) => Verifier::with_source(Source::Users(client)),
            Err(e) => Verifier::with_source(Source::Unavailable(format!(
                "user authentication is not available: {e}"
            ))),
        }
    }

    /// A verifier trusting exactly the keys of `jwks` (tests, benchmarks).
    pub fn from_jwks(jwks: &JwkSet) -> Verifier {
        let verifier = Verifier::with_source(Source::Fixed);
        verifier.install(jwks);
        verifier
    }

    fn with_source(source: Source) -> Verifier {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        Verifier {
            inner: Arc::new(Inner {
                source,
                validation,
                keys: RwLock::new(HashMap::new()),
                fetch: tokio::sync::Mutex::new(None),
                fetched_at: AtomicU64::new(0),
                refresh_after: AtomicU64::new(0),
                cache: Mutex::new(HashMap::new()),
                revoked: RwLock::new(HashMap::new()),
                any_revoked: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The claims of a valid token; 401 otherwise (503 when the keys cannot
    /// be fetched).
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let now = unix_now();
        let fetched_at = self.inner.fetched_at.load(Ordering::Acquire);
        if fetched_at != 0
            && now.saturating_sub(fetched_at) >= KEYSET_MAX_AGE.as_secs()
            && now >= self.inner.refresh_after.load(Ordering::Acquire)
        {
            self.refresh(fetched_at, now).await;
        }
        if let Some((claims, ver)) = self.cached(token, now) {
            return self.unless_revoked(claims, ver);
        }
        if let Source::Unavailable(reason) = &self.inner.source {
            return Err(ApiError::unauthorized(reason.clone()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        if header.alg != ALGORITHM {
            return Err(ApiError::unauthorized(format!(
                "invalid token: algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| ApiError::unauthorized("invalid token: no key id (kid)"))?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => self.refetch_for(&kid).await?,
        };
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key, &self.inner.validation)
            .map_err(|e| invalid(&e))?;
        let t = data.claims;
        let claims = Claims {
            sub: t.sub,
            email: t.email,
            groups: t.groups,
        };
        self.remember(
            token,
            &claims,
            &kid,
            t.ver,
            t.exp.saturating_add(LEEWAY_SECONDS),
            now,
        );
        self.unless_revoked(claims, t.ver)
    }

    /// `claims` of a token at version `ver`, or 401 when its user's tokens
    /// of that version were revoked.
    fn unless_revoked(&self, claims: Claims, ver: u64) -> Result<Claims, ApiError> {
        if !self.inner.any_revoked.load(Ordering::Acquire) {
            return Ok(claims);
        }
        let lowest = self
            .inner
            .revoked
            .read()
            .ok()
            .and_then(|r| r.get(&claims.sub).map(|(version, _)| *version));
        match lowest {
            Some(lowest) if ver < lowest => Err(ApiError::unauthorized(
                "this token was revoked (the account was deleted or its groups changed): sign in again",
            )),
            _ => Ok(claims),
        }
    }

    /// Refuses from now on the tokens of each user below its version (the
    /// users service calls this in its own process; polling brings the
    /// same to the others). Keeps the highest version known per user and
    /// forgets revocations older than [`REVOCATION_KEPT`].
    pub fn revoke(&self, revocations: &[Revocation]) {
        let Ok(mut known) = self.inner.revoked.write() else {
            return;
        };
        for r in revocations {
            let entry = known.entry(r.user_id.clone()).or_insert((0, r.revoked_at));
            if r.version >= entry.0 {
                *entry = (r.version, r.revoked_at.max(entry.1));
            }
        }
        let kept = i64::try_from(REVOCATION_KEPT.as_micros()).unwrap_or(i64::MAX);
        let oldest = unix_micros().saturating_sub(kept);
        known.retain(|_, (_, at)| *at >= oldest);
        self.inner.any_revoked.store(!known.is_empty(), Ordering::Release);
    }

    /// Asks the users service for revocations every
    /// [`REVOCATION_POLL_INTERVAL`] until `stop` completes (from the start,
    /// so a process that starts late still learns the recent ones). Does
    /// nothing without a users service. Failures are logged and retried at
    /// the next interval.
    pub async fn poll_revocations(self, stop: impl std::future::Future<Output = ()>) {
        let Source::Users(client) = &self.inner.source else {
            return;
        };
        // Transactions commit in another order than their clocks read:
        // each poll looks a little further back than the last answer.
        const OVERLAP_MICROS: i64 = 60_000_000;
        let mut since = 0i64;
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(REVOCATION_POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let path = format!("{REVOCATIONS_PATH}?since={since}");
            match client.get::<Revocations>(&path).await {
                Ok(answer) => {
                    self.revoke(&answer.revocations);
                    since = answer.now.saturating_sub(OVERLAP_MICROS).max(0);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not fetch token revocations from the users service")
                }
            }
        }
    }

    fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.inner.keys.read().ok()?.get(kid).cloned()
    }

    /// Fetches the key set again because the one fetched at `stale` is too
    /// old, unless another request did meanwhile. On failure the old set
    /// stays (the users service may be restarting) and is tried again at
    /// the next [`REFETCH_INTERVAL`].
    async fn refresh(&self, stale: u64, now: u64) {
        let Source::Users(client) = &self.inner.source else {
            return;
        };
        let mut last = self.inner.fetch.lock().await;
        if self.inner.fetched_at.load(Ordering::Acquire) != stale {
            return;
        }
        self.inner
            .refresh_after
            .store(now + REFETCH_INTERVAL.as_secs(), Ordering::Release);
        let fetched = client.get::<JwkSet>(JWKS_PATH).await;
        *last = Some((Instant::now(), fetched.is_ok()));
        match fetched {
            Ok(jwks) => self.install(&jwks),
            Err(e) => tracing::warn!(error = %e, "could not refresh the users service's public keys"),
        }
    }

    /// Fetches the key set again, unless another fetch ran too recently,
    /// and returns the key `kid` if it is now known.
    async fn refetch_for(&self, kid: &str) -> Result<Arc<DecodingKey>, ApiError> {
        let unknown = || ApiError::unauthorized("invalid token: signed with an unknown key");
        let Source::Users(client) = &self.inner.source else {
            return Err(unknown());
        };
        let mut last = self.inner.fetch.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.key(kid) {
            return Ok(key);
        }
        let unavailable =
            || ApiError::unavailable("cannot check the token now: the users service's keys are unavailable");
        match *last {
            Some((at, fetched)) if at.elapsed() < REFETCH_INTERVAL => {
                return Err(if fetched { unknown() } else { unavailable() });
            }
            _ => {}
        }
        let fetched = client.get::<JwkSet>(JWKS_PATH).await;
        *last = Some((Instant::now(), fetched.is_ok()));
        let jwks = fetched.map_err(|e| {
            tracing::warn!(error = %e, "could not fetch the users service's public keys");
            unavailable()
        })?;
        self.install(&jwks);
        self.key(kid).ok_or_else(unknown)
    }

    /// Replaces the known keys by the Ed25519 keys of `jwks`: a key removed
    /// from the set stops being trusted, and so do the remembered tokens it
    /// signed.
    fn install(&self, jwks: &JwkSet) {
        let keys: HashMap<String, Arc<DecodingKey>> = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                match &jwk.algorithm {
                    AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                        DecodingKey::from_ed_components(&p.x)
                            .ok()
                            .map(|k| (kid, Arc::new(k)))
                    }
                    _ => None,
                }
            })
            .collect();
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.retain(|_, remembered| keys.contains_key(&remembered.kid));
        }
        if let Ok(mut known) = self.inner.keys.write() {
            *known = keys;
        }
        self.inner.fetched_at.store(unix_now().max(1), Ordering::Release);
    }

    fn cached(&self, token: &str, now: u64) -> Option<(Claims, u64)> {
        let cache = self.inner.cache.lock().ok()?;
        match cache.get(token) {
            Some(remembered) if remembered.until >= now => Some((remembered.claims.clone(), remembered.ver)),
            _ => None,
        }
    }

    fn remember(&self, token: &str, claims: &Claims, kid: &str, ver: u64, until: u64, now: u64) {
        let Ok(mut cache) = self.inner.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, remembered| remembered.until >= now);
            // Still full of live tokens: start again rather than track
            // recency; the cost is one signature check per token.
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            token.to_owned(),
            Remembered {
                claims: claims.clone(),
                until,
                kid: kid.to_owned(),
                ver,
            },
        );
    }
}

fn invalid(err: &jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    let why = match err.kind() {
        ErrorKind::ExpiredSignature => "the token has expired: sign in again or refresh it",
        ErrorKind::InvalidSignature => "invalid token: bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "invalid token: algorithm not accepted"
        }
        ErrorKind::InvalidIssuer => "invalid token: wrong issuer",
        ErrorKind::InvalidAudience => "invalid token: wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "invalid token: a required claim is missing",
        _ => "invalid token",
    };
    ApiError::unauthorized(why)
}

/// The token of an `Authorization` header: `Bearer <token>` or the bare
/// token. `None` without the header; 401 for another scheme.
pub fn token_from(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?
        .trim();
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        Some(_) => Err(ApiError::unauthorized(
            "send the ID token as 'Authorization: Bearer <idToken>'",
        )),
        None if value.is_empty() => Ok(None),
        None => Ok(Some(value)),
    }
}

/// The signed-in caller of a request (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub Claims);

fn verifier_of(parts: &Parts) -> Result<Verifier, ApiError> {
    parts.extensions.get::<Verifier>().cloned().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "no Verifier in the request extensions: add axum::Extension(verifier) to the router"
        ))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = token_from(&parts.headers)?
            .ok_or_else(|| ApiError::unauthorized("sign in first: send 'Authorization: Bearer <idToken>'"))?;
        verifier_of(parts)?.verify(token).await.map(User)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match token_from(&parts.headers)? {
            None => Ok(None),
            Some(token) => verifier_of(parts)?.verify(token).await.map(|c| Some(User(c))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_token_is_read_with_or_without_the_bearer_scheme() {
        assert_eq!(token_from(&headers("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(token_from(&headers("bearer  abc ")).unwrap(), Some("abc"));
        assert_eq!(token_from(&headers("abc")).unwrap(), Some("abc"));
        assert_eq!(token_from(&HeaderMap::new()).unwrap(), None);
        assert!(token_from(&headers("Basic dXNlcjpwYXNz")).is_err());
    }

    #[test]
    fn group_checks_answer_403_naming_the_groups() {
        let claims = Claims {
            sub: "u".into(),
            email: "a@b.c".into(),
            groups: vec!["warehouse".into()],
        };
        assert!(claims.require_group(Group::WAREHOUSE_STAFF).is_ok());
        let err = claims.require_group(Group::ADMINS).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::FORBIDDEN);
        assert!(err.message().contains("admin"));
    }

    /// A key pair: its JWKS (kid `kid`) and a signer.
    fn key(kid: &str) -> (JwkSet, impl Fn(&TokenClaims) -> String) {
        use base64::Engine as _;
        use jsonwebtoken::jwk::{CommonParameters, Jwk, OctetKeyPairParameters, OctetKeyPairType};
        use ring::signature::KeyPair as _;
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwks = JwkSet {
            keys: vec![Jwk {
                common: CommonParameters {
                    key_id: Some(kid.to_owned()),
                    ..Default::default()
                },
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                }),
            }],
        };
        let encoding = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        let kid = kid.to_owned();
        let sign = move |claims: &TokenClaims| {
            let mut header = jsonwebtoken::Header::new(ALGORITHM);
            header.kid = Some(kid.clone());
            jsonwebtoken::encode(&header, claims, &encoding).unwrap()
        };
        (jwks, sign)
    }

    fn shopper() -> Claims {
        Claims {
            sub: "u1".into(),
            email: "a@example.com".into(),
            groups: vec![],
        }
    }

    #[tokio::test]
    async fn a_token_of_a_known_key_is_accepted_and_others_are_not() {
        let (jwks, sign) = key("k1");
        let (_, sign_other) = key("k1");
        let (_, sign_unknown) = key("k2");
        let verifier = Verifier::from_jwks(&jwks);
        let token = sign(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        assert_eq!(verifier.verify(&token).await.unwrap(), shopper());
        // Again, from the cache.
        assert_eq!(verifier.verify(&token).await.unwrap(), shopper());
        let forged = sign_other(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        assert!(verifier.verify(&forged).await.is_err());
        let unknown = sign_unknown(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        let err = verifier.verify(&unknown).await.unwrap_err();
        assert!(err.message().contains("unknown key"), "{err}");
        let mut expired = TokenClaims::issue(shopper(), Duration::from_secs(60));
        expired.exp = expired.iat - 60;
        let err = verifier.verify(&sign(&expired)).await.unwrap_err();
        assert!(err.message().contains("expired"), "{err}");
    }

    #[test]
    fn a_remembered_token_is_forgotten_once_expired() {
        let verifier = Verifier::from_jwks(&JwkSet { keys: vec![] });
        verifier.remember("t", &shopper(), "k1", 0, 100, 50);
        assert_eq!(verifier.cached("t", 100), Some((shopper(), 0)));
        assert_eq!(verifier.cached("t", 101), None);
        assert_eq!(verifier.cached("other", 50), None);
    }

    #[tokio::test]
    async fn a_key_left_out_of_a_new_key_set_is_no_longer_trusted_nor_its_remembered_tokens() {
        let (old_set, sign_old) = key("old");
        let (new_set, sign_new) = key("new");
        let both = JwkSet {
            keys: old_set.keys.iter().chain(&new_set.keys).cloned().collect(),
        };
        let verifier = Verifier::from_jwks(&both);
        let old = sign_old(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        let new = sign_new(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        assert!(verifier.verify(&old).await.is_ok());
        assert!(verifier.verify(&new).await.is_ok());
        // The users service retired "old": its set no longer has it.
        verifier.install(&new_set);
        let err = verifier.verify(&old).await.unwrap_err();
        assert!(err.message().contains("unknown key"), "{err}");
        assert!(verifier.verify(&new).await.is_ok());
    }

    #[tokio::test]
    async fn a_revoked_version_is_refused_cached_or_not_and_a_newer_one_is_accepted() {
        let (jwks, sign) = key("k1");
        let verifier = Verifier::from_jwks(&jwks);
        let old = sign(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        assert!(verifier.verify(&old).await.is_ok());
        let revocation = |version| Revocation {
            user_id: "u1".into(),
            version,
            revoked_at: unix_micros(),
        };
        verifier.revoke(&[revocation(1)]);
        let err = verifier.verify(&old).await.unwrap_err();
        assert!(err.message().contains("revoked"), "{err}");
        let new = sign(&TokenClaims::issue(shopper(), Duration::from_secs(60)).with_version(1));
        assert!(verifier.verify(&new).await.is_ok());
        // An older revocation arriving late does not lower the version.
        verifier.revoke(&[revocation(0)]);
        assert!(verifier.verify(&old).await.is_err());
        // Another user is not concerned.
        let other = Claims {
            sub: "u2".into(),
            ..shopper()
        };
        assert!(verifier
            .verify(&sign(&TokenClaims::issue(other, Duration::from_secs(60))))
            .await
            .is_ok());
        // Revocations older than any token are forgotten.
        verifier.revoke(&[Revocation {
            user_id: "u3".into(),
            version: 1,
            revoked_at: 0,
        }]);
        assert!(verifier.inner.revoked.read().unwrap().get("u3").is_none());
    }

    #[tokio::test]
    async fn an_unreachable_users_service_answers_503_not_401() {
        let clients = crate::Clients::new(
            crate::ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            "tests",
            Default::default(),
            Default::default(),
            [("users".to_owned(), "http://127.0.0.1:1".to_owned())].into(),
        );
        let verifier = Verifier::from_users(clients.get(ecom_contracts::Service::Users));
        let (_, sign) = key("k1");
        let token = sign(&TokenClaims::issue(shopper(), Duration::from_secs(60)));
        for _ in 0..2 {
            let err = verifier.verify(&token).await.unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE, "{err}");
        }
    }

    #[tokio::test]
    async fn without_a_users_service_every_token_is_refused() {
        let err = Verifier::default().verify("a.b.c").await.unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
    }
}
