//! Idempotent consumers: a handler's effect and the record that it applied
//! an event commit in one transaction, so a redelivered event is
//! acknowledged without a second effect.

use anyhow::Context as _;
use ecom_storage::{Db, Tx};
use uuid::Uuid;

/// Starts the transaction of `consumer` applying event `event_id`. `None`
/// means the event was applied before: acknowledge it and do nothing.
/// The caller does its effect in the transaction and commits it (through
/// the service's [`crate::Outbox::commit`] when it also emits events).
///
/// Two deliveries of one event racing here are serialised by the primary
/// key: the second waits for the first to commit, then finds the row.
pub async fn begin(db: &Db, consumer: &str, event_id: Uuid) -> anyhow::Result<Option<Tx>> {
    let mut tx = db
        .begin()
        .await
        .context("Failed to start a handler transaction")?;
    let micros = ecom_model::Timestamp::now().unix_micros();
    let inserted = ecom_storage::sqlx::query(
        "INSERT INTO _inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(micros)
    .execute(&mut *tx)
    .await
    .context("Failed to record the event in the inbox")?;
    if inserted.rows_affected() == 0 {
        tx.rollback().await.ok();
        return Ok(None);
    }
    Ok(Some(tx))
}
