//! `/docs`: the page that links the API reference (each REST service's
//! OpenAPI document, rendered by `assets/docs.js`), the GraphQL IDE at
//! `/graphql` and the event catalogue (an AsyncAPI 3.0 document at
//! `/docs/asyncapi.json`, rendered by the same script).
//!
//! The renderer is a few hundred lines of plain JavaScript beside the
//! storefront's, not a packaged viewer: the packaged ones (Swagger UI,
//! Redoc, Scalar) weigh megabytes and several fetch fonts or scripts from a
//! CDN unless patched, and the page must work with no network
//! (`docs/decisions.md`, "API reference").

use serde_json::{json, Value};

/// The REST services whose documents the page lists, each served at
/// `/<service>/openapi.json` by the process that runs it.
pub const SERVICES: &[&str] = &[
    "users",
    "products",
    "orders",
    "warehouse",
    "delivery",
    "delivery-pricing",
    "payment",
    "payment-3p",
];

/// The event catalogue served at `/docs/asyncapi.json`: an AsyncAPI 3.0
/// document, one channel per source, one message per detail-type.
///
/// A stand-in, written from `docs/events.md`, until the typed contracts
/// crate generates the catalogue (`ecom_contracts::asyncapi()`): only this
/// body changes then.
pub fn event_catalogue() -> Value {
    let events: &[(&str, &str, &[&str], &str)] = &[
        (
            "users",
            "UserCreated",
            &["userId", "email"],
            "A user signed up or an admin created one.",
        ),
        (
            "products",
            "ProductCreated",
            &["productId", "name", "package", "price"],
            "A product was added to the catalogue (detail: the product).",
        ),
        (
            "products",
            "ProductModified",
            &["old", "new", "changed"],
            "A product changed.",
        ),
        (
            "products",
            "ProductDeleted",
            &["productId", "name", "package", "price"],
            "A product was removed (detail: the product as it was).",
        ),
        (
            "orders",
            "OrderCreated",
            &[
                "orderId",
                "userId",
                "status",
                "products",
                "address",
                "deliveryPrice",
                "paymentToken",
                "total",
            ],
            "An order was stored (detail: the order).",
        ),
        (
            "orders",
            "OrderModified",
            &["old", "new", "changed"],
            "An order changed: status, lines, total, trackingId, refunded.",
        ),
        (
            "orders",
            "OrderDeleted",
            &["orderId"],
            "An order was deleted (detail: the order as it was).",
        ),
        (
            "orders",
            "OrderCancelled",
            &["orderId"],
            "A NEW order was cancelled before packaging started.",
        ),
        (
            "warehouse",
            "PackageCreated",
            &["orderId", "products"],
            "Packaging completed with lines left.",
        ),
        (
            "warehouse",
            "PackagingFailed",
            &["orderId"],
            "Packaging completed with no line left.",
        ),
        (
            "warehouse",
            "StockChanged",
            &["productId", "onHand", "reserved", "available"],
            "A tracked product's stock changed.",
        ),
        (
            "delivery",
            "DeliveryStarted",
            &["orderId", "trackingId"],
            "Staff started a delivery.",
        ),
        (
            "delivery",
            "DeliveryCompleted",
            &["orderId", "address"],
            "Staff completed a delivery.",
        ),
        (
            "delivery",
            "DeliveryFailed",
            &["orderId", "address"],
            "Staff failed a delivery, or deleted an unfinished one.",
        ),
        (
            "payment",
            "PaymentProcessed",
            &["orderId", "amount"],
            "The card processor confirmed the capture of the order's total.",
        ),
        (
            "payment",
            "PaymentFailed",
            &["orderId", "reason"],
            "The card processor refused the capture, or the token was another order's.",
        ),
        (
            "payment",
            "PaymentRefunded",
            &["orderId", "amount", "refundId"],
            "An admin refunded part or all of a captured payment.",
        ),
    ];
    let mut channels = serde_json::Map::new();
    let mut operations = serde_json::Map::new();
    let mut messages = serde_json::Map::new();
    for (service, detail_type, fields, summary) in events {
        let channel = format!("ecommerce.{service}");
        let properties: serde_json::Map<String, Value> =
            fields.iter().map(|f| ((*f).to_owned(), json!({}))).collect();
        messages.insert(
            (*detail_type).to_owned(),
            json!({
                "name": detail_type,
                "summary": summary,
                "payload": {
                    "type": "object",
                    "required": ["version", "id", "source", "detail-type", "time", "detail"],
                    "properties": {
                        "version": {"const": "0"},
                        "id": {"type": "string", "format": "uuid"},
                        "source": {"const": channel},
                        "detail-type": {"const": detail_type},
                        "time": {"type": "string", "format": "date-time"},
                        "resources": {"type": "array", "items": {"type": "string"}},
                        "detail": {"type": "object", "properties": properties, "required": fields},
                    }
                }
            }),
        );
        let entry = channels.entry(channel.clone()).or_insert_with(|| {
            json!({
                "address": channel,
                "description": format!("Events the {service} service emits."),
                "messages": {}
            })
        });
        entry["messages"][*detail_type] = json!({"$ref": format!("#/components/messages/{detail_type}")});
        operations.insert(
            format!("emit{detail_type}"),
            json!({
                "action": "send",
                "channel": {"$ref": format!("#/channels/{channel}")},
                "messages": [{"$ref": format!("#/channels/{channel}/messages/{detail_type}")}],
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ecom events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every event on the bus, in the EventBridge envelope. Delivery is at least once, in no global order (docs/events.md)."
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    })
}
