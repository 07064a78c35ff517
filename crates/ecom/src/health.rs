//! `/healthz` (the process answers) and `/readyz` (it can do its work).
//!
//! `/readyz` checks, all at once and each within [`CHECK_TIMEOUT`], every
//! dependency of the process: the database of each local service, the bus
//! (on NATS: connected, and the events stream answers), and each service it
//! calls over HTTP (at least one replica answers its own `/readyz?local`).
//! So a change shows at the next probe, within about a second. It answers
//! 200 `{"status":"ready"}`, or 503 with a `message` naming every failed
//! check. `/readyz?local` leaves out the services called over HTTP: that
//! is what those services' callers probe, so that readiness does not go
//! round a loop of services calling each other.

use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use ecom_platform::Bus;
use ecom_runtime::{ApiError, Clients, Json};
use ecom_storage::Db;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for one check: a dependency slower than this is not ready.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Health {
    dbs: Arc<Vec<(&'static str, Db)>>,
    bus: Bus,
    clients: Clients,
}

impl Health {
    /// Checks the databases `dbs` (by service), the bus, and the remote
    /// services of `clients`.
    pub fn new(dbs: Vec<(&'static str, Db)>, bus: Bus, clients: Clients) -> Health {
        Health {
            dbs: Arc::new(dbs),
            bus,
            clients,
        }
    }

    /// Every failed check, in words; empty when ready.
    pub async fn problems(&self, with_remote: bool) -> Vec<String> {
        let dbs = self.dbs.iter().map(|(name, db)| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    tracing::warn!(service = name, error = %e, "database not ready");
                    Some(format!("the database of {name} does not answer"))
                }
                Err(_) => Some(format!(
                    "the database of {name} does not answer within {CHECK_TIMEOUT:?}"
                )),
            }
        });
        let bus = async {
            match tokio::time::timeout(CHECK_TIMEOUT, self.bus.ready()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("the bus is not ready: {e:#}")),
                Err(_) => Some(format!("the bus does not answer within {CHECK_TIMEOUT:?}")),
            }
        };
        let remote = if with_remote {
            self.clients.remote_services()
        } else {
            Vec::new()
        };
        let services = remote
            .iter()
            .map(|service| async move { self.clients.probe(service, CHECK_TIMEOUT).await.err() });
        let (dbs, bus, services) = tokio::join!(
            futures::future::join_all(dbs),
            bus,
            futures::future::join_all(services)
        );
        dbs.into_iter()
            .chain(std::iter::once(bus))
            .chain(services)
            .flatten()
            .collect()
    }
}

/// `GET /healthz`.
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz[?local]`.
pub async fn readyz(
    State(health): State<Health>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let local = query.is_some_and(|q| q.split('&').any(|p| p == "local" || p.starts_with("local=")));
    let problems = health.problems(!local).await;
    if problems.is_empty() {
        Ok(Json(serde_json::json!({ "status": "ready" })))
    } else {
        Err(ApiError::unavailable(format!(
            "not ready: {}",
            problems.join("; ")
        )))
    }
}
