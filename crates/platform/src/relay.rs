//! The outbox relay: moves committed outbox rows of one service database
//! to the bus, oldest first, then deletes them. Runs for as long as the
//! process does; on start it sends whatever a crash left behind.

use crate::{Bus, Event, Outbox};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;
/// How often the relay looks even when no commit woke it (commits in other
/// processes, such as the CLI, do not wake this one).
const POLL: Duration = Duration::from_millis(250);

/// Relays until `shutdown`.
pub async fn run(service: &'static str, db: Db, outbox: Outbox, bus: Bus, shutdown: CancellationToken) {
    let mut failures = 0u32;
    loop {
        match relay_batch(&db, &bus).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(service, error = %format!("{e:#}"), "outbox relay failed; will retry");
            }
        }
        let pause = if failures == 0 {
            POLL
        } else {
            POLL * failures.min(20)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = outbox.woken() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Publishes one batch; returns how many events it sent.
pub async fn relay_batch(db: &Db, bus: &Bus) -> anyhow::Result<usize> {
    let rows = sqlx::query("SELECT seq, payload FROM _outbox ORDER BY seq LIMIT $1")
        .bind(BATCH)
        .fetch_all(db.reader())
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut events = Vec::with_capacity(rows.len());
    let mut last_seq = 0i64;
    for row in &rows {
        last_seq = row.try_get::<i64, _>(0)?;
        let payload: String = row.try_get(1)?;
        match serde_json::from_str::<Event>(&payload) {
            Ok(event) => events.push(event),
            // Only this code writes the outbox, so this is a bug; skipping
            // the row keeps one bad row from blocking every later event.
            Err(e) => tracing::error!(seq = last_seq, error = %e, "undecodable outbox row skipped"),
        }
    }
    bus.publish(&events).await?;
    // Publishing is idempotent by event id, so a crash before this delete
    // only means the batch is published again.
    sqlx::query("DELETE FROM _outbox WHERE seq <= $1")
        .bind(last_seq)
        .execute(db.writer())
        .await?;
    Ok(rows.len())
}
