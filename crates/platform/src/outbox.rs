//! The transactional outbox: a service writes its change and the events
//! describing it in one database transaction; the relay publishes them later.
//! A crash between commit and publish loses nothing: the rows wait in
//! `_outbox` until the relay (restarted with the process) sends them.
//!
//! Created / Modified / Deleted events are derived from the row's old and
//! new images, like a table change stream.

use crate::{Detail, Encoded, Event};
use anyhow::Context as _;
use ecom_contracts::{Contract, Modified};
use ecom_storage::{Backend, Migration, Tx};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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
    handed: Arc<Mutex<Handed>>,
}

/// Committed outbox rows handed to the relay in memory (SQLite), by seq,
/// so that it need not read back what was just written. At most
/// [`HANDED_AT_MOST`]: past that (a relay that is not running, or stuck)
/// rows are left to the relay's read of the table.
pub(crate) type Handed = BTreeMap<i64, Encoded>;

/// How many committed rows wait in memory for the relay, at most.
const HANDED_AT_MOST: usize = 2_000;

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
    ///
    /// On SQLite the rows are also handed to this process's relay once
    /// `tx` commits (their `seq`s taken with `RETURNING`), so that it
    /// publishes them without reading them back (`relay.rs`).
    pub async fn push_all(&self, tx: &mut Tx, events: &[Event]) -> anyhow::Result<()> {
        let traceparent = ecom_runtime::telemetry::traceparent();
        let backend = Backend::of(tx);
        let hand_over = backend == Backend::Sqlite;
        for chunk in events.chunks(ecom_storage::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO _outbox (event_id, payload, created_at) VALUES {}",
                backend.values_sql(chunk.len(), 3),
            );
            let mut q = ecom_storage::sqlx::query(&sql);
            let mut encoded = Vec::with_capacity(if hand_over { chunk.len() } else { 0 });
            for event in chunk {
                let payload = match &traceparent {
                    Some(traceparent) if event.traceparent.is_none() => serde_json::to_string(&Event {
                        traceparent: Some(traceparent.clone()),
                        ..event.clone()
                    }),
                    _ => serde_json::to_string(event),
                }
                .context("Failed to encode an event")?;
                if hand_over {
                    encoded.push(Encoded {
                        id: event.id,
                        source: event.source.clone(),
                        detail_type: event.detail_type.clone(),
                        time: event.time,
                        payload: payload.clone(),
                    });
                }
                q = q
                    .bind(event.id.to_string())
                    .bind(payload)
                    .bind(event.time.unix_micros());
            }
            let done = q
                .execute(&mut **tx)
                .await
                .context("Failed to write to the outbox")?;
            if !hand_over {
                continue;
            }
            // One statement's rows take consecutive seqs in VALUES order
            // (one writer, no seq given), the last being SQLite's last
            // inserted rowid: learnt so, not with `RETURNING`, which SQLite
            // runs through an ephemeral table. Without it the rows are not
            // handed over, and the relay reads them from the table.
            let n = encoded.len();
            let Some(last) = done.last_insert_id().filter(|_| done.rows_affected() == n as u64) else {
                continue;
            };
            let seqs = (last + 1 - n as i64)..=last;
            let (handed, wake) = (self.handed.clone(), self.wake.clone());
            tx.after_commit(move || {
                let mut handed = handed.lock().unwrap_or_else(|e| e.into_inner());
                if handed.len() + n <= HANDED_AT_MOST {
                    handed.extend(seqs.zip(encoded));
                }
                drop(handed);
                wake.notify_one();
            });
        }
        Ok(())
    }

    /// The committed rows handed over after seq `after`, up to `limit` of
    /// them in seq order: `Some` (perhaps empty) when they continue
    /// `after` without a gap, `None` when a row between is missing (written
    /// by another process or handle, or not kept), for the relay to read the
    /// table. Rows up to `after` are dropped.
    pub(crate) fn take_handed(&self, after: i64, limit: usize) -> Option<Vec<(i64, Encoded)>> {
        let mut handed = self.handed.lock().unwrap_or_else(|e| e.into_inner());
        while handed.first_key_value().is_some_and(|(seq, _)| *seq <= after) {
            handed.pop_first();
        }
        let mut next = after.saturating_add(1);
        match handed.first_key_value() {
            None => return Some(Vec::new()),
            Some((first, _)) if *first != next => return None,
            Some(_) => {}
        }
        let mut taken = Vec::new();
        while taken.len() < limit {
            match handed.remove(&next) {
                Some(event) => taken.push((next, event)),
                None => break,
            }
            next += 1;
        }
        Some(taken)
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
/// changed. Built from the two images' JSON text directly, rather than
/// through a [`Modified`] value (which would need copies of both) or JSON
/// trees (building, comparing and freeing two trees per change cost more
/// than the rest of the event).
pub fn modified<E, R>(id: &str, old: &R, new: &R) -> anyhow::Result<Option<Event>>
where
    E: Contract<Detail = Modified<R>>,
    R: Serialize,
{
    let encode = |value: &R| serde_json::to_string(value).context("Failed to encode a resource");
    let (old, new) = (encode(old)?, encode(new)?);
    let changed = changed_in_text(&old, &new);
    if changed.is_empty() {
        return Ok(None);
    }
    let changed = serde_json::to_string(&changed).context("Failed to encode changed fields")?;
    let detail = format!(r#"{{"changed":{changed},"new":{new},"old":{old}}}"#);
    Ok(Some(Event::with(
        E::SOURCE,
        E::DETAIL_TYPE,
        vec![id.to_owned()],
        Detail::from_json(detail).context("Failed to encode a change")?,
    )))
}

/// Top-level field names whose values differ (or exist on one side only)
/// between two JSON objects' texts, sorted: the fields of each are read as
/// raw text, and a field whose texts differ is compared as values (the same
/// value may be written two ways).
fn changed_in_text(old: &str, new: &str) -> Vec<String> {
    type Fields<'a> = BTreeMap<String, &'a RawValue>;
    let fields = |text| serde_json::from_str::<Fields<'_>>(text).unwrap_or_default();
    let (old, new) = (fields(old), fields(new));
    let differ = |a: &RawValue, b: &RawValue| {
        a.get() != b.get()
            && serde_json::from_str::<Value>(a.get()).ok() != serde_json::from_str::<Value>(b.get()).ok()
    };
    let mut changed: Vec<String> = old
        .iter()
        .filter(|(k, v)| new.get(*k).is_none_or(|n| differ(v, n)))
        .map(|(k, _)| k.clone())
        .chain(new.keys().filter(|k| !old.contains_key(*k)).cloned())
        .collect();
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_relay_takes_handed_rows_only_where_they_follow_what_it_published() {
        let outbox = Outbox::new();
        assert_eq!(
            outbox.take_handed(0, 10).map(|r| r.len()),
            Some(0),
            "nothing handed: nothing to do"
        );
        let row = |seq: i64| {
            let event = Event::new("test", "Thing", vec![], json!({"n": seq}));
            (seq, Encoded::of(&event).unwrap())
        };
        outbox.handed.lock().unwrap().extend([3, 5, 6, 7, 9].map(row));
        let seqs = |taken: Option<Vec<(i64, Encoded)>>| {
            taken.map(|t| t.into_iter().map(|(s, _)| s).collect::<Vec<_>>())
        };
        assert_eq!(
            seqs(outbox.take_handed(3, 10)),
            None,
            "4 is missing: read the table"
        );
        assert_eq!(
            seqs(outbox.take_handed(4, 2)),
            Some(vec![5, 6]),
            "up to the limit, rows up to 4 dropped"
        );
        assert_eq!(seqs(outbox.take_handed(6, 10)), Some(vec![7]), "up to the gap");
        assert_eq!(seqs(outbox.take_handed(7, 10)), None, "8 is missing");
        assert_eq!(seqs(outbox.take_handed(8, 10)), Some(vec![9]));
        assert_eq!(outbox.handed.lock().unwrap().len(), 0);
    }

    #[test]
    fn changed_names_top_fields_including_nested_and_removed_ones() {
        // One value written two ways (keys in another order, other
        // spacing) is no change.
        let old = r#"{"a": 1, "b": {"x": 1, "y": 2}, "c": 3, "gone": true, "d": [1]}"#;
        let new = r#"{"a": 1, "b": {"y": 2, "x": 2}, "c": 4, "added": 0, "d": [ 1 ]}"#;
        assert_eq!(changed_in_text(old, new), vec!["added", "b", "c", "gone"]);
        let reordered = r#"{"b": {"y": 2, "x": 1}, "a": 1, "gone": true, "c": 3, "d": [1]}"#;
        assert!(changed_in_text(old, reordered).is_empty());
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
        assert_eq!(e.detail.value()["changed"], json!(["name"]));
        let detail: Modified<ecom_model::Product> = serde_json::from_str(e.detail.get()).unwrap();
        assert_eq!((detail.old, detail.new), (v, renamed));
        assert_eq!(e.resources, vec!["1"]);
    }
}
