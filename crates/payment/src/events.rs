//! What payment does with events, and what it emits:
//! - `OrderCreated` → confirm the order's claim on its token and hold it;
//!   when another order holds the token already, the payment is `FAILED`
//!   and `PaymentFailed` is emitted (no money moves): a second order that
//!   slipped past validation is never paid by someone else's token;
//! - `DeliveryCompleted` → capture the order's final total (read from
//!   orders) at the card processor; its confirmation makes the payment
//!   `PROCESSED` and emits `PaymentProcessed {orderId, amount}`, a refusal
//!   makes it `FAILED` and emits `PaymentFailed {orderId, reason}`;
//! - `PackagingFailed`, `DeliveryFailed`, `OrderCancelled` → cancel the
//!   payment (`CANCELLED`);
//! - `OrderModified` with `total` changed → lower the authorised amount.
//!
//! The statuses these move a payment through are [`crate::domain`]'s.
//!
//! Settling calls the card processor before recording the result, so a
//! crash in between leaves the payment held and the event is redelivered.
//! The second call names the same order and amount, and the processor
//! answers it `ok: true` without capturing twice; a token consumed any
//! other way (cancelled, lowered, captured for another order) is a refusal.

use crate::api::{amount_request, ask};
use crate::domain::{self, Step};
use crate::store;
use crate::Metrics;
use anyhow::Context as _;
use ecom_contracts::delivery::{DeliveryCompleted, DeliveryFailed};
use ecom_contracts::orders::{OneOrder, Order, OrderCancelled, OrderCreated, OrderModified};
use ecom_contracts::payment::{PaymentFailed, PaymentProcessed, PaymentRefunded};
use ecom_contracts::warehouse::PackagingFailed;
use ecom_contracts::{AboutOrder, Contract, Modified, Service};
use ecom_model::Money;
use ecom_platform::{inbox, Context, Event, Rule};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// Why a second order's payment fails when its token is another's.
const TOKEN_TAKEN: &str = "Payment token already used by another order";

/// What a settlement event asks of the processor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settlement {
    Capture,
    Cancel,
}

impl Settlement {
    /// The step it makes when the processor agrees (a refused capture
    /// starts from the same status).
    fn step(self) -> Step {
        match self {
            Settlement::Capture => Step::Capture,
            Settlement::Cancel => Step::Cancel,
        }
    }
}

/// Subscribes the service's rules.
pub fn subscribe(ctx: &Context, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let (c, m) = (ctx.clone(), metrics.clone());
    ctx.bus.subscribe(Rule::typed::<OrderCreated, _, _>(
        "payment.on-order-created",
        move |event, order| {
            let (ctx, metrics) = (c.clone(), m.clone());
            async move { on_order_created(&ctx, &metrics, event, order).await }
        },
    )?)?;

    let c = ctx.clone();
    ctx.bus.subscribe(Rule::typed_where::<OrderModified, _, _>(
        "payment.on-order-total-modified",
        Some(json!({"changed": ["total"]})),
        move |event, modified| {
            let ctx = c.clone();
            async move { on_total_modified(&ctx, event, modified).await }
        },
    )?)?;

    settlement::<DeliveryCompleted>(
        ctx,
        &metrics,
        "payment.on-delivery-completed",
        Settlement::Capture,
    )?;
    settlement::<PackagingFailed>(ctx, &metrics, "payment.on-packaging-failed", Settlement::Cancel)?;
    settlement::<DeliveryFailed>(ctx, &metrics, "payment.on-delivery-failed", Settlement::Cancel)?;
    settlement::<OrderCancelled>(ctx, &metrics, "payment.on-order-cancelled", Settlement::Cancel)?;
    Ok(())
}

/// Subscribes `name`, settling the payment of the order each `E` names.
fn settlement<E: Contract>(
    ctx: &Context,
    metrics: &Arc<Metrics>,
    name: &'static str,
    settlement: Settlement,
) -> anyhow::Result<()>
where
    E::Detail: AboutOrder,
{
    let (c, m) = (ctx.clone(), metrics.clone());
    ctx.bus
        .subscribe(Rule::typed::<E, _, _>(name, move |event, detail| {
            let (ctx, metrics) = (c.clone(), m.clone());
            let order_id = detail.order_id();
            async move { settle(&ctx, &metrics, name, settlement, order_id, event).await }
        })?)
}

fn processed(order_id: Uuid, amount: Money) -> anyhow::Result<Event> {
    Event::of::<PaymentProcessed>(vec![order_id.to_string()], &PaymentProcessed { order_id, amount })
}

/// `PaymentRefunded {orderId, amount, refundId}`.
pub(crate) fn refunded(order_id: Uuid, amount: Money, refund_id: &str) -> anyhow::Result<Event> {
    let detail = PaymentRefunded {
        order_id,
        amount,
        refund_id: refund_id.to_owned(),
    };
    Event::of::<PaymentRefunded>(vec![order_id.to_string()], &detail)
}

fn failed(order_id: Uuid, reason: &str) -> anyhow::Result<Event> {
    let detail = PaymentFailed {
        order_id,
        reason: reason.to_owned(),
    };
    Event::of::<PaymentFailed>(vec![order_id.to_string()], &detail)
}

async fn on_order_created(
    ctx: &Context,
    metrics: &Metrics,
    event: Event,
    order: Order,
) -> anyhow::Result<()> {
    let Some(mut tx) = inbox::begin(&ctx.db, "payment.on-order-created", event.id).await? else {
        return Ok(());
    };
    if store::confirm(&mut tx, &order.payment_token, order.order_id).await? {
        store::hold(&mut tx, order.order_id, &order.payment_token, order.total.cents()).await?;
        tx.commit().await.context("Failed to commit")?;
        return Ok(());
    }
    // The second line of defence: validation claims a token for one order,
    // but an order may still slip past it (a claim taken over after its
    // TTL while its order was being created, or an order made without
    // validation). It is never paid with the other order's token.
    tracing::warn!(order_id = %order.order_id, "OrderCreated with a token another order holds: payment failed");
    let recorded = store::fail_new(&mut tx, order.order_id, order.total.cents(), TOKEN_TAKEN).await?;
    if recorded {
        ctx.outbox
            .push(&mut tx, &failed(order.order_id, TOKEN_TAKEN)?)
            .await?;
    }
    ctx.outbox.commit(tx).await?;
    if recorded {
        metrics.failed.inc();
    }
    Ok(())
}

async fn on_total_modified(ctx: &Context, event: Event, modified: Modified<Order>) -> anyhow::Result<()> {
    let order = modified.new;
    let payment = store::get(&ctx.db, order.order_id)
        .await?
        // OrderCreated may not have been applied yet (no global order).
        .with_context(|| format!("no payment known yet for order {}", order.order_id))?;
    // Only a token this order holds is touched: a payment that failed
    // because its token is another order's must not lower that order's.
    let follows = domain::next(Some(payment.status), Step::NewTotal).is_some();
    if follows && payment.token.as_deref() == Some(order.payment_token.as_str()) {
        // Lowering to the same amount twice is harmless, so a redelivery may
        // call again; only the local record goes through the inbox.
        let lowered = ask(
            ctx,
            "/updateAmount",
            &amount_request(&order.payment_token, order.total),
        )
        .await?;
        if !lowered {
            // Settled, or above what is held: the processor keeps the held
            // amount; the capture of the final total will tell.
            tracing::warn!(order_id = %order.order_id, total = %order.total, "card processor refused the new amount");
        }
    }
    let Some(mut tx) = inbox::begin(&ctx.db, "payment.on-order-total-modified", event.id).await? else {
        return Ok(());
    };
    store::set_total(&mut tx, order.order_id, order.total.cents()).await?;
    tx.commit().await.context("Failed to commit")?;
    Ok(())
}

/// The order's total now, from orders (the authority: an `OrderModified`
/// changing it may still be on its way to us). `None` when orders does not
/// know the order; an error when it does not answer (retried).
async fn final_total(ctx: &Context, order_id: Uuid) -> anyhow::Result<Option<Money>> {
    let answer = ctx
        .clients
        .get(Service::Orders)?
        .get::<OneOrder>(&format!("/backend/{order_id}"))
        .await;
    match answer {
        Ok(OneOrder { order }) => Ok(Some(order.total)),
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => Ok(None),
        Err(e) => Err(e).context("Failed to read the order's total from orders"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenState {
    status: String,
    authorised_amount: i64,
    #[serde(default)]
    captured_amount: Option<i64>,
    #[serde(default)]
    order_id: Option<String>,
}

/// Why the processor refused to capture `amount` of `token` for `order_id`,
/// as its `/status` tells (a generic reason when it does not answer).
async fn refusal(ctx: &Context, token: &str, order_id: Uuid, amount: Money) -> String {
    let state = match ctx.clients.get(Service::Payment3p) {
        Ok(client) => client
            .post::<_, TokenState>("/status", &json!({ "paymentToken": token }))
            .await
            .ok(),
        Err(_) => None,
    };
    let ours = Some(order_id.to_string());
    match state {
        Some(s) if s.status == "CANCELLED" => "the payment was cancelled at the card processor".to_owned(),
        Some(s) if s.status == "PROCESSED" && s.order_id == ours => format!(
            "the card processor captured {} for this order, not {amount}",
            s.captured_amount.unwrap_or_default()
        ),
        Some(s) if s.status == "PROCESSED" => "the payment token was captured for another order".to_owned(),
        Some(s) if s.authorised_amount < amount.cents() => format!(
            "the card processor holds {}, less than the total {amount}",
            s.authorised_amount
        ),
        _ => format!("the card processor refused to capture {amount}"),
    }
}

/// Captures or cancels the order's payment, once.
async fn settle(
    ctx: &Context,
    metrics: &Metrics,
    rule: &str,
    settlement: Settlement,
    order_id: Uuid,
    event: Event,
) -> anyhow::Result<()> {
    let payment = store::get(&ctx.db, order_id)
        .await?
        // OrderCreated may not have been applied yet (no global order):
        // fail so the bus retries later.
        .with_context(|| format!("no payment known yet for order {order_id}"))?;
    let (Some(_), Some(token)) = (
        domain::next(Some(payment.status), settlement.step()),
        payment.token.as_deref(),
    ) else {
        // Settled before (a redelivery), or failed from the start.
        tracing::debug!(%order_id, rule, status = ?payment.status, "payment not held: nothing to settle");
        return Ok(());
    };
    match settlement {
        Settlement::Capture => {
            let (step, amount, announce, reason) = match final_total(ctx, order_id).await? {
                None => {
                    let reason = "orders does not know the order";
                    (
                        Step::CaptureRefused,
                        None,
                        failed(order_id, reason)?,
                        Some(reason.to_owned()),
                    )
                }
                Some(total) => {
                    let body = json!({ "paymentToken": token, "orderId": order_id, "amount": total });
                    if ask(ctx, "/processPayment", &body).await? {
                        (Step::Capture, Some(total), processed(order_id, total)?, None)
                    } else {
                        let reason = refusal(ctx, token, order_id, total).await;
                        tracing::warn!(%order_id, %reason, "the card processor refused the capture");
                        (
                            Step::CaptureRefused,
                            None,
                            failed(order_id, &reason)?,
                            Some(reason),
                        )
                    }
                }
            };
            let Some(mut tx) = inbox::begin(&ctx.db, rule, event.id).await? else {
                return Ok(());
            };
            let captured = amount.map(Money::cents);
            let changed = store::settle(&mut tx, order_id, step, reason.as_deref(), captured).await?;
            if changed {
                ctx.outbox.push(&mut tx, &announce).await?;
            }
            ctx.outbox.commit(tx).await?;
            if changed {
                match amount {
                    Some(amount) => {
                        metrics.processed.inc();
                        metrics.amount_won.add(u64::try_from(amount.cents()).unwrap_or(0));
                    }
                    None => metrics.failed.inc(),
                }
            }
        }
        Settlement::Cancel => {
            let body = json!({ "paymentToken": token, "orderId": order_id });
            let cancelled = ask(ctx, "/cancelPayment", &body).await?;
            if !cancelled {
                // The token is not live any more (cancelled behind our back,
                // or expired): nothing is held, so there is nothing to release.
                tracing::warn!(%order_id, rule, "the card processor had nothing to cancel");
            }
            let Some(mut tx) = inbox::begin(&ctx.db, rule, event.id).await? else {
                return Ok(());
            };
            let changed = store::settle(&mut tx, order_id, Step::Cancel, None, None).await?;
            tx.commit().await.context("Failed to commit")?;
            if changed && cancelled {
                metrics.cancelled.inc();
                metrics.amount_lost.add(u64::try_from(payment.total).unwrap_or(0));
            }
        }
    }
    Ok(())
}
