//! The users routes (below `/users`).
//!
//! Public: `POST /sign-up`, `POST /sign-in`, `POST /refresh`,
//! `POST /sign-out`, `GET /.well-known/jwks.json`.
//! Signed in: `GET /me` (the caller's account).
//! Admin (group `admin`): `POST /admin/users`, `GET /admin/users`,
//! `GET|DELETE /admin/users/{userId}`, `PUT /admin/users/{userId}/password`,
//! `PUT|DELETE /admin/users/{userId}/groups/{group}`.
//! Services: `GET /backend/users/{userId}`,
//! `GET /backend/revocations?since=<Unix µs>` (see `ecom_runtime::auth`).
//!
//! Sign-in answers the same 401 for an unknown email and a wrong password,
//! after the same work (a dummy hash is checked for unknown emails), and is
//! rate-limited per (account, address), per address and per account (see
//! `limits`). Sign-up answers 409 for a taken email: a shop cannot hide that
//! from someone trying to register, so sign-up is rate-limited per client
//! address (see docs/decisions.md). The client address is the socket's
//! peer, or what `X-Forwarded-For` says when the peer is a trusted proxy.
//! Password hashing goes through a `passwords::Gate`: past its queue, 503.

use crate::accounts::{self, CreateError};
use crate::domain::{Email, Group, NewPassword};
use crate::keys::SigningKeys;
use crate::limits::{self, Limiter, Rate};
use crate::passwords::{Gate, GateError};
use crate::store;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ecom_platform::{Context, Outbox};
use ecom_runtime::auth::{Claims, Revocation, Revocations, TokenClaims, User, Verifier, REVOCATION_KEPT};
use ecom_runtime::limits::TrustedProxies;
use ecom_runtime::{ApiError, Json, Path, Query};
use ecom_storage::Db;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long an ID token is valid. A constant for now: the platform's
/// configuration has no users table yet.
pub const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a refresh token is valid (each use replaces it).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Page size of the user list when the caller gives none, and the largest.
const PAGE: (i64, i64) = (20, 100);

#[derive(Clone)]
struct Users {
    db: Db,
    outbox: Outbox,
    keys: Arc<SigningKeys>,
    limiter: Arc<Limiter>,
    gate: Gate,
    proxies: TrustedProxies,
    /// Sign-ups per client address; `None`: no limit.
    sign_up_rate: Option<Rate>,
    /// This process's token verifier, told of revocations at once.
    verifier: Verifier,
}

/// The service's routes; loads (or creates) the signing key first.
pub async fn router(ctx: &Context) -> anyhow::Result<Router> {
    let keys = SigningKeys::load_or_create(&ctx.db).await?;
    crate::passwords::prepare().await?;
    let settings = &ctx.config.users;
    let state = Users {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        keys: Arc::new(keys),
        limiter: Arc::new(Limiter::default()),
        gate: Gate::new(settings.hash_concurrency, settings.hash_queue),
        proxies: ctx.config.server.trusted_proxies.clone(),
        sign_up_rate: (settings.sign_ups_per_hour > 0)
            .then(|| limits::sign_up_rate(settings.sign_ups_per_hour)),
        verifier: ctx.verifier.clone(),
    };
    let backend = ctx.backend(
        Router::new()
            .route("/backend/users/{user_id}", get(backend_user))
            .route("/backend/revocations", get(backend_revocations))
            .with_state(state.clone()),
    );
    Ok(Router::new()
        .route("/sign-up", post(sign_up))
        .route("/sign-in", post(sign_in))
        .route("/refresh", post(refresh))
        .route("/sign-out", post(sign_out))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/me", get(me))
        .route("/admin/users", post(admin_create).get(admin_list))
        .route("/admin/users/{user_id}", get(admin_get).delete(admin_delete))
        .route("/admin/users/{user_id}/password", put(admin_set_password))
        .route(
            "/admin/users/{user_id}/groups/{group}",
            put(admin_add_group).delete(admin_remove_group),
        )
        .with_state(state)
        .merge(backend)
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi)))
}

/// The handlers of the OpenAPI document at `/users/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    sign_up,
    sign_in,
    refresh,
    sign_out,
    jwks,
    me,
    admin_create,
    admin_list,
    admin_get,
    admin_delete,
    admin_set_password,
    admin_add_group,
    admin_remove_group,
    backend_user,
    backend_revocations
))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SignUp {
    #[schema(value_type = String, format = Email)]
    email: Email,
    /// At least 8 characters (see `domain::NewPassword`).
    #[schema(value_type = String, format = Password)]
    password: NewPassword,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Created {
    user_id: String,
}

#[utoipa::path(post, path = "/sign-up", tag = "public", request_body = SignUp,
    responses((status = 201, body = Created, description = "Created; `UserCreated` is emitted"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "The email is taken"),
        (status = 429, body = ecom_runtime::openapi::Error, description = "Too many sign-ups from this address (`Retry-After`)"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "Too many passwords being hashed (`Retry-After`)")))]
async fn sign_up(
    State(s): State<Users>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<SignUp>,
) -> Result<Response, Refusal> {
    // Counted before hashing, taken email or not: the 409 is what a
    // stranger would probe for.
    let reservation = match (s.sign_up_rate, addr) {
        (Some(rate), Some(addr)) => {
            let key = format!("sign-up:{addr}");
            let reservation = s
                .limiter
                .reserve(&[(&key, rate)])
                .map_err(|wait| Refusal::TooMany {
                    wait,
                    what: "sign-ups from this address",
                })?;
            Some(reservation)
        }
        _ => None,
    };
    let created = create(&s, &req.email, &req.password, &[]).await;
    if created.is_ok() {
        signed_up("sign-up");
    }
    if let (Err(Refusal::Busy), Some(reservation)) = (&created, reservation) {
        s.limiter.refund(reservation);
    }
    created
}

async fn create(
    s: &Users,
    email: &Email,
    password: &NewPassword,
    groups: &[Group],
) -> Result<Response, Refusal> {
    match accounts::create(&s.db, &s.outbox, &s.gate, email, password, groups).await {
        Ok(user_id) => Ok((StatusCode::CREATED, Json(Created { user_id })).into_response()),
        Err(CreateError::EmailTaken) => {
            Err(ApiError::conflict("email: an account with this email already exists").into())
        }
        Err(CreateError::Busy) => Err(Refusal::Busy),
        Err(CreateError::Internal(e)) => Err(ApiError::internal(e).into()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SignIn {
    #[schema(value_type = String, format = Email)]
    email: Email,
    #[schema(format = Password)]
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Tokens {
    id_token: String,
    refresh_token: String,
    /// Seconds the ID token is valid.
    expires_in: u64,
}

/// A refusal of sign-up or sign-in: an API error, too many attempts (429),
/// or too many password hashes waiting (503); both of the latter say when
/// to retry.
enum Refusal {
    Api(ApiError),
    TooMany { wait: Duration, what: &'static str },
    Busy,
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        Refusal::Api(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e) => e.into_response(),
            Refusal::TooMany { wait, what } => {
                let seconds = wait.as_secs().max(1);
                let mut resp = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many {what}: try again in {seconds} seconds"),
                )
                .into_response();
                resp.headers_mut().insert(header::RETRY_AFTER, seconds.into());
                resp
            }
            Refusal::Busy => {
                let mut resp =
                    ApiError::unavailable("the server is busy checking passwords: try again in a second")
                        .into_response();
                resp.headers_mut().insert(header::RETRY_AFTER, 1.into());
                resp
            }
        }
    }
}

/// The client's address: the socket's peer, or the client a trusted proxy
/// names in `X-Forwarded-For`; `None` for in-process calls.
struct ClientAddr(Option<IpAddr>);

impl FromRequestParts<Users> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &Users) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(s.proxies.client_of(parts)))
    }
}

#[utoipa::path(post, path = "/sign-in", tag = "public", request_body = SignIn,
    responses((status = 200, body = Tokens, description = "Signed in"),
        (status = 401, body = ecom_runtime::openapi::Error, description = "Wrong email or password (the same answer for both)"),
        (status = 429, body = ecom_runtime::openapi::Error, description = "Too many failed sign-ins (`Retry-After`)"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "Too many passwords being hashed (`Retry-After`)")))]
async fn sign_in(
    State(s): State<Users>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<SignIn>,
) -> Result<Json<Tokens>, Refusal> {
    let ip = addr.map(|a| a.to_string()).unwrap_or_default();
    let pair = format!("pair:{}|{ip}", req.email);
    let address = format!("address:{ip}");
    let account = format!("account:{}", req.email);
    // Taken before the hash: parallel guesses cannot outrun the count.
    let reservation = s
        .limiter
        .reserve(&[
            (&pair, limits::PAIR),
            (&address, limits::ADDRESS),
            (&account, limits::ACCOUNT),
        ])
        .map_err(|wait| {
            sign_in_outcome("throttled");
            Refusal::TooMany {
                wait,
                what: "failed sign-ins",
            }
        })?;
    let found = store::credentials(&s.db, req.email.as_str())
        .await
        .map_err(ApiError::from);
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            s.limiter.refund(reservation);
            return Err(e.into());
        }
    };
    let (user_id, hash) = found.map_or((None, None), |(id, hash)| (Some(id), Some(hash)));
    let ok = match s.gate.verify(&req.password, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            s.limiter.refund(reservation);
            return Err(match e {
                GateError::Busy(_) => Refusal::Busy,
                GateError::Internal(e) => ApiError::internal(e).into(),
            });
        }
    };
    let Some(user_id) = user_id.filter(|_| ok) else {
        // The tokens stay taken: this failure counts.
        sign_in_outcome("failed");
        return Err(ApiError::unauthorized("wrong email or password").into());
    };
    // The owner: this attempt does not count, nor do earlier failures from
    // their own address.
    s.limiter.refund(reservation);
    s.limiter.reset(&pair);
    let tokens = issue(&s, &user_id).await?;
    sign_in_outcome("ok");
    Ok(Json(tokens))
}

/// A fresh ID token (with the user's current groups) and refresh token.
async fn issue(s: &Users, user_id: &str) -> Result<Tokens, ApiError> {
    // The version is read before the groups: a revocation committed in
    // between leaves the token with the old version (refused), never with
    // the new version and the old groups.
    let version = store::token_version(&s.db, user_id).await?;
    let user = store::get(&s.db, user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))?;
    let claims = TokenClaims::issue(
        Claims {
            sub: user.user_id,
            email: user.email,
            groups: user.groups,
        },
        ID_TOKEN_LIFETIME,
    )
    .with_version(version);
    let id_token = s.keys.sign(&claims).await?;
    let refresh_token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let expires_at = ecom_model::Timestamp::now().unix_micros()
        + i64::try_from(REFRESH_TOKEN_LIFETIME.as_micros()).unwrap_or(i64::MAX / 2);
    store::add_refresh_token(&s.db, &digest(&refresh_token), user_id, expires_at).await?;
    Ok(Tokens {
        id_token,
        refresh_token,
        expires_in: ID_TOKEN_LIFETIME.as_secs(),
    })
}

/// Refresh tokens are stored as their SHA-256: a leaked table holds no
/// usable token. (They are 256 random bits, so no salt or slow hash is needed.)
fn digest(token: &str) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    ecom_runtime::hex::encode(hash.as_ref())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: String,
}

#[utoipa::path(post, path = "/refresh", tag = "public", request_body = RefreshRequest,
    responses((status = 200, body = Tokens, description = "New tokens; the refresh token given is used up"),
        (status = 401, body = ecom_runtime::openapi::Error, description = "Invalid, expired or already used refresh token")))]
async fn refresh(State(s): State<Users>, Json(req): Json<RefreshRequest>) -> Result<Json<Tokens>, ApiError> {
    let user_id = store::take_refresh_token(&s.db, &digest(&req.refresh_token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("refreshToken: invalid, expired or already used"))?;
    Ok(Json(issue(&s, &user_id).await?))
}

#[utoipa::path(post, path = "/sign-out", tag = "public", request_body = RefreshRequest,
    responses((status = 204, description = "The refresh token no longer works (also when it never did)")))]
async fn sign_out(State(s): State<Users>, Json(req): Json<RefreshRequest>) -> Result<StatusCode, ApiError> {
    // Unknown or already revoked tokens answer the same: the goal is reached.
    store::take_refresh_token(&s.db, &digest(&req.refresh_token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "public",
    responses((status = 200, body = Object, description = "The public keys that verify ID tokens (JWKS)")))]
async fn jwks(State(s): State<Users>) -> Result<Json<jsonwebtoken::jwk::JwkSet>, ApiError> {
    Ok(Json(crate::keys::published(&s.db).await?))
}

#[utoipa::path(get, path = "/me", security(("idToken" = [])), tag = "signed in",
    responses((status = 200, body = crate::store::User, description = "The caller's account")))]
async fn me(User(claims): User, State(s): State<Users>) -> Result<Json<store::User>, ApiError> {
    store::get(&s.db, &claims.sub)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))
}

fn admin(claims: &Claims) -> Result<(), ApiError> {
    claims.require_group(Group::ADMINS)
}

fn no_user(user_id: &str) -> ApiError {
    ApiError::not_found(format!("no user {user_id}"))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AdminCreate {
    #[schema(value_type = String, format = Email)]
    email: Email,
    #[schema(value_type = String, format = Password)]
    password: NewPassword,
    /// `admin`, `warehouse` or `delivery`.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    groups: Vec<Group>,
}

#[utoipa::path(post, path = "/admin/users", security(("idToken" = [])), tag = "admin", request_body = AdminCreate,
    responses((status = 201, body = Created, description = "Created"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "The email is taken")))]
async fn admin_create(
    User(claims): User,
    State(s): State<Users>,
    Json(req): Json<AdminCreate>,
) -> Result<Response, Refusal> {
    admin(&claims)?;
    let created = create(&s, &req.email, &req.password, &req.groups).await;
    if created.is_ok() {
        signed_up("admin");
    }
    created
}

/// Counts a new account on `/metrics`, by how it was made (`sign-up` or
/// `admin`; `ecom users add` works on the database, not through a server).
/// Sign-ups are bound by password hashing, so the registry lookup is free.
fn signed_up(via: &str) {
    ecom_runtime::metrics::counter(
        "ecom_users_signed_up_total",
        "Accounts created, by how (sign-up or admin)",
        &[("via", via)],
    )
    .inc();
}

/// Counts a sign-in on `/metrics` by outcome: `ok`, `failed` (wrong email or
/// password) or `throttled` (refused before checking, too many failures).
fn sign_in_outcome(outcome: &str) {
    ecom_runtime::metrics::counter(
        "ecom_users_sign_ins_total",
        "Sign-ins by outcome: ok, failed (wrong email or password), throttled",
        &[("outcome", outcome)],
    )
    .inc();
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    limit: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserPage {
    #[schema(value_type = Vec<crate::store::User>)]
    users: Vec<store::User>,
    next_token: Option<String>,
}

#[utoipa::path(get, path = "/admin/users", security(("idToken" = [])), tag = "admin", params(ListQuery),
    responses((status = 200, body = UserPage, description = "A page of users"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin")))]
async fn admin_list(
    User(claims): User,
    State(s): State<Users>,
    Query(q): Query<ListQuery>,
) -> Result<Json<UserPage>, ApiError> {
    admin(&claims)?;
    let limit = q.limit.unwrap_or(PAGE.0);
    if !(1..=PAGE.1).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: must be between 1 and {}, got {limit}",
            PAGE.1
        )));
    }
    let after = q.next_token.unwrap_or_default();
    let users = store::list(&s.db, &after, limit).await?;
    let next_token = if users.len() as i64 == limit {
        users.last().map(|u| u.user_id.clone())
    } else {
        None
    };
    Ok(Json(UserPage { users, next_token }))
}

#[utoipa::path(get, path = "/admin/users/{user_id}", security(("idToken" = [])), tag = "admin", params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 200, body = crate::store::User, description = "The user"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such user")))]
async fn admin_get(
    User(claims): User,
    State(s): State<Users>,
    Path(user_id): Path<String>,
) -> Result<Json<store::User>, ApiError> {
    admin(&claims)?;
    store::get(&s.db, &user_id)
        .await?
        .map(Json)
        .ok_or_else(|| no_user(&user_id))
}

#[utoipa::path(delete, path = "/admin/users/{user_id}", security(("idToken" = [])), tag = "admin", params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 204, description = "Deleted; their ID tokens stop working"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such user")))]
async fn admin_delete(
    User(claims): User,
    State(s): State<Users>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&claims)?;
    match store::delete(&s.db, &user_id).await? {
        Some(revocation) => {
            s.verifier.revoke(&[revocation]);
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(no_user(&user_id)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SetPassword {
    #[schema(value_type = String, format = Password)]
    password: NewPassword,
}

#[utoipa::path(put, path = "/admin/users/{user_id}/password", security(("idToken" = [])), tag = "admin", params(("user_id" = String, Path, description = "The user's id")), request_body = SetPassword,
    responses((status = 204, description = "Password set"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such user"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "Too many passwords being hashed (`Retry-After`)")))]
async fn admin_set_password(
    User(claims): User,
    State(s): State<Users>,
    Path(user_id): Path<String>,
    Json(req): Json<SetPassword>,
) -> Result<StatusCode, Refusal> {
    admin(&claims)?;
    let hash = s.gate.hash(req.password.as_str()).await.map_err(|e| match e {
        GateError::Busy(_) => Refusal::Busy,
        GateError::Internal(e) => ApiError::internal(e).into(),
    })?;
    if store::set_password(&s.db, &user_id, &hash)
        .await
        .map_err(ApiError::from)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_user(&user_id).into())
    }
}

async fn set_group(s: &Users, user_id: &str, group: &str, member: bool) -> Result<StatusCode, ApiError> {
    let group: Group = group
        .parse()
        .map_err(|e| ApiError::bad_request(format!("group: {e}")))?;
    match store::set_group(&s.db, user_id, group, member).await? {
        store::GroupChange::NoUser => Err(no_user(user_id)),
        store::GroupChange::Done => Ok(StatusCode::NO_CONTENT),
        store::GroupChange::Revoked(revocation) => {
            s.verifier.revoke(&[revocation]);
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

#[utoipa::path(put, path = "/admin/users/{user_id}/groups/{group}", security(("idToken" = [])), tag = "admin", params(("user_id" = String, Path, description = "The user's id"),
        ("group" = String, Path, description = "`admin`, `warehouse` or `delivery`")),
    responses((status = 204, description = "The user is in the group"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such user")))]
async fn admin_add_group(
    User(claims): User,
    State(s): State<Users>,
    Path((user_id, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin(&claims)?;
    set_group(&s, &user_id, &group, true).await
}

#[utoipa::path(delete, path = "/admin/users/{user_id}/groups/{group}", security(("idToken" = [])), tag = "admin", params(("user_id" = String, Path, description = "The user's id"),
        ("group" = String, Path, description = "`admin`, `warehouse` or `delivery`")),
    responses((status = 204, description = "The user is not in the group; their ID tokens stop carrying it"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such user")))]
async fn admin_remove_group(
    User(claims): User,
    State(s): State<Users>,
    Path((user_id, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin(&claims)?;
    set_group(&s, &user_id, &group, false).await
}

#[utoipa::path(get, path = "/backend/users/{user_id}", security(("serviceCredential" = [])), tag = "backend", params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 200, body = crate::store::User, description = "The user"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such user")))]
async fn backend_user(
    State(s): State<Users>,
    Path(user_id): Path<String>,
) -> Result<Json<store::User>, ApiError> {
    store::get(&s.db, &user_id)
        .await?
        .map(Json)
        .ok_or_else(|| no_user(&user_id))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct SinceQuery {
    /// Unix µs; 0 or absent: every revocation still kept.
    since: Option<i64>,
}

/// Revocations made since `since` (and no older than
/// `REVOCATION_KEPT`), polled by every process's verifier.
#[utoipa::path(get, path = "/backend/revocations", security(("serviceCredential" = [])), tag = "backend", params(SinceQuery),
    responses((status = 200, body = Object, description = "`{revocations, now}`: token revocations since `since`, polled by every process's verifier")))]
async fn backend_revocations(
    State(s): State<Users>,
    Query(q): Query<SinceQuery>,
) -> Result<Json<Revocations>, ApiError> {
    let now = ecom_model::Timestamp::now().unix_micros();
    let kept = i64::try_from(REVOCATION_KEPT.as_micros()).unwrap_or(i64::MAX);
    let since = q.since.unwrap_or(0).max(now.saturating_sub(kept));
    let revocations: Vec<Revocation> = store::revocations_since(&s.db, since).await?;
    Ok(Json(Revocations { revocations, now }))
}
