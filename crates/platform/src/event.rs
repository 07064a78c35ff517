//! The event envelope: Amazon EventBridge's JSON shape.

use anyhow::Context as _;
use ecom_contracts::Contract;
use ecom_model::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

/// An event's payload as JSON text, kept as it was written: an event is
/// encoded from its typed detail and decoded into one without a JSON tree
/// in between (building, walking and freeing one cost more than the rest of
/// encoding an event). [`Detail::value`] gives the tree where one is wanted.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Detail(Box<RawValue>);

impl Detail {
    /// `value`'s text.
    pub fn of(value: &Value) -> Detail {
        // A Value always encodes; the fallback (`null`) cannot happen.
        Detail(serde_json::value::to_raw_value(value).unwrap_or_default())
    }

    /// A detail written as JSON text elsewhere (checked to be JSON).
    pub fn from_json(text: String) -> Result<Detail, serde_json::Error> {
        RawValue::from_string(text).map(Detail)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The payload as a JSON tree (`null` if its text were not JSON, which
    /// no event's can be: it was read or written as JSON).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl From<Value> for Detail {
    fn from(value: Value) -> Detail {
        Detail::of(&value)
    }
}

/// Equal when the JSON is: the same text, or text that reads as the same value.
impl PartialEq for Detail {
    fn eq(&self, other: &Detail) -> bool {
        self.get() == other.get() || self.value() == other.value()
    }
}

/// Equal when the text reads as `other`.
impl PartialEq<Value> for Detail {
    fn eq(&self, other: &Value) -> bool {
        self.value() == *other
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl std::fmt::Debug for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

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
    pub detail: Detail,
    /// The W3C trace context of the span that wrote the event (a request,
    /// or a handler of another event), so that its handlers continue the
    /// same trace. Only with traces on; absent from the JSON otherwise
    /// (EventBridge has no such field: its consumers ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Event {
    /// A new event with a fresh id, stamped now.
    pub fn new(source: &str, detail_type: &str, resources: Vec<String>, detail: Value) -> Event {
        Event::with(source, detail_type, resources, Detail::of(&detail))
    }

    /// [`Event::new`] with the payload's text.
    pub fn with(source: &str, detail_type: &str, resources: Vec<String>, detail: Detail) -> Event {
        Event {
            version: "0".to_owned(),
            id: Uuid::now_v7(),
            source: source.to_owned(),
            detail_type: detail_type.to_owned(),
            time: Timestamp::now(),
            resources,
            detail,
            traceparent: None,
        }
    }

    /// A new event of contract `E` (its source and detail-type) with
    /// `detail` as payload. Fails only if the payload cannot be encoded,
    /// which no payload of the contracts can.
    pub fn of<E: Contract>(resources: Vec<String>, detail: &E::Detail) -> anyhow::Result<Event> {
        let detail = serde_json::value::to_raw_value(detail)
            .with_context(|| format!("Failed to encode a {} detail", E::DETAIL_TYPE))?;
        Ok(Event::with(E::SOURCE, E::DETAIL_TYPE, resources, Detail(detail)))
    }

    /// The detail read as contract `E`'s payload. A detail that does not
    /// decode can never be handled, so the error is
    /// [`crate::bus::permanent`]: the event goes to the dead-letter queue
    /// at once instead of being retried.
    pub fn detail_as<E: Contract>(&self) -> anyhow::Result<E::Detail> {
        serde_json::from_str::<E::Detail>(self.detail.get())
            .map_err(|e| crate::bus::permanent(format!("{} detail is malformed: {e}", E::DETAIL_TYPE)))
    }

    /// The event as the JSON value patterns are matched against.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// An event as the bus carries it (its JSON text, as the outbox stores it),
/// with the envelope fields that routing needs read off it: the outbox
/// relay passes it on without decoding the detail and encoding it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The event's id.
    pub id: Uuid,
    /// Its `source`.
    pub source: String,
    /// Its `detail-type`.
    pub detail_type: String,
    /// Its `time`.
    pub time: Timestamp,
    /// The whole event as JSON.
    pub payload: String,
}

impl Encoded {
    /// Reads the envelope of an event's JSON; the detail is skipped over,
    /// not decoded.
    pub fn parse(payload: String) -> Result<Encoded, serde_json::Error> {
        #[derive(Deserialize)]
        struct Head<'a> {
            id: Uuid,
            #[serde(borrow)]
            source: std::borrow::Cow<'a, str>,
            #[serde(rename = "detail-type", borrow)]
            detail_type: std::borrow::Cow<'a, str>,
            time: Timestamp,
        }
        let head: Head<'_> = serde_json::from_str(&payload)?;
        Ok(Encoded {
            id: head.id,
            source: head.source.into_owned(),
            detail_type: head.detail_type.into_owned(),
            time: head.time,
            payload,
        })
    }

    /// `event` encoded.
    pub fn of(event: &Event) -> Result<Encoded, serde_json::Error> {
        Ok(Encoded {
            id: event.id,
            source: event.source.clone(),
            detail_type: event.detail_type.clone(),
            time: event.time,
            payload: serde_json::to_string(event)?,
        })
    }

    /// Each of `events` encoded, for a backend's `publish`.
    pub fn all(events: &[Event]) -> anyhow::Result<Vec<Encoded>> {
        events
            .iter()
            .map(Encoded::of)
            .collect::<Result<_, _>>()
            .context("Failed to encode an event")
    }

    /// The event decoded.
    pub fn decode(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

/// The sources of this platform (defined with the contracts).
pub use ecom_contracts::sources;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_no_traceparent_field_unless_the_event_carries_one() {
        let event = Event::new(
            sources::ORDERS,
            "OrderCreated",
            vec!["o-1".into()],
            serde_json::json!({}),
        );
        let plain = serde_json::to_value(&event).unwrap();
        assert!(plain.get("traceparent").is_none(), "{plain}");
        assert_eq!(serde_json::from_value::<Event>(plain).unwrap(), event);

        let traced = Event {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..event
        };
        let json = serde_json::to_value(&traced).unwrap();
        assert_eq!(
            json["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), traced);
    }

    #[test]
    fn an_encoded_event_reads_its_envelope_and_keeps_the_text_as_it_was() {
        let event = Event::new(
            sources::ORDERS,
            "Order\"Created",
            vec!["o-1".into()],
            serde_json::json!({"a": [1, {"b": "c"}]}),
        );
        let text = serde_json::to_string(&event).unwrap();
        let encoded = Encoded::parse(text.clone()).unwrap();
        assert_eq!(encoded, Encoded::of(&event).unwrap());
        assert_eq!(encoded.payload, text);
        assert_eq!(encoded.detail_type, "Order\"Created");
        assert_eq!(encoded.decode().unwrap(), event);
        assert!(Encoded::parse("{\"id\": 1}".into()).is_err());
    }
}
