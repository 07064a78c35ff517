//! The event catalogue: every [`Contract`] with who produces and who
//! consumes it, and the AsyncAPI 3.0 document generated from it.

use crate::{delivery, orders, payment, products, users, warehouse, Contract, Service};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// One event of the catalogue.
#[derive(Debug, Clone)]
pub struct EventInfo {
    /// `source` of the envelope.
    pub source: &'static str,
    /// `detail-type` of the envelope.
    pub detail_type: &'static str,
    /// The service that emits it.
    pub producer: Service,
    /// The services with a rule for it.
    pub consumers: &'static [Service],
    /// When it is emitted.
    pub summary: &'static str,
    /// Adds the schema of its detail to a generator and returns it (a
    /// `$ref` into the generator's definitions for named types).
    schema: fn(&mut SchemaGenerator) -> schemars::Schema,
}

fn entry<E: Contract>(producer: Service, consumers: &'static [Service], summary: &'static str) -> EventInfo
where
    E::Detail: JsonSchema,
{
    EventInfo {
        source: E::SOURCE,
        detail_type: E::DETAIL_TYPE,
        producer,
        consumers,
        summary,
        schema: |generator| generator.subschema_for::<E::Detail>(),
    }
}

/// Every event on the bus, by source.
pub fn catalogue() -> Vec<EventInfo> {
    use Service::{Delivery, Orders, Payment, Products, Users, Warehouse};
    vec![
        entry::<users::UserCreated>(
            Users,
            &[],
            "A user signed up, or an admin or the CLI created one.",
        ),
        entry::<products::ProductCreated>(Products, &[], "A product was added to the catalogue."),
        entry::<products::ProductModified>(Products, &[], "A product changed."),
        entry::<products::ProductDeleted>(Products, &[], "A product was removed from the catalogue."),
        entry::<orders::OrderCreated>(Orders, &[Warehouse, Payment], "An order was stored."),
        entry::<orders::OrderModified>(Orders, &[Warehouse, Payment], "An order changed."),
        entry::<orders::OrderDeleted>(Orders, &[Warehouse], "An order was deleted."),
        entry::<orders::OrderCancelled>(Orders, &[Payment], "A NEW order was cancelled before packaging."),
        entry::<warehouse::PackageCreated>(
            Warehouse,
            &[Orders, Delivery],
            "Packaging completed with lines left.",
        ),
        entry::<warehouse::PackagingFailed>(
            Warehouse,
            &[Orders, Payment],
            "Packaging completed with no line left.",
        ),
        entry::<warehouse::StockChanged>(Warehouse, &[], "A tracked product's stock changed."),
        entry::<delivery::DeliveryStarted>(Delivery, &[Orders], "Staff started a delivery."),
        entry::<delivery::DeliveryCompleted>(
            Delivery,
            &[Payment, Warehouse],
            "A delivery reached its address.",
        ),
        entry::<delivery::DeliveryFailed>(Delivery, &[Orders, Payment, Warehouse], "A delivery failed."),
        entry::<payment::PaymentProcessed>(
            Payment,
            &[Orders],
            "The card processor captured the order's total.",
        ),
        entry::<payment::PaymentFailed>(
            Payment,
            &[Orders, Warehouse],
            "The card processor refused the capture.",
        ),
        entry::<payment::PaymentRefunded>(
            Payment,
            &[Orders],
            "Part or all of a captured payment was refunded.",
        ),
    ]
}

/// The channel id of an event in the AsyncAPI document
/// (`ecommerce.orders.OrderCreated`).
pub fn channel_id(source: &str, detail_type: &str) -> String {
    format!("{source}.{detail_type}")
}

/// An AsyncAPI 3.0 document of every event: one channel per source and
/// detail-type, its message with the JSON Schema of the `detail`, one
/// `send` operation for its producer and one `receive` operation per
/// consumer. Schemas are in `components.schemas`, referenced by `$ref`.
pub fn asyncapi() -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let (mut channels, mut operations) = (Map::new(), Map::new());
    for event in catalogue() {
        let id = channel_id(event.source, event.detail_type);
        let payload = (event.schema)(&mut generator);
        channels.insert(
            id.clone(),
            json!({
                "address": format!("{}/{}", event.source, event.detail_type),
                "title": event.detail_type,
                "description": format!(
                    "Events with source `{}` and detail-type `{}`; the payload is the envelope's `detail`.",
                    event.source, event.detail_type
                ),
                "messages": {
                    event.detail_type: {
                        "name": event.detail_type,
                        "title": event.detail_type,
                        "summary": event.summary,
                        "contentType": "application/json",
                        "payload": payload,
                        "x-producer": event.producer.name(),
                        "x-consumers": event.consumers.iter().map(|s| s.name()).collect::<Vec<_>>(),
                    }
                }
            }),
        );
        let message = json!([{ "$ref": format!("#/channels/{id}/messages/{}", event.detail_type) }]);
        let channel = json!({ "$ref": format!("#/channels/{id}") });
        operations.insert(
            format!("{}.send.{}", event.producer.name(), event.detail_type),
            json!({ "action": "send", "channel": channel, "messages": message }),
        );
        for consumer in event.consumers {
            operations.insert(
                format!("{}.receive.{}", consumer.name(), event.detail_type),
                json!({ "action": "receive", "channel": channel, "messages": message }),
            );
        }
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ecom events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every event on the ecom bus. Each travels in an EventBridge envelope \
                {version, id, source, detail-type, time, resources, detail}; the schemas below are \
                of its detail. Generated from the ecom-contracts crate."
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": { "schemas": schemas }
    })
}
