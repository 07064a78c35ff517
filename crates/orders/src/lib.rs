//! orders: the single source of truth for an order. Creates orders after
//! checking them with products, delivery-pricing and payment; copies product
//! and address details into the order so it stays consistent over time;
//! follows the warehouse's, delivery's and payment's events to move its
//! status; emits `OrderCreated` / `OrderModified` from its table changes.
//! Keeps each order's history (every status and when it was reached), its
//! delivery's tracking id and the sum refunded; cancels NEW orders whose
//! packaging has not started.

pub mod api;
pub mod domain;
pub mod events;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_runtime::metrics::{counter, Counter};
use ecom_storage::Migration;
use std::sync::Arc;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::Orders.name();

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "orders", include_str!("../migrations/0001_orders.sql")),
    Migration::new(
        2,
        "idempotency request hash",
        include_str!("../migrations/0002_idempotency_request_hash.sql"),
    ),
    Migration::new(
        3,
        "status history",
        include_str!("../migrations/0003_status_history.sql"),
    ),
];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| {
        Box::pin(async move {
            let metrics = Arc::new(Metrics::new());
            events::subscribe(&ctx, metrics.clone())?;
            Ok(api::router(&ctx, metrics))
        })
    },
};

/// The service's key figures on `/metrics`.
pub struct Metrics {
    created: Arc<Counter>,
    refused: Arc<Counter>,
    fulfilled: Arc<Counter>,
    packaging_failed: Arc<Counter>,
    delivery_failed: Arc<Counter>,
    payment_failed: Arc<Counter>,
    cancelled: Arc<Counter>,
    create_latency_micros_sum: Arc<Counter>,
    create_latency_count: Arc<Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let failed = |stage| {
            counter(
                "ecom_orders_failed_total",
                "Orders that failed after creation, by stage.",
                &[("stage", stage)],
            )
        };
        Metrics {
            created: counter("ecom_orders_created_total", "Orders created.", &[]),
            refused: counter(
                "ecom_orders_refused_total",
                "createOrder requests refused by a check with another service.",
                &[],
            ),
            fulfilled: counter(
                "ecom_orders_fulfilled_total",
                "Orders delivered and paid their total.",
                &[],
            ),
            packaging_failed: failed("packaging"),
            delivery_failed: failed("delivery"),
            payment_failed: failed("payment"),
            cancelled: counter("ecom_orders_cancelled_total", "Orders cancelled.", &[]),
            create_latency_micros_sum: counter(
                "ecom_orders_create_latency_microseconds_sum",
                "Total time spent answering createOrder, in microseconds.",
                &[],
            ),
            create_latency_count: counter(
                "ecom_orders_create_latency_microseconds_count",
                "createOrder requests answered.",
                &[],
            ),
        }
    }
}
