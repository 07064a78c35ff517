//! The `deliveries` table.

use crate::domain::{Delivery, Status};
use anyhow::Context as _;
use ecom_model::{Address, Timestamp};
use ecom_runtime::page::{self, Position};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use uuid::Uuid;

fn status_of(text: &str) -> anyhow::Result<Status> {
    Status::parse(text).with_context(|| format!("unknown delivery status {text}"))
}

/// The status and address of a delivery, if it exists.
pub async fn find(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<Option<(Status, Address)>> {
    let row = sqlx::query("SELECT status, address FROM deliveries WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("Failed to read a delivery")?;
    row.map(|r| {
        let status: String = r.try_get(0)?;
        let address: String = r.try_get(1)?;
        Ok((
            status_of(&status)?,
            serde_json::from_str(&address).context("stored address is malformed")?,
        ))
    })
    .transpose()
}

/// The status of a delivery, if it exists.
pub async fn status(db: &Db, order_id: Uuid) -> anyhow::Result<Option<Status>> {
    let row = sqlx::query("SELECT status FROM deliveries WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(db.reader())
        .await
        .context("Failed to read a delivery")?;
    row.map(|r| status_of(&r.try_get::<String, _>(0)?)).transpose()
}

/// Stores a NEW delivery, or refreshes the address of one still NEW.
pub async fn put_new(tx: &mut Tx, order_id: Uuid, address: &Address) -> anyhow::Result<()> {
    let now = Timestamp::now();
    sqlx::query(
        "INSERT INTO deliveries (order_id, status, address, created_micros, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO UPDATE SET address = $3, updated_at = $5 WHERE deliveries.status = $2",
    )
    .bind(order_id.to_string())
    .bind(Status::New.as_str())
    .bind(serde_json::to_string(address).context("Failed to encode an address")?)
    .bind(now.unix_micros())
    .bind(now.to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to store a delivery")?;
    Ok(())
}

/// Moves a delivery from `from` to `to`; false when it was not in `from`.
pub async fn transition(tx: &mut Tx, order_id: Uuid, from: Status, to: Status) -> anyhow::Result<bool> {
    let done =
        sqlx::query("UPDATE deliveries SET status = $3, updated_at = $4 WHERE order_id = $1 AND status = $2")
            .bind(order_id.to_string())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(Timestamp::now().to_string())
            .execute(&mut **tx)
            .await
            .context("Failed to change a delivery's status")?;
    Ok(done.rows_affected() == 1)
}

/// Gives a delivery its tracking id.
pub async fn set_tracking_id(tx: &mut Tx, order_id: Uuid, tracking_id: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE deliveries SET tracking_id = $2 WHERE order_id = $1")
        .bind(order_id.to_string())
        .bind(tracking_id)
        .execute(&mut **tx)
        .await
        .context("Failed to store a tracking id")?;
    Ok(())
}

/// Removes a delivery.
pub async fn delete(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM deliveries WHERE order_id = $1")
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await
        .context("Failed to delete a delivery")?;
    Ok(())
}

fn delivery(row: &sqlx::any::AnyRow) -> anyhow::Result<Delivery> {
    let id: String = row.try_get("order_id")?;
    let status: String = row.try_get("status")?;
    let address: String = row.try_get("address")?;
    Ok(Delivery {
        order_id: Uuid::parse_str(&id).context("bad order id in deliveries")?,
        address: serde_json::from_str(&address).context("stored address is malformed")?,
        status: status_of(&status)?.as_str(),
        tracking_id: row.try_get("tracking_id")?,
    })
}

/// One delivery.
pub async fn get(db: &Db, order_id: Uuid) -> anyhow::Result<Option<Delivery>> {
    let row =
        sqlx::query("SELECT order_id, status, address, tracking_id FROM deliveries WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(db.reader())
            .await
            .context("Failed to read a delivery")?;
    row.as_ref().map(delivery).transpose()
}

/// Up to `limit` NEW deliveries, oldest first, after `after`; and the
/// cursor of the next page when there may be one.
pub async fn list_new(
    db: &Db,
    after: Option<Position>,
    limit: i64,
) -> anyhow::Result<(Vec<Delivery>, Option<Position>)> {
    let (micros, id) = after.unwrap_or_else(page::start);
    let rows = sqlx::query(
        "SELECT order_id, status, address, tracking_id, created_micros FROM deliveries
         WHERE status = $1 AND (created_micros > $2 OR (created_micros = $2 AND order_id > $3))
         ORDER BY created_micros, order_id LIMIT $4",
    )
    .bind(Status::New.as_str())
    .bind(micros)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await
    .context("Failed to list deliveries")?;
    let (rows, next) = page::split(rows, limit, |last| {
        Ok::<_, sqlx::Error>((last.try_get("created_micros")?, last.try_get("order_id")?))
    })?;
    let deliveries = rows.iter().map(delivery).collect::<anyhow::Result<_>>()?;
    Ok((deliveries, next))
}
