//! warehouse: turns orders into packaging requests that staff pack, and
//! reports each outcome (`PackageCreated` or `PackagingFailed`).
//!
//! Order events keep a NEW request in step with its order ([`events`]);
//! staff start, adjust and complete it ([`api`]).

pub mod api;
pub mod domain;
pub mod events;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_storage::Migration;

/// Service name and URL prefix.
pub const NAME: &str = "warehouse";

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "packaging requests",
    include_str!("../migrations/0001_packaging_requests.sql"),
)];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| {
        Box::pin(async move {
            for rule in events::rules(&ctx.db)? {
                ctx.bus.subscribe(rule)?;
            }
            Ok(api::router(api::Warehouse::new(&ctx)))
        })
    },
};
