//! payment-3p: a simulated third-party card processor. A shopper
//! pre-authorises an amount on a card and gets a token; the shop (with its
//! service credential) checks, lowers, captures, cancels or refunds it, and
//! the processor records which order captured how much. Tokens are stored
//! durably.

pub mod api;
pub mod domain;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_storage::Migration;

/// Service name and URL prefix.
pub const NAME: &str = "payment-3p";

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "payment tokens", include_str!("../migrations/0001_tokens.sql")),
    Migration::new(
        2,
        "captures and refunds",
        include_str!("../migrations/0002_captures_and_refunds.sql"),
    ),
];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| Box::pin(async move { Ok(api::router(&ctx)) }),
};
