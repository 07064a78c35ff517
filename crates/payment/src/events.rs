//! What payment does with events:
//! - `OrderCreated` → remember the order's token and total;
//! - `DeliveryCompleted` → process the payment, then forget the token;
//! - `PackagingFailed`, `DeliveryFailed` → cancel the payment, then forget;
//! - `OrderModified` with `total` changed → lower the authorised amount.
//!
//! Settling calls the card processor before recording the result, so a
//! crash in between leaves the payment held and the event is redelivered.
//! The second call then finds the token consumed and answers `ok: false`:
//! that is taken as "already settled" and recorded, not retried — the
//! processor consumes a token once, so nothing is ever charged twice.

use crate::api::{amount_request, ask};
use crate::store::{self, Status};
use crate::Metrics;
use anyhow::Context as _;
use ecom_model::Money;
use ecom_platform::event::sources;
use ecom_platform::{inbox, Context, Event, Rule};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderDetail {
    order_id: Uuid,
    payment_token: String,
    total: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AboutOrder {
    order_id: Uuid,
}

#[derive(Deserialize)]
struct OrderModified {
    new: OrderDetail,
}

/// Subscribes the service's rules.
pub fn subscribe(ctx: &Context, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let c = ctx.clone();
    ctx.bus.subscribe(Rule::new(
        "payment.on-order-created",
        json!({"source": [sources::ORDERS], "detail-type": ["OrderCreated"]}),
        move |event| {
            let ctx = c.clone();
            async move { on_order_created(&ctx, event).await }
        },
    )?)?;

    let c = ctx.clone();
    ctx.bus.subscribe(Rule::new(
        "payment.on-order-total-modified",
        json!({"source": [sources::ORDERS], "detail-type": ["OrderModified"], "detail": {"changed": ["total"]}}),
        move |event| {
            let ctx = c.clone();
            async move { on_total_modified(&ctx, event).await }
        },
    )?)?;

    let settlements = [
        (
            "payment.on-delivery-completed",
            sources::DELIVERY,
            "DeliveryCompleted",
            Status::Processed,
        ),
        (
            "payment.on-packaging-failed",
            sources::WAREHOUSE,
            "PackagingFailed",
            Status::Cancelled,
        ),
        (
            "payment.on-delivery-failed",
            sources::DELIVERY,
            "DeliveryFailed",
            Status::Cancelled,
        ),
    ];
    for (name, source, detail_type, to) in settlements {
        let (c, m) = (ctx.clone(), metrics.clone());
        ctx.bus.subscribe(Rule::new(
            name,
            json!({"source": [source], "detail-type": [detail_type]}),
            move |event| {
                let (ctx, metrics) = (c.clone(), m.clone());
                async move { settle(&ctx, &metrics, name, to, event).await }
            },
        )?)?;
    }
    Ok(())
}

async fn on_order_created(ctx: &Context, event: Event) -> anyhow::Result<()> {
    let order: OrderDetail =
        serde_json::from_value(event.detail).context("OrderCreated detail is malformed")?;
    let Some(mut tx) = inbox::begin(&ctx.db, "payment.on-order-created", event.id).await? else {
        return Ok(());
    };
    store::hold(&mut tx, order.order_id, &order.payment_token, order.total.cents()).await?;
    tx.commit().await.context("Failed to commit")?;
    Ok(())
}

async fn on_total_modified(ctx: &Context, event: Event) -> anyhow::Result<()> {
    let OrderModified { new: order } =
        serde_json::from_value(event.detail).context("OrderModified detail is malformed")?;
    // Lowering to the same amount twice is harmless, so a redelivery may
    // call again; only the local record goes through the inbox.
    let lowered = ask(
        ctx,
        "/updateAmount",
        &amount_request(&order.payment_token, order.total),
    )
    .await?;
    if !lowered {
        // Already settled, or above what is held: the processor keeps the
        // held amount and nothing more can be done here.
        tracing::warn!(order_id = %order.order_id, total = %order.total, "card processor refused the new amount");
    }
    let Some(mut tx) = inbox::begin(&ctx.db, "payment.on-order-total-modified", event.id).await? else {
        return Ok(());
    };
    store::set_total(&mut tx, order.order_id, order.total.cents()).await?;
    tx.commit().await.context("Failed to commit")?;
    Ok(())
}

/// Processes or cancels the order's payment, once.
async fn settle(
    ctx: &Context,
    metrics: &Metrics,
    rule: &str,
    to: Status,
    event: Event,
) -> anyhow::Result<()> {
    let AboutOrder { order_id } = serde_json::from_value(event.detail)
        .with_context(|| format!("{} detail has no orderId", event.detail_type))?;
    let payment = store::get(&ctx.db, order_id)
        .await?
        // OrderCreated may not have been applied yet (no global order):
        // fail so the bus retries later.
        .with_context(|| format!("no payment known yet for order {order_id}"))?;
    let mut charged = false;
    if let (Status::Held, Some(token)) = (payment.status, payment.token.as_deref()) {
        let path = if to == Status::Processed {
            "/processPayment"
        } else {
            "/cancelPayment"
        };
        charged = ask(ctx, path, &json!({ "paymentToken": token })).await?;
        if !charged {
            tracing::info!(%order_id, rule, "token already consumed at the card processor: recording as settled");
        }
    }
    let Some(mut tx) = inbox::begin(&ctx.db, rule, event.id).await? else {
        return Ok(());
    };
    store::settle(&mut tx, order_id, to).await?;
    tx.commit().await.context("Failed to commit")?;
    if charged {
        let amount = u64::try_from(payment.total).unwrap_or(0);
        if to == Status::Processed {
            metrics.processed.inc();
            metrics.amount_won.add(amount);
        } else {
            metrics.cancelled.inc();
            metrics.amount_lost.add(amount);
        }
    }
    Ok(())
}
