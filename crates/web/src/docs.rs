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

use serde_json::Value;

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

/// The event catalogue served at `/docs/asyncapi.json`: the AsyncAPI 3.0
/// document generated from the typed contracts (`ecom_contracts::asyncapi`),
/// one channel per source and detail-type, each with its payload's JSON
/// Schema, producer and consumers.
pub fn event_catalogue() -> Value {
    ecom_contracts::asyncapi()
}
