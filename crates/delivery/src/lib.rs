//! delivery: delivers packaged orders to the order's address and reports
//! the outcome (`DeliveryCompleted` or `DeliveryFailed`).
//!
//! A `PackageCreated` event makes a NEW delivery ([`events`]); staff start
//! it (it gets a tracking id: `DeliveryStarted`) and complete or fail it
//! ([`api`]).

pub mod api;
pub mod domain;
pub mod events;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_storage::Migration;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::Delivery.name();

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "deliveries", include_str!("../migrations/0001_deliveries.sql")),
    Migration::new(2, "tracking ids", include_str!("../migrations/0002_tracking.sql")),
];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| {
        Box::pin(async move {
            let state = api::Deliveries::new(&ctx);
            for rule in events::rules(&ctx.db, &ctx.clients, state.created.clone())? {
                ctx.bus.subscribe(rule)?;
            }
            Ok(api::router(state))
        })
    },
};
