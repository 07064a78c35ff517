//! The `orders` table: each order whole as JSON, plus the columns that find
//! (by id, by user and idempotency key) and sort (newest first) them.

use crate::domain::Order;
use anyhow::Context as _;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use uuid::Uuid;

fn decode(body: &str) -> anyhow::Result<Order> {
    serde_json::from_str(body).context("Failed to decode a stored order")
}

/// Stores a new order. A unique violation means the idempotency key was
/// used by a concurrent request (see [`ecom_storage::is_unique_violation`]).
pub async fn insert(tx: &mut Tx, order: &Order, idempotency_key: Option<&str>) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(order).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO orders (order_id, user_id, created_at, idempotency_key, body) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(order.order_id.to_string())
    .bind(&order.user_id)
    .bind(order.created_date.unix_micros())
    .bind(idempotency_key)
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

/// The order with this id, read inside a write transaction (to update it).
pub async fn get_in(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<Option<Order>> {
    let row = sqlx::query("SELECT body FROM orders WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("Failed to read an order")?;
    row.map(|r| decode(&r.try_get::<String, _>(0)?)).transpose()
}

/// The order a user created with an idempotency key, if any.
pub async fn by_idempotency_key(db: &Db, user_id: &str, key: &str) -> anyhow::Result<Option<Order>> {
    let row = sqlx::query("SELECT body FROM orders WHERE user_id = $1 AND idempotency_key = $2")
        .bind(user_id)
        .bind(key)
        .fetch_optional(db.reader())
        .await
        .context("Failed to look up an idempotency key")?;
    row.map(|r| decode(&r.try_get::<String, _>(0)?)).transpose()
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

/// Where a page of a user's orders starts: after this (created_at, order_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of the last order seen, in microseconds.
    pub created_at: i64,
    /// Its id (orders created in the same microsecond are ordered by id).
    pub order_id: String,
}

impl Cursor {
    /// Opaque text for callers: hex of `created_at/order_id`.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.created_at, self.order_id)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Reads a token made by [`Cursor::encode`].
    pub fn decode(token: &str) -> Option<Cursor> {
        if !token.len().is_multiple_of(2) || !token.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
            .collect();
        let text = String::from_utf8(bytes?).ok()?;
        let (at, id) = text.split_once('/')?;
        let order_id = Uuid::parse_str(id).ok()?.to_string();
        Some(Cursor {
            created_at: at.parse().ok()?,
            order_id,
        })
    }
}

/// Up to `limit` orders of `user_id`, newest first, after `after`; and the
/// cursor of the next page when there may be one.
pub async fn list_by_user(
    db: &Db,
    user_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> anyhow::Result<(Vec<Order>, Option<Cursor>)> {
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
        Some(c) => {
            sqlx::query(
                "SELECT body, created_at, order_id FROM orders
                 WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND order_id < $3))
                 ORDER BY created_at DESC, order_id DESC LIMIT $4",
            )
            .bind(user_id)
            .bind(c.created_at)
            .bind(&c.order_id)
            .bind(limit + 1)
            .fetch_all(db.reader())
            .await
        }
    }
    .context("Failed to list orders")?;
    let more = rows.len() as i64 > limit;
    let mut orders = Vec::new();
    let mut last = None;
    for row in rows.iter().take(limit as usize) {
        orders.push(decode(&row.try_get::<String, _>(0)?)?);
        last = Some(Cursor {
            created_at: row.try_get(1)?,
            order_id: row.try_get(2)?,
        });
    }
    Ok((orders, if more { last } else { None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            created_at: 1_700_000_000_000_000,
            order_id: Uuid::new_v4().to_string(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode("é1"), None);
    }
}
