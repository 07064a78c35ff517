//! users: accounts, sign-up and sign-in, ID tokens and their public keys.
//!
//! Replaces the original's managed user pool. Passwords are hashed with
//! argon2id; sign-in returns an Ed25519-signed JWT (`sub`, `email`,
//! `groups`) that every service checks locally with the keys published at
//! `/users/.well-known/jwks.json` (see `ecom_runtime::auth`), and a refresh
//! token. Admins manage accounts and staff groups. Every new user emits
//! `UserCreated`.

pub mod accounts;
pub mod api;
pub mod domain;
pub mod events;
pub mod keys;
pub mod limits;
pub mod passwords;
pub mod store;

use ecom_platform::ServiceDef;
use ecom_storage::Migration;

/// Service name and URL prefix.
pub const NAME: &str = ecom_contracts::Service::Users.name();

/// Schema changes, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "users, groups, refresh tokens, signing keys",
        include_str!("../migrations/0001_users.sql"),
    ),
    Migration::new(
        2,
        "token revocations",
        include_str!("../migrations/0002_token_revocations.sql"),
    ),
];

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: MIGRATIONS,
    build: |ctx| Box::pin(async move { api::router(&ctx).await }),
};
