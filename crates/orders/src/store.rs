//! The `orders` table: each order whole as JSON, plus the columns that find
//! (by id, by user and idempotency key) and sort (newest first) them, and
//! the hash of the request an idempotency key came with.
//! A page position is (created_at in µs, order id).
//!
//! `order_status_changes` keeps each status an order reached and when,
//! written in the transaction that changes the status.

use crate::domain::{Order, OrderLife as _, OrderStatus, StatusChange};
use anyhow::Context as _;
use ecom_model::Timestamp;
use ecom_runtime::page::{self, Position};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use std::collections::HashMap;
use uuid::Uuid;

fn decode(body: &str) -> anyhow::Result<Order> {
    serde_json::from_str(body).context("Failed to decode a stored order")
}

/// An idempotency key and the hash of the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'a> {
    /// The caller's key.
    pub key: &'a str,
    /// SHA-256 (hex) of the canonical request.
    pub request_hash: &'a str,
}

/// Stores a new order. A unique violation means the idempotency key was
/// used by a concurrent request (see [`ecom_storage::is_unique_violation`]).
pub async fn insert(tx: &mut Tx, order: &Order, keyed: Option<Keyed<'_>>) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(order).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO orders (order_id, user_id, created_at, idempotency_key, request_hash, body)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(order.order_id.to_string())
    .bind(&order.user_id)
    .bind(order.created_date.unix_micros())
    .bind(keyed.map(|k| k.key))
    .bind(keyed.map(|k| k.request_hash))
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The order with this id.
pub async fn get(db: &Db, order_id: Uuid) -> anyhow::Result<Option<Order>> {
    let row = sqlx::query("SELECT body FROM orders WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(db.reader())
        .await
        .context("Failed to read an order")?;
    row.map(|r| decode(&r.try_get::<String, _>(0)?)).transpose()
}

/// The order with this id, read inside a write transaction (to update it),
/// with its row locked until the transaction ends. Two handlers moving one
/// order at once (its `PackageCreated` and `DeliveryCompleted` delivered
/// together, to two replicas) otherwise both read the old image on
/// PostgreSQL and the later write undid the earlier (an order FULFILLED
/// went back to PACKAGED; found by the chaos suite). The lock is `FOR
/// UPDATE` on PostgreSQL; SQLite's write transactions are serialised
/// already. (It was a write that changed nothing, the same SQL on both
/// engines, which on SQLite rewrote the row on every status change.)
pub async fn get_in(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<Option<Order>> {
    let sql = format!(
        "SELECT body FROM orders WHERE order_id = $1{}",
        ecom_storage::Backend::of(tx).for_update()
    );
    let row = sqlx::query(&sql)
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("Failed to read an order")?;
    row.map(|r| decode(&r.try_get::<String, _>(0)?)).transpose()
}

/// The order a user created with an idempotency key, if any, and the hash
/// of the request it was created by (`None` for orders older than hashes).
pub async fn by_idempotency_key(
    db: &Db,
    user_id: &str,
    key: &str,
) -> anyhow::Result<Option<(Order, Option<String>)>> {
    let row =
        sqlx::query("SELECT body, request_hash FROM orders WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user_id)
            .bind(key)
            .fetch_optional(db.reader())
            .await
            .context("Failed to look up an idempotency key")?;
    row.map(|r| Ok((decode(&r.try_get::<String, _>(0)?)?, r.try_get(1)?)))
        .transpose()
}

/// Replaces an order's stored image.
pub async fn update(tx: &mut Tx, order: &Order) -> anyhow::Result<()> {
    let body = serde_json::to_string(order).context("Failed to encode an order")?;
    sqlx::query("UPDATE orders SET body = $2 WHERE order_id = $1")
        .bind(order.order_id.to_string())
        .bind(body)
        .execute(&mut **tx)
        .await
        .context("Failed to update an order")?;
    Ok(())
}

/// Up to `limit` orders of `user_id`, newest first, after `after`; and the
/// cursor of the next page when there may be one.
pub async fn list_by_user(
    db: &Db,
    user_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> anyhow::Result<(Vec<Order>, Option<Position>)> {
    // One more than asked tells whether another page exists.
    let rows = match after {
        None => {
            sqlx::query(
                "SELECT body, created_at, order_id FROM orders WHERE user_id = $1
                 ORDER BY created_at DESC, order_id DESC LIMIT $2",
            )
            .bind(user_id)
            .bind(limit + 1)
            .fetch_all(db.reader())
            .await
        }
        Some((created_at, order_id)) => {
            sqlx::query(
                "SELECT body, created_at, order_id FROM orders
                 WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND order_id < $3))
                 ORDER BY created_at DESC, order_id DESC LIMIT $4",
            )
            .bind(user_id)
            .bind(created_at)
            .bind(order_id)
            .bind(limit + 1)
            .fetch_all(db.reader())
            .await
        }
    }
    .context("Failed to list orders")?;
    let (rows, next) = page::split(rows, limit, |last| {
        Ok::<_, sqlx::Error>((last.try_get(1)?, last.try_get(2)?))
    })?;
    let orders = rows
        .iter()
        .map(|row| decode(&row.try_get::<String, _>(0)?))
        .collect::<anyhow::Result<_>>()?;
    Ok((orders, next))
}

/// Records that `order` reached its current status (at its modifiedDate),
/// in the transaction that stores it; a status it had reached before
/// changes nothing (statuses only move forward).
pub async fn record_status(tx: &mut Tx, order: &Order) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO order_status_changes (order_id, status, at_micros) VALUES ($1, $2, $3)
         ON CONFLICT (order_id, status) DO NOTHING",
    )
    .bind(order.order_id.to_string())
    .bind(order.status.as_str())
    .bind(order.modified_date.unix_micros())
    .execute(&mut **tx)
    .await
    .context("Failed to record an order's status")?;
    Ok(())
}

fn status_of(text: &str) -> anyhow::Result<OrderStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .with_context(|| format!("unknown order status '{text}'"))
}

/// The histories of `orders`, each oldest first. An order stored before
/// histories were kept gets what is known of it
/// ([`Order::assumed_history`]).
pub async fn histories(db: &Db, orders: &[Order]) -> anyhow::Result<HashMap<Uuid, Vec<StatusChange>>> {
    let mut out: HashMap<Uuid, Vec<StatusChange>> = HashMap::new();
    for chunk in orders.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        // One order (a poll of its state) is a plain lookup; neither asks
        // the engine to sort (each history is sorted below).
        let sql = match chunk.len() {
            1 => {
                "SELECT order_id, status, at_micros FROM order_status_changes WHERE order_id = $1".to_owned()
            }
            n => format!(
                "SELECT order_id, status, at_micros FROM order_status_changes WHERE order_id IN ({})",
                db.backend().list_sql(n)
            ),
        };
        let mut query = sqlx::query(&sql);
        for order in chunk {
            query = query.bind(order.order_id.to_string());
        }
        let rows = query
            .fetch_all(db.reader())
            .await
            .context("Failed to read order histories")?;
        for row in rows {
            let id: String = row.try_get(0)?;
            let at: i64 = row.try_get(2)?;
            out.entry(Uuid::parse_str(&id).context("bad order id in order_status_changes")?)
                .or_default()
                .push(StatusChange {
                    status: status_of(&row.try_get::<String, _>(1)?)?,
                    at: Timestamp::from_unix_micros(at).context("bad time in order_status_changes")?,
                });
        }
    }
    for history in out.values_mut() {
        history.sort_by_key(|change| change.at);
    }
    for order in orders {
        out.entry(order.order_id)
            .or_insert_with(|| order.assumed_history());
    }
    Ok(out)
}
