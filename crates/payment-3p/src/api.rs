//! The public API: `/payment-3p/preauth`, `/check`, `/updateAmount`,
//! `/processPayment`, `/cancelPayment`. Unknown tokens answer `ok: false`;
//! malformed requests answer 400 naming the field.

use crate::domain::{CardNumber, TokenStatus};
use crate::store::{self, TokenWriter};
use axum::extract::State;
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
    Router::new()
        .route("/preauth", post(preauth))
        .route("/check", post(check))
        .route("/updateAmount", post(update_amount))
        .route("/processPayment", post(process_payment))
        .route("/cancelPayment", post(cancel_payment))
        .with_state(Tokens {
            db: ctx.db.clone(),
            writer: TokenWriter::start(ctx.db.clone()),
        })
}

/// The service's state: its database, and the writer that groups new tokens.
#[derive(Clone)]
struct Tokens {
    db: Db,
    writer: TokenWriter,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreauthRequest {
    card_number: CardNumber,
    amount: Money,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PreauthResponse {
    payment_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmountRequest {
    payment_token: String,
    amount: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    payment_token: String,
}

fn ok(value: bool) -> Json<Value> {
    Json(json!({ "ok": value }))
}

async fn preauth(
    State(Tokens { writer, .. }): State<Tokens>,
    Json(req): Json<PreauthRequest>,
) -> Result<Json<PreauthResponse>, ApiError> {
    let token = writer.create(req.amount, req.card_number.last4()).await?;
    Ok(Json(PreauthResponse {
        payment_token: token.to_string(),
    }))
}

async fn check(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<AmountRequest>,
) -> Result<Json<Value>, ApiError> {
    let held = store::authorised_amount(&db, &req.payment_token).await?;
    Ok(ok(held.is_some_and(|held| held >= req.amount.cents())))
}

async fn update_amount(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<AmountRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(
        store::update_amount(&db, &req.payment_token, req.amount).await?
    ))
}

async fn process_payment(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(store::consume(
        &db,
        &req.payment_token,
        TokenStatus::Processed,
    )
    .await?))
}

async fn cancel_payment(
    State(Tokens { db, .. }): State<Tokens>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(store::consume(
        &db,
        &req.payment_token,
        TokenStatus::Cancelled,
    )
    .await?))
}
