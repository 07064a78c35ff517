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
//! - `POST /payment/backend/refunds` `{orderId, amount, refundId}` →
//!   `{"ok": true, "refunded": sum}`: refunds `amount` (> 0) of the order's
//!   captured payment at the card processor under `refundId` (the caller's
//!   name for this refund: the same id again with the same amount answers
//!   ok without refunding twice, with another amount 409), records it
//!   (`PARTIALLY_REFUNDED`, or `REFUNDED` once all is refunded) and emits
//!   `PaymentRefunded`. 400 for an amount ≤ 0 or above what is left to
//!   refund, 404 for an order payment does not know, 409 for a payment
//!   not captured or a refusal by the processor.

use crate::{domain, events, store, Metrics};
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use ecom_contracts::backend::{Ack, PaymentClaim, PaymentClaimAnswer, PaymentRelease, Refund, RefundAnswer};
use ecom_contracts::Service;
use ecom_model::{Money, Timestamp};
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
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
pub fn router(ctx: &Context, metrics: Arc<Metrics>) -> Router {
    let refunds = Router::new()
        .route("/backend/refunds", post(refund))
        .with_state(Refunds {
            ctx: ctx.clone(),
            metrics,
        });
    ctx.backend(
        Router::new()
            .route("/backend/validate", post(validate))
            .route("/backend/release", post(release))
            .with_state(ctx.clone())
            .merge(refunds),
    )
    .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/payment/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(validate, release, refund))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

#[derive(Clone)]
struct Refunds {
    ctx: Context,
    metrics: Arc<Metrics>,
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

#[utoipa::path(post, path = "/backend/validate", security(("serviceCredential" = [])), tag = "backend", request_body = PaymentClaim,
    responses((status = 200, body = PaymentClaimAnswer, description = "`ok: true` when the token covers `total` and the order now holds it"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "The card processor does not answer")))]
async fn validate(
    State(ctx): State<Context>,
    Json(req): Json<PaymentClaim>,
) -> Result<Json<PaymentClaimAnswer>, ApiError> {
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
        return Ok(Json(PaymentClaimAnswer {
            ok: false,
            reason: Some(ALREADY_USED.to_owned()),
        }));
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
    Ok(Json(PaymentClaimAnswer {
        ok: covered,
        reason: None,
    }))
}

/// Drops a claim this validation made and no longer needs; a failure only
/// leaves the claim to expire.
async fn release_quietly(ctx: &Context, token: &str, order_id: Uuid) {
    if let Err(e) = store::release(&ctx.db, token, order_id).await {
        tracing::warn!(error = %e, %order_id, "could not release a payment claim; it expires on its own");
    }
}

#[utoipa::path(post, path = "/backend/release", security(("serviceCredential" = [])), tag = "backend", request_body = PaymentRelease,
    responses((status = 200, body = Ack, description = "The order's unconfirmed claim on the token is dropped (`ok`: whether there was one)")))]
async fn release(State(ctx): State<Context>, Json(req): Json<PaymentRelease>) -> Result<Json<Ack>, ApiError> {
    let released = store::release(&ctx.db, &req.payment_token, req.order_id).await?;
    Ok(Json(Ack { ok: released }))
}

/// Calls a payment-3p route and returns its `ok`. An error means no answer
/// (worth retrying); `ok: false` is an answer.
pub(crate) async fn ask(ctx: &Context, path: &str, body: &impl Serialize) -> anyhow::Result<bool> {
    let answer: Answer = ctx.clients.get(Service::Payment3p)?.post(path, body).await?;
    Ok(answer.ok)
}

/// `{paymentToken, amount}`, as payment-3p's `/check` and `/updateAmount` take.
pub(crate) fn amount_request(token: &str, amount: Money) -> serde_json::Value {
    json!({ "paymentToken": token, "amount": amount })
}

/// Longest refund id accepted (the processor's limit).
const MAX_REFUND_ID: usize = 200;

#[utoipa::path(post, path = "/backend/refunds", security(("serviceCredential" = [])), tag = "backend", request_body = Refund,
    responses((status = 200, body = RefundAnswer, description = "Refunded (or already refunded under this `refundId`); `PaymentRefunded` is emitted"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No payment for this order"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "Not captured, the refund id was used with another amount, or the processor refused"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "The card processor does not answer")))]
async fn refund(
    State(Refunds { ctx, metrics }): State<Refunds>,
    Json(req): Json<Refund>,
) -> Result<Json<RefundAnswer>, ApiError> {
    let order_id = req.order_id;
    let amount = Money::try_from(req.amount)
        .ok()
        .filter(|a| a.cents() > 0)
        .ok_or_else(|| ApiError::bad_request(format!("amount: must be more than 0, got {}", req.amount)))?;
    let refund_id = req.refund_id.trim();
    if refund_id.is_empty() || refund_id.chars().count() > MAX_REFUND_ID {
        return Err(ApiError::bad_request(format!(
            "refundId: must hold 1 to {MAX_REFUND_ID} characters"
        )));
    }
    if let Some((order, before)) = store::refund_by_id(&ctx.db, refund_id).await? {
        return if order == order_id.to_string() && before == amount.cents() {
            answer_refunded(&ctx, order_id).await
        } else {
            Err(ApiError::conflict(format!(
                "refundId {refund_id} was already used for another refund"
            )))
        };
    }
    let payment = store::captured(&ctx.db, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")))?;
    let step = domain::refund(payment.captured, payment.refunded, amount.cents());
    if domain::next(Some(payment.status), step).is_none() {
        return Err(ApiError::conflict(format!(
            "the payment of order {order_id} was not captured: nothing to refund"
        )));
    }
    let left = payment.captured - payment.refunded;
    if amount.cents() > left {
        return Err(left_to_refund(&payment));
    }
    let Some(token) = payment.token.as_deref() else {
        return Err(ApiError::conflict(format!(
            "the payment of order {order_id} was captured before refunds were kept: refund it at the card processor"
        )));
    };
    let body = json!({ "paymentToken": token, "amount": amount, "refundId": refund_id });
    let refunded = match ask(&ctx, "/refund", &body).await {
        Ok(refunded) => refunded,
        Err(e) => {
            tracing::warn!(error = %e, %order_id, "payment-3p refund failed");
            return Err(ApiError::unavailable(
                "the card processor does not answer: nothing was refunded, try again with the same refundId",
            ));
        }
    };
    if !refunded {
        // A concurrent refund took what was left, or the processor holds
        // another state than ours.
        let now = store::captured(&ctx.db, order_id).await?;
        return Err(match now {
            Some(now) if amount.cents() > now.captured - now.refunded => left_to_refund(&now),
            _ => ApiError::conflict(format!(
                "the card processor refused to refund {amount} of order {order_id}"
            )),
        });
    }
    let mut tx = ctx.db.begin().await?;
    let recorded = store::record_refund(&mut tx, order_id, refund_id, amount.cents()).await?;
    if recorded {
        ctx.outbox
            .push(&mut tx, &events::refunded(order_id, amount, refund_id)?)
            .await?;
    }
    ctx.outbox.commit(tx).await?;
    if recorded {
        metrics.refunds.inc();
        metrics
            .amount_refunded
            .add(u64::try_from(amount.cents()).unwrap_or(0));
        tracing::info!(%order_id, %amount, refund_id, "payment refunded");
    }
    answer_refunded(&ctx, order_id).await
}

fn left_to_refund(payment: &store::Captured) -> ApiError {
    ApiError::bad_request(format!(
        "amount: at most {} is left to refund ({} captured, {} refunded)",
        payment.captured - payment.refunded,
        payment.captured,
        payment.refunded
    ))
}

async fn answer_refunded(ctx: &Context, order_id: Uuid) -> Result<Json<RefundAnswer>, ApiError> {
    let refunded = store::captured(&ctx.db, order_id)
        .await?
        .map(|p| p.refunded)
        .unwrap_or_default();
    Ok(Json(RefundAnswer { ok: true, refunded }))
}
