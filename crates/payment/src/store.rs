//! The `payments` table: one row per order, holding its token until the
//! payment is settled.

use anyhow::Context as _;
use ecom_model::Timestamp;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use uuid::Uuid;

/// Where an order's payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The token is held, the amount authorised.
    Held,
    /// Charged; the token is forgotten.
    Processed,
    /// Released; the token is forgotten.
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Held => "HELD",
            Status::Processed => "PROCESSED",
            Status::Cancelled => "CANCELLED",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Status> {
        match text {
            "HELD" => Ok(Status::Held),
            "PROCESSED" => Ok(Status::Processed),
            "CANCELLED" => Ok(Status::Cancelled),
            other => anyhow::bail!("unknown payment status '{other}'"),
        }
    }
}

/// An order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The token, while held.
    pub token: Option<String>,
    /// The amount to charge, in cents.
    pub total: i64,
    /// Where it is.
    pub status: Status,
}

/// Remembers an order's token; a second call for the same order changes nothing.
pub async fn hold(tx: &mut Tx, order_id: Uuid, token: &str, total: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO payments (order_id, payment_token, total, status, modified_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(token)
    .bind(total)
    .bind(Status::Held.as_str())
    .bind(Timestamp::now().to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to store a payment token")?;
    Ok(())
}

/// The payment of an order.
pub async fn get(db: &Db, order_id: Uuid) -> anyhow::Result<Option<Payment>> {
    let row = sqlx::query("SELECT payment_token, total, status FROM payments WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(db.reader())
        .await
        .context("Failed to read a payment")?;
    row.map(|r| {
        Ok(Payment {
            token: r.try_get(0)?,
            total: r.try_get(1)?,
            status: Status::parse(&r.try_get::<String, _>(2)?)?,
        })
    })
    .transpose()
}

/// Records that a held payment was settled and forgets its token.
pub async fn settle(tx: &mut Tx, order_id: Uuid, to: Status) -> anyhow::Result<()> {
    sqlx::query("UPDATE payments SET payment_token = NULL, status = $2, modified_at = $3 WHERE order_id = $1 AND status = $4")
        .bind(order_id.to_string())
        .bind(to.as_str())
        .bind(Timestamp::now().to_string())
        .bind(Status::Held.as_str())
        .execute(&mut **tx)
        .await
        .context("Failed to record a settled payment")?;
    Ok(())
}

/// Records a held payment's new total.
pub async fn set_total(tx: &mut Tx, order_id: Uuid, total: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE payments SET total = $2, modified_at = $3 WHERE order_id = $1 AND status = $4")
        .bind(order_id.to_string())
        .bind(total)
        .bind(Timestamp::now().to_string())
        .bind(Status::Held.as_str())
        .execute(&mut **tx)
        .await
        .context("Failed to update a payment's total")?;
    Ok(())
}
