//! warehouse: turns orders into packaging requests that staff pack, and
//! reports each outcome (`PackageCreated` or `PackagingFailed`).
//!
//! Order events keep a NEW request in step with its order ([`events`]);
//! staff start, adjust and complete it ([`api`]). It also keeps the stock of
//! tracked products and the reservations orders hold ([`stock`]).

pub mod api;
pub mod domain;
pub mod events;
pub mod stock;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_storage::Migration;
use std::time::Duration;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::Warehouse.name();

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "packaging requests",
        include_str!("../migrations/0001_packaging_requests.sql"),
    ),
    Migration::new(2, "stock", include_str!("../migrations/0002_stock.sql")),
    Migration::new(
        3,
        "expiry index of unconfirmed holds",
        include_str!("../migrations/0003_expiry_index_of_unconfirmed_holds.sql"),
    ),
    Migration::new(
        4,
        "stock tables without rowid",
        include_str!("../migrations/0004_stock_tables_without_rowid.sql"),
    ),
];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| {
        Box::pin(async move {
            let warehouse = api::Warehouse::new(&ctx);
            for rule in events::rules(&warehouse)? {
                ctx.bus.subscribe(rule)?;
            }
            // A quarter of the hold's life, so a hold outlives its time by
            // at most that; at least every 5 s for the out-of-stock gauge.
            let every =
                (warehouse.reservation_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            api::spawn_sweeper(warehouse.clone(), every);
            Ok(api::router(warehouse, |routes| ctx.backend(routes)))
        })
    },
};
