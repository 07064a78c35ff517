//! What orders emits (`OrderCreated`, `OrderModified` from its row images,
//! and `OrderCancelled {orderId}` when an order is cancelled) and what it
//! handles: the warehouse's `PackageCreated` and `PackagingFailed`, the
//! delivery's `DeliveryFailed`, and payment's `PaymentProcessed` and
//! `PaymentFailed`, each moving the order's status; the delivery's
//! `DeliveryStarted` (the order's `trackingId`) and payment's
//! `PaymentRefunded` (the order's `refunded` sum).
//!
//! Every change of a status records the status and its time in the order's
//! history in the same transaction, and every visible change of an order
//! emits its `OrderModified`, which is what live subscriptions follow.
//!
//! `DeliveryCompleted` changes nothing here: an order is `FULFILLED` only
//! once the card processor confirmed the capture of its total
//! (`PaymentProcessed`, which payment emits after `DeliveryCompleted`);
//! until then it stays `PACKAGED`.

use crate::domain::{Order, OrderStatus, PackedLine};
use crate::{store, Metrics};
use anyhow::Context as _;
use ecom_model::{Money, Timestamp};
use ecom_platform::bus::permanent;
use ecom_platform::event::sources;
use ecom_platform::{inbox, outbox, Context, Event, Rule};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// The resource name in event types (`OrderCreated`, …).
const RESOURCE: &str = "Order";

/// `OrderCreated` with the whole order.
pub fn created(order: &Order) -> anyhow::Result<Event> {
    outbox::created(sources::ORDERS, RESOURCE, &order.order_id.to_string(), order)
}

/// `OrderModified` from the old and new images; `None` when nothing changed.
pub fn modified(old: &Order, new: &Order) -> anyhow::Result<Option<Event>> {
    outbox::modified(sources::ORDERS, RESOURCE, &old.order_id.to_string(), old, new)
}

/// `OrderCancelled`: the order was cancelled (its payment is to be released).
pub const ORDER_CANCELLED: &str = "OrderCancelled";

/// `OrderCancelled {orderId}`, beside the `OrderModified` the status change
/// makes: payment reacts to it as to `PackagingFailed`, without having to
/// match on another service's row images.
pub fn cancelled(order: &Order) -> Event {
    Event::new(
        sources::ORDERS,
        ORDER_CANCELLED,
        vec![order.order_id.to_string()],
        json!({ "orderId": order.order_id }),
    )
}

/// `OrderDeleted` with the order as it was. Orders are never deleted by an
/// API today; kept so the event set matches the contract.
pub fn deleted(order: &Order) -> anyhow::Result<Event> {
    outbox::deleted(sources::ORDERS, RESOURCE, &order.order_id.to_string(), order)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackageCreated {
    order_id: Uuid,
    #[serde(default)]
    products: Vec<PackedLine>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AboutOrder {
    order_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentProcessed {
    order_id: Uuid,
    amount: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryStarted {
    order_id: Uuid,
    tracking_id: String,
}

/// What a handled event does to an order.
#[derive(Clone, Copy)]
enum Change {
    Packaged,
    Paid,
    Status(OrderStatus),
    Tracked,
    Refunded,
}

/// Subscribes the service's rules.
pub fn subscribe(ctx: &Context, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let rules = [
        (
            "orders.on-package-created",
            sources::WAREHOUSE,
            "PackageCreated",
            Change::Packaged,
        ),
        (
            "orders.on-packaging-failed",
            sources::WAREHOUSE,
            "PackagingFailed",
            Change::Status(OrderStatus::PackagingFailed),
        ),
        (
            "orders.on-delivery-failed",
            sources::DELIVERY,
            "DeliveryFailed",
            Change::Status(OrderStatus::DeliveryFailed),
        ),
        (
            "orders.on-payment-processed",
            sources::PAYMENT,
            "PaymentProcessed",
            Change::Paid,
        ),
        (
            "orders.on-payment-failed",
            sources::PAYMENT,
            "PaymentFailed",
            Change::Status(OrderStatus::PaymentFailed),
        ),
        (
            "orders.on-delivery-started",
            sources::DELIVERY,
            "DeliveryStarted",
            Change::Tracked,
        ),
        (
            "orders.on-payment-refunded",
            sources::PAYMENT,
            "PaymentRefunded",
            Change::Refunded,
        ),
    ];
    for (name, source, detail_type, change) in rules {
        let (ctx2, metrics) = (ctx.clone(), metrics.clone());
        ctx.bus.subscribe(Rule::new(
            name,
            json!({ "source": [source], "detail-type": [detail_type] }),
            move |event| {
                let (ctx, metrics) = (ctx2.clone(), metrics.clone());
                async move { apply(&ctx, &metrics, name, change, event).await }
            },
        )?)?;
    }
    Ok(())
}

/// What one event does to its order.
enum Effect {
    Packaged(Vec<PackedLine>),
    Paid(Money),
    Status(OrderStatus),
    Tracked(String),
    Refunded(Money),
}

/// Applies one event to its order, once: the new image, its
/// `OrderModified` and the inbox record commit together.
async fn apply(
    ctx: &Context,
    metrics: &Metrics,
    rule: &str,
    change: Change,
    event: Event,
) -> anyhow::Result<()> {
    let (order_id, effect) = match change {
        Change::Packaged => {
            let detail: PackageCreated =
                serde_json::from_value(event.detail.clone()).context("PackageCreated detail is malformed")?;
            (detail.order_id, Effect::Packaged(detail.products))
        }
        Change::Paid => {
            let detail: PaymentProcessed = serde_json::from_value(event.detail.clone())
                .context("PaymentProcessed detail is malformed")?;
            (detail.order_id, Effect::Paid(detail.amount))
        }
        Change::Status(status) => {
            let detail: AboutOrder = serde_json::from_value(event.detail.clone())
                .with_context(|| format!("{} detail has no orderId", event.detail_type))?;
            (detail.order_id, Effect::Status(status))
        }
        Change::Tracked => {
            let detail: DeliveryStarted = serde_json::from_value(event.detail.clone())
                .map_err(|e| permanent(format!("DeliveryStarted detail is malformed: {e}")))?;
            (detail.order_id, Effect::Tracked(detail.tracking_id))
        }
        Change::Refunded => {
            // A negative amount is a malformed event (money never is).
            let detail: PaymentProcessed = serde_json::from_value(event.detail.clone())
                .map_err(|e| permanent(format!("PaymentRefunded detail is malformed: {e}")))?;
            (detail.order_id, Effect::Refunded(detail.amount))
        }
    };
    let Some(mut tx) = inbox::begin(&ctx.db, rule, event.id).await? else {
        return Ok(());
    };
    let Some(old) = store::get_in(&mut tx, order_id).await? else {
        // Not an order of ours (or of another deployment): nothing to move.
        tracing::warn!(rule, %order_id, "event about an unknown order ignored");
        tx.commit().await.context("Failed to commit")?;
        return Ok(());
    };
    let now = Timestamp::now();
    let new = match effect {
        Effect::Packaged(packed) => old
            .packaged(&packed, now)
            .context("the packaged quantities overflow the total")?,
        Effect::Paid(amount) if amount == old.total => old.with_status(OrderStatus::Fulfilled, now),
        Effect::Paid(amount) => {
            // payment captures the total it reads from us at settlement, so
            // this means a bug or a hand-made capture: not fulfilled, loudly.
            tracing::error!(rule, %order_id, %amount, total = %old.total, "payment captured another amount than the order's total: order not fulfilled");
            old.clone()
        }
        Effect::Status(status) => old.with_status(status, now),
        Effect::Tracked(tracking_id) => old.tracked(&tracking_id, now),
        Effect::Refunded(amount) => old.refund(amount, now).context("the refunds overflow")?,
    };
    if let Some(event) = modified(&old, &new)? {
        store::update(&mut tx, &new).await?;
        if new.status != old.status {
            store::record_status(&mut tx, &new).await?;
        }
        ctx.outbox.push(&mut tx, &event).await?;
    }
    ctx.outbox.commit(tx).await?;
    if new.status != old.status {
        match new.status {
            OrderStatus::Fulfilled => metrics.fulfilled.inc(),
            OrderStatus::PackagingFailed => metrics.packaging_failed.inc(),
            OrderStatus::DeliveryFailed => metrics.delivery_failed.inc(),
            OrderStatus::PaymentFailed => metrics.payment_failed.inc(),
            OrderStatus::New | OrderStatus::Packaged | OrderStatus::Cancelled => {}
        }
    }
    Ok(())
}
