//! payment's backend routes (service credential only):
//!
//! - `POST /payment/backend/validate` `{paymentToken, total, orderId}` →
//!   `{"ok": true}` when the token holds at least `total` at the card
//!   processor and `orderId` now holds the token; `{"ok": false, "reason":
//!   "Payment token already used"}` when another order holds it;
//!   `{"ok": false}` when the processor does not cover `total`.
//! - `POST /payment/backend/release` `{paymentToken, orderId}` →
//!   `{"ok": bool}`: drops the order's unconfirmed claim (orders calls it
//!   when it refuses the order for another reason), so the shopper can
//!   retry with the same token at once.

use crate::store;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use ecom_model::{Money, Timestamp};
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// How long an unconfirmed claim keeps its token from other orders. A claim
/// is confirmed by its order's `OrderCreated` within milliseconds, or
/// released when the order is refused; one that stays unconfirmed belongs
/// to a createOrder whose caller crashed (or whose release was lost). Long
/// enough that no live createOrder (3 s checks) nor a slow `OrderCreated`
/// is overtaken, short enough that a shopper whose checkout died can use
/// the token again soon.
pub const CLAIM_TTL: Duration = Duration::from_secs(10 * 60);

/// The reason `validate` gives for a token another order holds; orders
/// shows it to the shopper as is.
pub const ALREADY_USED: &str = "Payment token already used";

/// The service's routes.
pub fn router(ctx: &Context) -> Router {
    ctx.backend(
        Router::new()
            .route("/backend/validate", post(validate))
            .route("/backend/release", post(release))
            .with_state(ctx.clone()),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidateRequest {
    payment_token: String,
    total: Money,
    order_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseRequest {
    payment_token: String,
    order_id: Uuid,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    ok: bool,
}

/// µs since the epoch before which an unconfirmed claim is stale.
fn stale_before() -> i64 {
    let ttl = i64::try_from(CLAIM_TTL.as_micros()).unwrap_or(i64::MAX);
    Timestamp::now().unix_micros().saturating_sub(ttl)
}

async fn validate(
    State(ctx): State<Context>,
    Json(req): Json<ValidateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Both at once: the claim is one INSERT in payment's own database, the
    // check one read at the processor, so the claim costs createOrder no
    // extra round trip.
    let amount = amount_request(&req.payment_token, req.total);
    let check = ask(&ctx, "/check", &amount);
    let claim = store::claim(&ctx.db, &req.payment_token, req.order_id, stale_before());
    let (covered, claimed) = tokio::join!(check, claim);
    let claimed = match claimed {
        Ok(claimed) => claimed,
        // The claim's statement failed: nothing was claimed, nothing to release.
        Err(e) => return Err(ApiError::internal(e)),
    };
    if !claimed {
        return Ok(Json(json!({ "ok": false, "reason": ALREADY_USED })));
    }
    let covered = match covered {
        Ok(covered) => covered,
        Err(e) => {
            tracing::warn!(error = %e, "payment-3p check failed");
            release_quietly(&ctx, &req.payment_token, req.order_id).await;
            return Err(ApiError::unavailable("the card processor does not answer"));
        }
    };
    if !covered {
        release_quietly(&ctx, &req.payment_token, req.order_id).await;
    }
    Ok(Json(json!({ "ok": covered })))
}

/// Drops a claim this validation made and no longer needs; a failure only
/// leaves the claim to expire.
async fn release_quietly(ctx: &Context, token: &str, order_id: Uuid) {
    if let Err(e) = store::release(&ctx.db, token, order_id).await {
        tracing::warn!(error = %e, %order_id, "could not release a payment claim; it expires on its own");
    }
}

async fn release(
    State(ctx): State<Context>,
    Json(req): Json<ReleaseRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let released = store::release(&ctx.db, &req.payment_token, req.order_id).await?;
    Ok(Json(json!({ "ok": released })))
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
