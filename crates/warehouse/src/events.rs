//! What the warehouse does with order events (and payment's
//! `PaymentFailed`), and the events it emits.
//!
//! Every handler records the event in the inbox in the same transaction as
//! its effect, so a redelivered event changes nothing. Events arrive in no
//! particular order: an order image is applied only when it is newer than
//! the one the request reflects, and only while the request is NEW.

use crate::api::Warehouse;
use crate::domain::{self, Line, Status};
use crate::{stock, store};
use anyhow::Context as _;
use ecom_contracts::delivery::{DeliveryCompleted, DeliveryFailed};
use ecom_contracts::orders::{OrderCreated, OrderDeleted, OrderModified};
use ecom_contracts::payment::PaymentFailed;
use ecom_contracts::warehouse::{PackageCreated, PackagingFailed, PackedLine};
use ecom_contracts::{Contract, OrderRef};
use ecom_model::Timestamp;
use ecom_platform::{inbox, Event, Rule};
use ecom_storage::{Db, Tx};
use serde_json::json;
use uuid::Uuid;

/// Rule names (also the inbox consumer names).
pub const ON_ORDER_CREATED: &str = "warehouse.on-order-created";
/// See [`ON_ORDER_CREATED`].
pub const ON_ORDER_MODIFIED: &str = "warehouse.on-order-modified";
/// See [`ON_ORDER_CREATED`].
pub const ON_ORDER_DELETED: &str = "warehouse.on-order-deleted";
/// See [`ON_ORDER_CREATED`].
pub const ON_DELIVERY_FAILED: &str = "warehouse.on-delivery-failed";
/// See [`ON_ORDER_CREATED`].
pub const ON_DELIVERY_COMPLETED: &str = "warehouse.on-delivery-completed";
/// See [`ON_ORDER_CREATED`].
pub const ON_PAYMENT_FAILED: &str = "warehouse.on-payment-failed";

/// The rules of the warehouse.
pub fn rules(w: &Warehouse) -> anyhow::Result<Vec<Rule>> {
    let (a, b, c, d, e, f) = (w.clone(), w.clone(), w.clone(), w.clone(), w.clone(), w.clone());
    Ok(vec![
        Rule::new(ON_ORDER_CREATED, pattern::<OrderCreated>(None), move |ev| {
            let w = a.clone();
            async move { on_order_created(&w, &ev).await }
        })?,
        Rule::new(
            ON_ORDER_MODIFIED,
            pattern::<OrderModified>(Some(json!({ "changed": ["products"] }))),
            move |ev| {
                let w = b.clone();
                async move { on_order_modified(&w.db, &ev).await }
            },
        )?,
        Rule::new(ON_ORDER_DELETED, pattern::<OrderDeleted>(None), move |ev| {
            let w = c.clone();
            async move { on_order_deleted(&w, &ev).await }
        })?,
        Rule::typed::<DeliveryFailed, _, _>(ON_DELIVERY_FAILED, move |ev, delivery| {
            let w = d.clone();
            async move { on_delivery_failed(&w, &ev, delivery.order_id).await }
        })?,
        Rule::typed::<DeliveryCompleted, _, _>(ON_DELIVERY_COMPLETED, move |ev, delivery| {
            let w = e.clone();
            async move { on_delivery_completed(&w, &ev, delivery.order_id).await }
        })?,
        Rule::typed::<PaymentFailed, _, _>(ON_PAYMENT_FAILED, move |ev, payment| {
            let w = f.clone();
            async move { on_payment_failed(&w, &ev, payment.order_id).await }
        })?,
    ])
}

/// The pattern of orders' events of contract `E` (whose detail matches
/// `detail`, if given).
///
/// The handlers take the whole event (tests call them with one) and decode
/// its detail as the contract's payload, the whole `Order` (so a renamed
/// field of the order fails to compile here); a detail that does not decode
/// is a permanent failure, dead-lettered at once.
fn pattern<E: Contract>(detail: Option<serde_json::Value>) -> serde_json::Value {
    let mut pattern = json!({ "source": [E::SOURCE], "detail-type": [E::DETAIL_TYPE] });
    if let Some(detail) = detail {
        pattern["detail"] = detail;
    }
    pattern
}

/// `OrderCreated`: a NEW request with the order's lines, unless the stored
/// request already reflects this version of the order or a newer one; and
/// the stock the order holds no longer expires.
pub async fn on_order_created(w: &Warehouse, event: &Event) -> anyhow::Result<()> {
    let order = event.detail_as::<OrderCreated>()?;
    let Some(mut tx) = inbox::begin(&w.db, ON_ORDER_CREATED, event.id).await? else {
        return Ok(());
    };
    if !stock::confirm(&mut tx, order.order_id).await? {
        // Only worth a read when some product may be tracked (the hint of
        // this process: another replica's reservation may go unnoticed,
        // which costs only this warning).
        let ids: Vec<_> = order.products.iter().map(|l| l.product_id).collect();
        if w.seen_tracked.any(&ids) && !stock::available_in(&mut tx, &ids).await?.is_empty() {
            // Its hold expired (or was released) before the order arrived:
            // the order goes on, and staff see the shortfall at packing.
            tracing::warn!(order_id = %order.order_id, "order created after its stock reservation was released");
        }
    }
    let stored = store::header(&mut tx, order.order_id).await?;
    let newer = stored.is_none_or(|h| h.modified_micros < order.modified_date.unix_micros());
    if newer && stored.is_none_or(|h| h.status == Status::New) {
        if !store::put_new(&mut tx, &order, stored.is_some()).await? {
            tracing::debug!(order_id = %order.order_id, "OrderCreated ignored: the request was cancelled meanwhile");
        }
    } else {
        tracing::debug!(order_id = %order.order_id, "OrderCreated ignored: request is newer or past NEW");
    }
    tx.commit().await.context("Failed to commit OrderCreated")?;
    Ok(())
}

/// `OrderModified` with changed products: brings a NEW request's lines to
/// the new image by adding, changing and removing lines (or makes the
/// request from the new image when the change arrives before the creation).
pub async fn on_order_modified(db: &Db, event: &Event) -> anyhow::Result<()> {
    let modified = event.detail_as::<OrderModified>()?;
    if !modified.changed.iter().any(|c| c == "products") {
        return Ok(());
    }
    let order = modified.new;
    let Some(mut tx) = inbox::begin(db, ON_ORDER_MODIFIED, event.id).await? else {
        return Ok(());
    };
    match store::header(&mut tx, order.order_id).await? {
        Some(h) if h.status == Status::New && h.modified_micros < order.modified_date.unix_micros() => {
            let changes = domain::diff(
                &store::ordered(&mut tx, order.order_id).await?,
                &domain::quantities(&order),
            );
            store::apply(&mut tx, order.order_id, &changes).await?;
            store::set_modified(&mut tx, order.order_id, order.modified_date).await?;
        }
        // Events come in no particular order: the change overtook the
        // creation, so the request starts from this (newer) image and the
        // late OrderCreated will be ignored.
        None => {
            store::put_new(&mut tx, &order, false).await?;
        }
        _ => {
            tracing::debug!(order_id = %order.order_id, "OrderModified ignored: request is newer or past NEW")
        }
    }
    tx.commit().await.context("Failed to commit OrderModified")?;
    Ok(())
}

/// `OrderDeleted`: drops the request if it is still NEW, and releases
/// the stock it holds.
pub async fn on_order_deleted(w: &Warehouse, event: &Event) -> anyhow::Result<()> {
    let order = event.detail_as::<OrderDeleted>()?;
    let Some(mut tx) = inbox::begin(&w.db, ON_ORDER_DELETED, event.id).await? else {
        return Ok(());
    };
    drop_unstarted(w, &mut tx, order.order_id, order.modified_date, "OrderDeleted").await?;
    w.outbox
        .commit(tx)
        .await
        .context("Failed to commit OrderDeleted")?;
    Ok(())
}

/// Drops the request of an order that will not be packed (`OrderDeleted`,
/// `PaymentFailed`), stamped `at` so that a late, older `OrderCreated`
/// does not bring it back, and puts its stock hold back on sale. A request
/// staff have started is kept (they see it through); one dropped already
/// changes nothing.
async fn drop_unstarted(
    w: &Warehouse,
    tx: &mut Tx,
    order_id: Uuid,
    at: Timestamp,
    why: &str,
) -> anyhow::Result<()> {
    match store::header(tx, order_id).await? {
        Some(h) if started(h.status) => {
            tracing::info!(%order_id, status = h.status.as_str(), "{why}: request kept, packaging has started");
        }
        Some(h) if h.status == Status::Cancelled => {}
        _ => {
            store::tombstone(tx, order_id, at).await?;
            let moved = stock::release(tx, order_id, None).await?;
            if !moved.is_empty() {
                w.metrics.released.inc();
            }
            w.outbox.push_all(tx, &moved).await?;
        }
    }
    Ok(())
}

/// Whether staff have started (or finished) packing a request.
fn started(status: Status) -> bool {
    matches!(status, Status::InProgress | Status::Completed)
}

/// `DeliveryFailed`: the goods come back, so what the order shipped of
/// tracked products goes back on hand.
pub async fn on_delivery_failed(w: &Warehouse, event: &Event, order_id: Uuid) -> anyhow::Result<()> {
    let Some(mut tx) = inbox::begin(&w.db, ON_DELIVERY_FAILED, event.id).await? else {
        return Ok(());
    };
    let moved = stock::restock(&mut tx, order_id).await?;
    w.outbox.push_all(&mut tx, &moved).await?;
    w.outbox
        .commit(tx)
        .await
        .context("Failed to commit DeliveryFailed")?;
    Ok(())
}

/// `DeliveryCompleted`: what the order shipped is gone for good.
pub async fn on_delivery_completed(w: &Warehouse, event: &Event, order_id: Uuid) -> anyhow::Result<()> {
    let Some(mut tx) = inbox::begin(&w.db, ON_DELIVERY_COMPLETED, event.id).await? else {
        return Ok(());
    };
    stock::delivered(&mut tx, order_id).await?;
    tx.commit().await.context("Failed to commit DeliveryCompleted")?;
    Ok(())
}

/// `PaymentFailed`: the order will not be paid, so a request nobody has
/// started is dropped, as for `OrderDeleted` (one being packed is kept:
/// staff see it through). The drop is stamped with the event's time, so a
/// late `OrderCreated` (older) does not bring the request back. Its stock
/// hold is released.
pub async fn on_payment_failed(w: &Warehouse, event: &Event, order_id: Uuid) -> anyhow::Result<()> {
    let Some(mut tx) = inbox::begin(&w.db, ON_PAYMENT_FAILED, event.id).await? else {
        return Ok(());
    };
    drop_unstarted(w, &mut tx, order_id, event.time, "PaymentFailed").await?;
    w.outbox
        .commit(tx)
        .await
        .context("Failed to commit PaymentFailed")?;
    Ok(())
}

/// `PackageCreated` when some lines remain, else `PackagingFailed`.
pub fn packaging_outcome(order_id: Uuid, lines: &[Line]) -> anyhow::Result<Event> {
    let resources = vec![order_id.to_string()];
    if lines.is_empty() {
        Event::of::<PackagingFailed>(resources, &OrderRef { order_id })
    } else {
        let products = lines
            .iter()
            .map(|l| PackedLine {
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect();
        Event::of::<PackageCreated>(resources, &PackageCreated { order_id, products })
    }
}
