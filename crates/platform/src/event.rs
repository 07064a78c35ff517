//! The event envelope: Amazon EventBridge's JSON shape.

use anyhow::Context as _;
use ecom_contracts::Contract;
use ecom_model::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One event on the bus.
///
/// `{"version":"0","id":…,"source":"ecommerce.orders","detail-type":"OrderCreated",
///   "time":…,"resources":["<id>"],"detail":{…}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `"0"`.
    pub version: String,
    /// Unique id; consumers de-duplicate on it. A UUIDv7 (time-ordered),
    /// so the unique indexes on it (archive, inbox, deliveries) grow at
    /// their end instead of touching a random page per event.
    pub id: Uuid,
    /// Who emitted it, e.g. `ecommerce.orders`.
    pub source: String,
    /// What happened, e.g. `OrderCreated`.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// When it happened (UTC).
    pub time: Timestamp,
    /// Ids of the resources concerned.
    #[serde(default)]
    pub resources: Vec<String>,
    /// The payload.
    pub detail: Value,
}

impl Event {
    /// A new event with a fresh id, stamped now.
    pub fn new(source: &str, detail_type: &str, resources: Vec<String>, detail: Value) -> Event {
        Event {
            version: "0".to_owned(),
            id: Uuid::now_v7(),
            source: source.to_owned(),
            detail_type: detail_type.to_owned(),
            time: Timestamp::now(),
            resources,
            detail,
        }
    }

    /// A new event of contract `E` (its source and detail-type) with
    /// `detail` as payload. Fails only if the payload cannot be encoded,
    /// which no payload of the contracts can.
    pub fn of<E: Contract>(resources: Vec<String>, detail: &E::Detail) -> anyhow::Result<Event> {
        let detail = serde_json::to_value(detail)
            .with_context(|| format!("Failed to encode a {} detail", E::DETAIL_TYPE))?;
        Ok(Event::new(E::SOURCE, E::DETAIL_TYPE, resources, detail))
    }

    /// The detail read as contract `E`'s payload. A detail that does not
    /// decode can never be handled, so the error is
    /// [`crate::bus::permanent`]: the event goes to the dead-letter queue
    /// at once instead of being retried.
    pub fn detail_as<E: Contract>(&self) -> anyhow::Result<E::Detail> {
        E::Detail::deserialize(&self.detail)
            .map_err(|e| crate::bus::permanent(format!("{} detail is malformed: {e}", E::DETAIL_TYPE)))
    }

    /// The event as the JSON value patterns are matched against.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The sources of this platform (defined with the contracts).
pub use ecom_contracts::sources;
