//! payment: makes sure one payment token pays for one order (claims), holds
//! each order's token and settles it at the card processor (payment-3p)
//! when the order is delivered, fails or is cancelled, announcing
//! `PaymentProcessed` or `PaymentFailed` (source `ecommerce.payment`);
//! refunds captured payments, wholly or in part (`PaymentRefunded`).

pub mod api;
pub mod domain;
pub mod events;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_runtime::metrics::{counter, Counter};
use ecom_storage::Migration;
use std::sync::Arc;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::Payment.name();

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "payments", include_str!("../migrations/0001_payments.sql")),
    Migration::new(
        2,
        "payment token claims",
        include_str!("../migrations/0002_claims.sql"),
    ),
    Migration::new(3, "refunds", include_str!("../migrations/0003_refunds.sql")),
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
    processed: Arc<Counter>,
    cancelled: Arc<Counter>,
    failed: Arc<Counter>,
    amount_won: Arc<Counter>,
    amount_lost: Arc<Counter>,
    refunds: Arc<Counter>,
    amount_refunded: Arc<Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            processed: counter("ecom_payments_processed_total", "Payments charged.", &[]),
            cancelled: counter("ecom_payments_cancelled_total", "Payments cancelled.", &[]),
            failed: counter(
                "ecom_payments_failed_total",
                "Payments not captured: the card processor refused, or the token was another order's.",
                &[],
            ),
            amount_won: counter(
                "ecom_payments_amount_won_total",
                "Money charged, in the smallest currency unit.",
                &[],
            ),
            amount_lost: counter(
                "ecom_payments_amount_lost_total",
                "Money released by cancelled payments, in the smallest currency unit.",
                &[],
            ),
            refunds: counter(
                "ecom_payments_refunds_total",
                "Refunds made (each refund of a payment, whole or in part).",
                &[],
            ),
            amount_refunded: counter(
                "ecom_payments_amount_refunded_total",
                "Money refunded, in the smallest currency unit.",
                &[],
            ),
        }
    }
}
