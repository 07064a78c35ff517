//! `POST /payment/backend/validate` `{paymentToken, total}` → `{"ok": bool}`:
//! whether the token holds at least `total` at the card processor.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use ecom_model::Money;
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The service's routes.
pub fn router(ctx: &Context) -> Router {
    ctx.backend(
        Router::new()
            .route("/backend/validate", post(validate))
            .with_state(ctx.clone()),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidateRequest {
    payment_token: String,
    total: Money,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    ok: bool,
}

async fn validate(
    State(ctx): State<Context>,
    Json(req): Json<ValidateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ok = ask(&ctx, "/check", &amount_request(&req.payment_token, req.total))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "payment-3p check failed");
            ApiError::unavailable("the card processor does not answer")
        })?;
    Ok(Json(json!({ "ok": ok })))
}

/// Calls a payment-3p route and returns its `ok`. An error means no answer
/// (worth retrying); `ok: false` is an answer.
pub(crate) async fn ask(ctx: &Context, path: &str, body: &impl Serialize) -> anyhow::Result<bool> {
    let answer: Answer = ctx.clients.get("payment-3p")?.post(path, body).await?;
    Ok(answer.ok)
}

/// `{paymentToken, amount}`, as payment-3p's `/check` and `/updateAmount` take.
pub(crate) fn amount_request(token: &str, amount: Money) -> serde_json::Value {
    json!({ "paymentToken": token, "amount": amount })
}
