//! The transactional outbox: a service writes its change and the events
//! describing it in one database transaction; the relay publishes them later.
//! A crash between commit and publish loses nothing: the rows wait in
//! `_outbox` until the relay (restarted with the process) sends them.
//!
//! Created / Modified / Deleted events are derived from the row's old and
//! new images, like a table change stream.

use crate::Event;
use anyhow::Context as _;
use ecom_contracts::{Contract, Modified};
use ecom_storage::{Migration, Tx};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::Notify;

/// Platform tables in every service database (scope `platform`).
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "outbox and inbox",
        include_str!("../migrations/0001_outbox_inbox.sql"),
    ),
    Migration::new(
        2,
        "outbox without a unique event id",
        include_str!("../migrations/0002_outbox_without_unique_id.sql"),
    ),
    Migration::new(
        3,
        "outbox events the bus refused",
        include_str!("../migrations/0003_outbox_rejected.sql"),
    ),
];

/// Migration scope of [`MIGRATIONS`].
pub const SCOPE: &str = "_platform";

/// A service's outbox. Cheap to clone.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    /// A new outbox handle.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Adds `event` to the outbox inside `tx`: it is published if and only
    /// if `tx` commits.
    pub async fn push(&self, tx: &mut Tx, event: &Event) -> anyhow::Result<()> {
        self.push_all(tx, std::slice::from_ref(event)).await
    }

    /// Adds `events` to the outbox inside `tx`, in order, with one
    /// statement per [`ecom_storage::ROWS_PER_STATEMENT`] events.
    ///
    /// With traces on, an event that carries no trace context gets the
    /// current span's (the request or handler writing it), so that the
    /// relay publishes it and its handlers continue that trace.
    pub async fn push_all(&self, tx: &mut Tx, events: &[Event]) -> anyhow::Result<()> {
        let traceparent = ecom_runtime::telemetry::traceparent();
        for chunk in events.chunks(ecom_storage::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO _outbox (event_id, payload, created_at) VALUES {}",
                ecom_storage::Backend::of(tx).values_sql(chunk.len(), 3)
            );
            let mut q = ecom_storage::sqlx::query(&sql);
            for event in chunk {
                let payload = match &traceparent {
                    Some(traceparent) if event.traceparent.is_none() => serde_json::to_string(&Event {
                        traceparent: Some(traceparent.clone()),
                        ..event.clone()
                    }),
                    _ => serde_json::to_string(event),
                }
                .context("Failed to encode an event")?;
                q = q
                    .bind(event.id.to_string())
                    .bind(payload)
                    .bind(event.time.unix_micros());
            }
            q.execute(&mut **tx)
                .await
                .context("Failed to write to the outbox")?;
        }
        Ok(())
    }

    /// Commits `tx` and wakes the relay, so events leave at once rather
    /// than at the relay's next poll.
    pub async fn commit(&self, tx: Tx) -> anyhow::Result<()> {
        tx.commit().await.context("Failed to commit")?;
        self.wake.notify_one();
        Ok(())
    }

    /// Completes when a commit has added events (used by the relay).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

fn to_object(value: &impl Serialize) -> anyhow::Result<Value> {
    serde_json::to_value(value).context("Failed to encode a resource")
}

/// `<Resource>Created` (contract `E`) with the whole new resource as detail.
pub fn created<E: Contract>(id: &str, new: &E::Detail) -> anyhow::Result<Event> {
    Event::of::<E>(vec![id.to_owned()], new)
}

/// `<Resource>Deleted` (contract `E`) with the whole resource as it was.
pub fn deleted<E: Contract>(id: &str, old: &E::Detail) -> anyhow::Result<Event> {
    Event::of::<E>(vec![id.to_owned()], old)
}

/// `<Resource>Modified` (contract `E`, whose detail is [`Modified`]) with
/// `{old, new, changed}`, where `changed` lists the top-level fields that
/// differ (a nested change names its top field). `None` when nothing
/// changed. Built from the two images directly rather than through a
/// [`Modified`] value, which would need copies of both.
pub fn modified<E, R>(id: &str, old: &R, new: &R) -> anyhow::Result<Option<Event>>
where
    E: Contract<Detail = Modified<R>>,
    R: Serialize,
{
    let (old, new) = (to_object(old)?, to_object(new)?);
    let changed = changed_fields(&old, &new);
    if changed.is_empty() {
        return Ok(None);
    }
    let detail = json!({ "old": old, "new": new, "changed": changed });
    Ok(Some(Event::new(
        E::SOURCE,
        E::DETAIL_TYPE,
        vec![id.to_owned()],
        detail,
    )))
}

/// Top-level field names whose values differ (or exist on one side only),
/// sorted.
pub fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut changed: Vec<String> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(new.keys().filter(|k| !old.contains_key(*k)).cloned())
        .collect();
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_names_top_fields_including_nested_and_removed_ones() {
        let old = json!({"a": 1, "b": {"x": 1}, "c": 3, "gone": true});
        let new = json!({"a": 1, "b": {"x": 2}, "c": 4, "added": 0});
        assert_eq!(changed_fields(&old, &new), vec!["added", "b", "c", "gone"]);
    }

    #[test]
    fn an_unchanged_resource_emits_nothing() {
        use ecom_contracts::products::ProductModified;
        let v: ecom_model::Product = serde_json::from_value(json!({
            "productId": "00000000-0000-0000-0000-000000000001", "name": "Mug", "price": 1,
            "package": {"width": 1, "length": 1, "height": 1, "weight": 1}
        }))
        .unwrap();
        assert!(modified::<ProductModified, _>("1", &v, &v).unwrap().is_none());
        let renamed = ecom_model::Product {
            name: "Cup".into(),
            ..v.clone()
        };
        let e = modified::<ProductModified, _>("1", &v, &renamed)
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.source.as_str(), e.detail_type.as_str()),
            ("ecommerce.products", "ProductModified")
        );
        assert_eq!(e.detail["changed"], json!(["name"]));
        assert_eq!(e.resources, vec!["1"]);
    }
}
