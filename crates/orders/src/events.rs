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

use crate::domain::{Order, OrderLife as _, OrderStatus, PackedLine};
use crate::{store, Metrics};
use anyhow::Context as _;
use ecom_contracts::delivery::{DeliveryFailed, DeliveryStarted};
use ecom_contracts::orders::{OrderCancelled, OrderCreated, OrderDeleted, OrderModified};
use ecom_contracts::payment::{PaymentFailed, PaymentProcessed, PaymentRefunded};
use ecom_contracts::warehouse::{PackageCreated, PackagingFailed};
use ecom_contracts::{AboutOrder, Contract, OrderRef};
use ecom_model::{Money, Timestamp};
use ecom_platform::{inbox, outbox, Context, Event, Rule};
use std::sync::Arc;
use uuid::Uuid;

/// `OrderCreated` with the whole order.
pub fn created(order: &Order) -> anyhow::Result<Event> {
    outbox::created::<OrderCreated>(&order.order_id.to_string(), order)
}

/// `OrderModified` from the old and new images; `None` when nothing changed.
pub fn modified(old: &Order, new: &Order) -> anyhow::Result<Option<Event>> {
    outbox::modified::<OrderModified, _>(&old.order_id.to_string(), old, new)
}

/// `OrderCancelled {orderId}`, beside the `OrderModified` the status change
/// makes: payment reacts to it as to `PackagingFailed`, without having to
/// match on another service's row images.
pub fn cancelled(order: &Order) -> anyhow::Result<Event> {
    Event::of::<OrderCancelled>(
        vec![order.order_id.to_string()],
        &OrderRef {
            order_id: order.order_id,
        },
    )
}

/// `OrderDeleted` with the order as it was. Orders are never deleted by an
/// API today; kept so the event set matches the contract.
pub fn deleted(order: &Order) -> anyhow::Result<Event> {
    outbox::deleted::<OrderDeleted>(&order.order_id.to_string(), order)
}

/// Subscribes the service's rules.
pub fn subscribe(ctx: &Context, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let packaged = |p: PackageCreated| (p.order_id, Effect::Packaged(p.products));
    rule::<PackageCreated>(ctx, &metrics, "orders.on-package-created", packaged)?;
    rule::<PackagingFailed>(ctx, &metrics, "orders.on-packaging-failed", |d| {
        (d.order_id, Effect::Status(OrderStatus::PackagingFailed))
    })?;
    rule::<DeliveryFailed>(ctx, &metrics, "orders.on-delivery-failed", |d| {
        (d.order_id(), Effect::Status(OrderStatus::DeliveryFailed))
    })?;
    rule::<PaymentProcessed>(ctx, &metrics, "orders.on-payment-processed", |d| {
        (d.order_id, Effect::Paid(d.amount))
    })?;
    rule::<PaymentFailed>(ctx, &metrics, "orders.on-payment-failed", |d| {
        (d.order_id, Effect::Status(OrderStatus::PaymentFailed))
    })?;
    rule::<DeliveryStarted>(ctx, &metrics, "orders.on-delivery-started", |d| {
        (d.order_id, Effect::Tracked(d.tracking_id))
    })?;
    // A negative amount is a malformed event (money never is), refused
    // when the detail is decoded.
    rule::<PaymentRefunded>(ctx, &metrics, "orders.on-payment-refunded", |d| {
        (d.order_id, Effect::Refunded(d.amount))
    })?;
    Ok(())
}

/// Subscribes `name` to events of `E`, whose detail `effect` turns into
/// what happens to which order.
fn rule<E: Contract>(
    ctx: &Context,
    metrics: &Arc<Metrics>,
    name: &'static str,
    effect: impl Fn(E::Detail) -> (Uuid, Effect) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let (ctx2, metrics) = (ctx.clone(), metrics.clone());
    let effect = Arc::new(effect);
    ctx.bus
        .subscribe(Rule::typed::<E, _, _>(name, move |event, detail| {
            let (ctx, metrics) = (ctx2.clone(), metrics.clone());
            let (order_id, effect) = effect(detail);
            async move { apply(&ctx, &metrics, name, order_id, effect, event).await }
        })?)
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
    order_id: Uuid,
    effect: Effect,
    event: Event,
) -> anyhow::Result<()> {
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
