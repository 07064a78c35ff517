//! The shape every service crate has, so the binary can wire any of them.

use crate::{Bus, Outbox};
use axum::Router;
use ecom_runtime::auth::Verifier;
use ecom_runtime::{Clients, Config, ServiceKey};
use ecom_storage::{Db, Migration};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything a service gets from the platform when it is built.
#[derive(Clone)]
pub struct Context {
    /// The service's name, e.g. `payment-3p`; also its URL prefix.
    pub name: &'static str,
    /// The service's own database (migrated).
    pub db: Db,
    /// Resolved configuration.
    pub config: Arc<Config>,
    /// Signs and checks service credentials.
    pub key: ServiceKey,
    /// Clients for calling other services, acting as this one.
    pub clients: Clients,
    /// The service's outbox: events written with its changes.
    pub outbox: Outbox,
    /// The bus, to subscribe rules on.
    pub bus: Bus,
    /// Checks end-user JWTs.
    pub verifier: Verifier,
    /// Cancelled when the process stops serving: long-lived work a
    /// request started (a GraphQL subscription) ends with it.
    pub shutdown: CancellationToken,
}

impl Context {
    /// Wraps `/backend/` routes so that only callers with a service
    /// credential reach them.
    pub fn backend(&self, routes: Router) -> Router {
        routes.route_layer(axum::middleware::from_fn_with_state(
            self.key.clone(),
            ecom_runtime::credentials::require_service,
        ))
    }
}

/// How to build one service.
pub struct ServiceDef {
    /// Name and URL prefix (`/payment-3p/…`).
    pub name: &'static str,
    /// Its migrations, applied before it is built.
    pub migrations: &'static [Migration],
    /// Builds its router (paths relative to its prefix).
    pub build: fn(Context) -> BoxFuture<'static, anyhow::Result<Router>>,
}
