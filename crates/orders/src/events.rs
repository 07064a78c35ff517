//! What orders emits (`OrderCreated`, `OrderModified` from its row images)
//! and what it handles: the warehouse's `PackageCreated` and
//! `PackagingFailed`, the delivery's `DeliveryFailed`, and payment's
//! `PaymentProcessed` and `PaymentFailed`, each moving the order's status.
//!
//! `DeliveryCompleted` changes nothing here: an order is `FULFILLED` only
//! once the card processor confirmed the capture of its total
//! (`PaymentProcessed`, which payment emits after `DeliveryCompleted`);
//! until then it stays `PACKAGED`.

use crate::domain::{Order, OrderStatus, PackedLine};
use crate::{store, Metrics};
use anyhow::Context as _;
use ecom_model::{Money, Timestamp};
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

/// What a handled event does to an order.
#[derive(Clone, Copy)]
enum Change {
    Packaged,
    Paid,
    Status(OrderStatus),
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
    };
    if let Some(event) = modified(&old, &new)? {
        store::update(&mut tx, &new).await?;
        ctx.outbox.push(&mut tx, &event).await?;
    }
    ctx.outbox.commit(tx).await?;
    if new.status != old.status {
        match new.status {
            OrderStatus::Fulfilled => metrics.fulfilled.inc(),
            OrderStatus::PackagingFailed => metrics.packaging_failed.inc(),
            OrderStatus::DeliveryFailed => metrics.delivery_failed.inc(),
            OrderStatus::PaymentFailed => metrics.payment_failed.inc(),
            OrderStatus::New | OrderStatus::Packaged => {}
        }
    }
    Ok(())
}
