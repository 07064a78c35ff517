//! delivery-pricing: how much delivering a set of products to an address
//! costs. Stateless: the rule lives in [`domain`], the route in [`api`].

pub mod api;
pub mod domain;

use ecom_platform::ServiceDef;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::DeliveryPricing.name();

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: &[],
    build: |ctx| Box::pin(async move { Ok(api::router(&ctx)) }),
};
