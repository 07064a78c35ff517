//! The processor's API. `POST /payment-3p/preauth` is public (the shopper's
//! card entry); the merchant's operations — `/check`, `/updateAmount`,
//! `/processPayment`, `/cancelPayment`, `/refund`, `/status` — need a
//! service credential (401 otherwise), so nobody holding a token but the
//! shop can lower, cancel, capture or refund it. Unknown tokens answer
//! `ok: false` (`/status`: 404); malformed requests answer 400 naming the
//! field; the test cards that decline answer 402.

use crate::domain::CardNumber;
use crate::store::{self, TokenWriter};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use ecom_model::Money;
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};
use ecom_storage::Db;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The service's routes.
pub fn router(ctx: &Context) -> Router {
    let state = Tokens {
        db: ctx.db.clone(),
        writer: TokenWriter::start(ctx.db.clone()),
    };
    let merchant = ctx.backend(
        Router::new()
            .route("/check", post(check))
            .route("/updateAmount", post(update_amount))
            .route("/processPayment", post(process_payment))
            .route("/cancelPayment", post(cancel_payment))
            .route("/refund", post(refund))
            .route("/status", post(status))
            .with_state(state.clone()),
    );
    Router::new()
        .route("/preauth", post(preauth))
        .with_state(state)
        .merge(merchant)
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/payment-3p/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    preauth,
    check,
    update_amount,
    process_payment,
    cancel_payment,
    refund,
    status
))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The service's state: its database, and the writer that groups new tokens.
#[derive(Clone)]
struct Tokens {
    db: Db,
    writer: TokenWriter,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PreauthRequest {
    card_number: CardNumber,
    amount: Money,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PreauthResponse {
    payment_token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AmountRequest {
    payment_token: String,
    amount: Money,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    payment_token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProcessRequest {
    payment_token: String,
    /// The order the capture pays for; a retry naming the same order is
    /// answered `ok: true` without a second capture.
    #[serde(default)]
    order_id: Option<String>,
    /// What to capture; the whole authorised amount when absent.
    #[serde(default)]
    amount: Option<Money>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CancelRequest {
    payment_token: String,
    #[serde(default)]
    order_id: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RefundRequest {
    payment_token: String,
    amount: Money,
    /// Names the refund so a retry does not refund twice; a fresh id when absent.
    #[serde(default)]
    refund_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct StatusResponse {
    status: &'static str,
    authorised_amount: i64,
    captured_amount: Option<i64>,
    refunded_amount: i64,
    order_id: Option<String>,
}

fn ok(value: bool) -> Json<Value> {
    Json(json!({ "ok": value }))
}

#[utoipa::path(post, path = "/preauth", tag = "public", request_body = PreauthRequest,
    responses((status = 200, body = PreauthResponse, description = "Authorised: the token to give createOrder"),
        (status = 402, body = ecom_runtime::openapi::Error, description = "Declined (test cards 4000000000000002, and 4000000000009995 for insufficient funds)")))]
async fn preauth(
    State(Tokens { writer, .. }): State<Tokens>,
    Json(req): Json<PreauthRequest>,
) -> Result<Json<PreauthResponse>, ApiError> {
    if let Some(reason) = req.card_number.declined() {
        return Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, reason));
    }
    let token = writer.create(req.amount, req.card_number.last4()).await?;
    Ok(Json(PreauthResponse {
        payment_token: token.to_string(),
    }))
}

#[utoipa::path(post, path = "/check", security(("merchantCredential" = [])), tag = "merchant", request_body = AmountRequest,
    responses((status = 200, body = ecom_runtime::openapi::Ok, description = "Whether the token holds at least `amount` (unknown token: false)")))]
async fn check(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<AmountRequest>,
) -> Result<Json<Value>, ApiError> {
    let held = store::authorised_amount(&db, &req.payment_token).await?;
    Ok(ok(held.is_some_and(|held| held >= req.amount.cents())))
}

#[utoipa::path(post, path = "/updateAmount", security(("merchantCredential" = [])), tag = "merchant", request_body = AmountRequest,
    responses((status = 200, body = ecom_runtime::openapi::Ok, description = "Replaced when `amount` ≤ the authorised amount; false otherwise")))]
async fn update_amount(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<AmountRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(
        store::update_amount(&db, &req.payment_token, req.amount).await?
    ))
}

#[utoipa::path(post, path = "/processPayment", security(("merchantCredential" = [])), tag = "merchant", request_body = ProcessRequest,
    responses((status = 200, body = ecom_runtime::openapi::Ok, description = "Captured and the token consumed; false for an unknown, cancelled or consumed token")))]
async fn process_payment(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<ProcessRequest>,
) -> Result<Json<Value>, ApiError> {
    let order_id = req.order_id.as_deref().filter(|id| !id.is_empty());
    Ok(ok(
        store::process(&db, &req.payment_token, order_id, req.amount).await?
    ))
}

#[utoipa::path(post, path = "/cancelPayment", security(("merchantCredential" = [])), tag = "merchant", request_body = CancelRequest,
    responses((status = 200, body = ecom_runtime::openapi::Ok, description = "Cancelled and the token consumed; false for an unknown token")))]
async fn cancel_payment(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<CancelRequest>,
) -> Result<Json<Value>, ApiError> {
    let order_id = req.order_id.as_deref().filter(|id| !id.is_empty());
    Ok(ok(store::cancel(&db, &req.payment_token, order_id).await?))
}

#[utoipa::path(post, path = "/refund", security(("merchantCredential" = [])), tag = "merchant", request_body = RefundRequest,
    responses((status = 200, body = ecom_runtime::openapi::Ok, description = "Refunded when the token was captured and the refunds stay within the captured amount")))]
async fn refund(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<RefundRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.amount.cents() == 0 {
        return Err(ApiError::bad_request("amount: must be more than 0"));
    }
    let refund_id = match req.refund_id.filter(|id| !id.is_empty()) {
        Some(id) if id.chars().count() > 200 => {
            return Err(ApiError::bad_request("refundId: at most 200 characters"))
        }
        Some(id) => id,
        None => uuid::Uuid::new_v4().to_string(),
    };
    Ok(ok(
        store::refund(&db, &req.payment_token, req.amount, &refund_id).await?
    ))
}

#[utoipa::path(post, path = "/status", security(("merchantCredential" = [])), tag = "merchant", request_body = TokenRequest,
    responses((status = 200, body = StatusResponse, description = "Where the token is"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "Unknown payment token")))]
async fn status(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<StatusResponse>, ApiError> {
    let state = store::state(&db, &req.payment_token)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown payment token"))?;
    Ok(Json(StatusResponse {
        status: state.status.as_str(),
        authorised_amount: state.authorised_amount,
        captured_amount: state.captured_amount,
        refunded_amount: state.refunded_amount,
        order_id: state.order_id,
    }))
}
