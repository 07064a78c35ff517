//! products: the catalogue. Source of truth for what is sold, at what price
//! and in what box; administrators manage it through [`api`]'s admin routes
//! (or `ecom products import`), shoppers read it through the public routes,
//! and orders checks what it is told against it with `/backend/validate`.
//! Every change is announced on the bus ([`events`]).

pub mod api;
pub mod categories;
pub mod domain;
pub mod events;
pub mod import;
pub mod store;
pub mod validate;

use ecom_platform::ServiceDef;
use ecom_storage::Migration;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::Products.name();

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "products",
    include_str!("../migrations/0001_products.sql"),
)];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| Box::pin(async move { Ok(api::router(&ctx)) }),
};
