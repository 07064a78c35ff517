//! What delivery does with warehouse events, and the events it emits.

use crate::domain::Status;
use crate::store;
use anyhow::Context as _;
use ecom_contracts::delivery::{DeliveryOutcome, DeliveryStarted};
use ecom_contracts::orders::OneOrder;
use ecom_contracts::warehouse::PackageCreated;
use ecom_contracts::{Contract, Service};
use ecom_model::Address;
use ecom_platform::{inbox, Event, Rule};
use ecom_runtime::Clients;
use ecom_storage::Db;
use std::sync::Arc;
use uuid::Uuid;

/// Rule name (also the inbox consumer name).
pub const ON_PACKAGE_CREATED: &str = "delivery.on-package-created";

/// The rules of delivery.
pub fn rules(
    db: &Db,
    clients: &Clients,
    created: Arc<ecom_runtime::metrics::Counter>,
) -> anyhow::Result<Vec<Rule>> {
    let (db, clients) = (db.clone(), clients.clone());
    Ok(vec![Rule::typed::<PackageCreated, _, _>(
        ON_PACKAGE_CREATED,
        move |event, package| {
            let (db, clients, created) = (db.clone(), clients.clone(), created.clone());
            async move {
                if on_package_created(&db, &clients, &event, package.order_id).await? {
                    created.inc();
                }
                Ok(())
            }
        },
    )?])
}

/// `PackageCreated`: a NEW delivery to the order's address, fetched from
/// orders, unless the delivery is already past NEW. True when a delivery
/// was created. A failed fetch is an error, so the bus retries the event.
pub async fn on_package_created(
    db: &Db,
    clients: &Clients,
    event: &Event,
    order_id: Uuid,
) -> anyhow::Result<bool> {
    // Only a delivery still to be made needs the order, so a replay for a
    // delivery under way does not depend on orders answering. The call
    // happens before the transaction: a write transaction must not wait on
    // another service (on SQLite it holds the write lock).
    let address = if store::status(db, order_id)
        .await?
        .is_some_and(|s| s != Status::New)
    {
        None
    } else {
        let answer: OneOrder = clients
            .get(Service::Orders)?
            .get(&format!("/backend/{order_id}"))
            .await
            .with_context(|| format!("Failed to fetch order {order_id}"))?;
        Some(answer.order.address)
    };
    let Some(mut tx) = inbox::begin(db, ON_PACKAGE_CREATED, event.id).await? else {
        return Ok(false);
    };
    let existing = store::find(&mut tx, order_id).await?.map(|(status, _)| status);
    let mut created = false;
    match (existing, address) {
        (Some(status), _) if status != Status::New => {
            tracing::info!(%order_id, status = status.as_str(), "PackageCreated ignored: delivery is past NEW");
        }
        (_, Some(address)) => {
            store::put_new(&mut tx, order_id, &address).await?;
            created = existing.is_none();
        }
        // Past NEW a moment ago, gone now: deleted by an admin; not recreated.
        (_, None) => tracing::info!(%order_id, "PackageCreated ignored: delivery was deleted"),
    }
    tx.commit().await.context("Failed to commit PackageCreated")?;
    Ok(created)
}

/// `DeliveryStarted {orderId, trackingId}`.
pub fn started(order_id: Uuid, tracking_id: &str) -> anyhow::Result<Event> {
    let detail = DeliveryStarted {
        order_id,
        tracking_id: tracking_id.to_owned(),
    };
    Event::of::<DeliveryStarted>(vec![order_id.to_string()], &detail)
}

/// `DeliveryCompleted` or `DeliveryFailed` (`E`) with `{orderId, address}`.
pub fn outcome<E: Contract<Detail = DeliveryOutcome>>(
    order_id: Uuid,
    address: &Address,
) -> anyhow::Result<Event> {
    let detail = DeliveryOutcome {
        order_id,
        address: address.clone(),
    };
    Event::of::<E>(vec![order_id.to_string()], &detail)
}
