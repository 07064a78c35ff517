//! payment's tables: `payments`, one row per order, holding its token until
//! the payment is settled; and `payment_claims`, which order holds each
//! token (one token pays for one order). The statuses each statement
//! writes, and the status it requires, come from [`crate::domain`].

use crate::domain::{Status, Step};
use anyhow::Context as _;
use ecom_model::Timestamp;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use uuid::Uuid;

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

fn parse(text: &str) -> anyhow::Result<Status> {
    Status::parse(text).with_context(|| format!("unknown payment status '{text}'"))
}

/// The one status `step` moves a payment from, and the one it moves it to,
/// for the statements that change an existing row under `status = from`.
fn one_status_from(step: Step) -> anyhow::Result<(Status, Status)> {
    match step.moves() {
        ([Some(from)], to) => Ok((*from, to)),
        _ => anyhow::bail!("{step:?} does not move a payment from one status"),
    }
}

/// Remembers an order's token ([`Step::Hold`]); a second call for the same
/// order changes nothing.
pub async fn hold(tx: &mut Tx, order_id: Uuid, token: &str, total: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO payments (order_id, payment_token, total, status, modified_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(token)
    .bind(total)
    .bind(Step::Hold.to().as_str())
    .bind(Timestamp::now().to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to store a payment token")?;
    Ok(())
}

/// Records an order whose payment failed from the start (its token is
/// another order's, [`Step::TokenTaken`]): FAILED, without the token, so
/// that nothing settles it. False when the order already had a payment.
pub async fn fail_new(tx: &mut Tx, order_id: Uuid, total: i64, reason: &str) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO payments (order_id, payment_token, total, status, modified_at, reason) VALUES ($1, NULL, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(total)
    .bind(Step::TokenTaken.to().as_str())
    .bind(Timestamp::now().to_string())
    .bind(reason)
    .execute(&mut **tx)
    .await
    .context("Failed to record a failed payment")?;
    Ok(done.rows_affected() == 1)
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
            status: parse(&r.try_get::<String, _>(2)?)?,
        })
    })
    .transpose()
}

/// Records that a held payment was settled (`step`: a capture, a refused
/// capture or a cancellation, with `reason` for a failure and the amount
/// `captured` for a capture) and forgets its token, except for a capture,
/// which keeps it apart for refunds. False when it was not in the status
/// the step needs (settled before): the caller then announces nothing.
pub async fn settle(
    tx: &mut Tx,
    order_id: Uuid,
    step: Step,
    reason: Option<&str>,
    captured: Option<i64>,
) -> anyhow::Result<bool> {
    let (from, to) = one_status_from(step)?;
    let done = sqlx::query(
        "UPDATE payments SET captured_token = CASE WHEN $6 IS NULL THEN NULL ELSE payment_token END,
             captured = $6, payment_token = NULL, status = $2, modified_at = $3, reason = $4
         WHERE order_id = $1 AND status = $5",
    )
    .bind(order_id.to_string())
    .bind(to.as_str())
    .bind(Timestamp::now().to_string())
    .bind(reason)
    .bind(from.as_str())
    .bind(captured)
    .execute(&mut **tx)
    .await
    .context("Failed to record a settled payment")?;
    Ok(done.rows_affected() == 1)
}

/// Records a held payment's new total ([`Step::NewTotal`]).
pub async fn set_total(tx: &mut Tx, order_id: Uuid, total: i64) -> anyhow::Result<()> {
    let (from, _) = one_status_from(Step::NewTotal)?;
    sqlx::query("UPDATE payments SET total = $2, modified_at = $3 WHERE order_id = $1 AND status = $4")
        .bind(order_id.to_string())
        .bind(total)
        .bind(Timestamp::now().to_string())
        .bind(from.as_str())
        .execute(&mut **tx)
        .await
        .context("Failed to update a payment's total")?;
    Ok(())
}

/// Claims `token` for `order_id` while the order is being validated. True
/// when the order holds the token now: it was free, already this order's,
/// or held unconfirmed since before `stale_before` (µs) by another order,
/// which loses it. One statement, so of concurrent claims by different
/// orders exactly one wins (the unique key on the token decides).
pub async fn claim(db: &Db, token: &str, order_id: Uuid, stale_before: i64) -> anyhow::Result<bool> {
    let order = order_id.to_string();
    let won = db
        .write_returning(
            sqlx::query(
                "INSERT INTO payment_claims (payment_token, order_id, claimed_at, confirmed) VALUES ($1, $2, $3, 0)
                 ON CONFLICT (payment_token) DO UPDATE SET order_id = excluded.order_id, claimed_at = excluded.claimed_at
                 WHERE payment_claims.confirmed = 0 AND payment_claims.claimed_at < $4
                 RETURNING order_id",
            )
            .bind(token)
            .bind(&order)
            .bind(Timestamp::now().unix_micros())
            .bind(stale_before),
        )
        .await
    .context("Failed to claim a payment token")?;
    if won.is_some() {
        return Ok(true);
    }
    Ok(holder(db, token).await?.as_deref() == Some(order.as_str()))
}

/// The order holding `token`, if any.
pub async fn holder(db: &Db, token: &str) -> anyhow::Result<Option<String>> {
    let row = sqlx::query("SELECT order_id FROM payment_claims WHERE payment_token = $1")
        .bind(token)
        .fetch_optional(db.writer())
        .await
        .context("Failed to read a payment claim")?;
    row.map(|r| r.try_get(0).context("Failed to read a payment claim"))
        .transpose()
}

/// Confirms that `order_id` (which exists: its `OrderCreated` arrived)
/// holds `token`. It takes the token unless another order's claim is
/// confirmed already: an existing order outranks a mere validation. False
/// when another order holds it (the second one never gets paid).
pub async fn confirm(tx: &mut Tx, token: &str, order_id: Uuid) -> anyhow::Result<bool> {
    let row = sqlx::query(
        "INSERT INTO payment_claims (payment_token, order_id, claimed_at, confirmed) VALUES ($1, $2, $3, 1)
         ON CONFLICT (payment_token) DO UPDATE SET order_id = excluded.order_id, confirmed = 1
         WHERE payment_claims.confirmed = 0 OR payment_claims.order_id = excluded.order_id
         RETURNING order_id",
    )
    .bind(token)
    .bind(order_id.to_string())
    .bind(Timestamp::now().unix_micros())
    .fetch_optional(&mut **tx)
    .await
    .context("Failed to confirm a payment claim")?;
    Ok(row.is_some())
}

/// Drops `order_id`'s unconfirmed claim on `token` (its order was refused);
/// true when there was one. A confirmed claim (the order exists) stays.
pub async fn release(db: &Db, token: &str, order_id: Uuid) -> anyhow::Result<bool> {
    let done = db
        .write(
            sqlx::query(
                "DELETE FROM payment_claims WHERE payment_token = $1 AND order_id = $2 AND confirmed = 0",
            )
            .bind(token)
            .bind(order_id.to_string()),
        )
        .await
        .context("Failed to release a payment claim")?;
    Ok(done.rows_affected() == 1)
}

/// A captured payment, as refunds see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Where it is (`PROCESSED`, `PARTIALLY_REFUNDED`, `REFUNDED`, or
    /// another status when it was never captured).
    pub status: Status,
    /// The token it was captured with; `None` for a payment captured
    /// before tokens were kept for refunds.
    pub token: Option<String>,
    /// The amount captured.
    pub captured: i64,
    /// The sum refunded so far.
    pub refunded: i64,
}

/// The captured side of an order's payment; `None` when payment does not
/// know the order.
pub async fn captured(db: &Db, order_id: Uuid) -> anyhow::Result<Option<Captured>> {
    let row = sqlx::query(
        "SELECT status, captured_token, captured, refunded, total FROM payments WHERE order_id = $1",
    )
    .bind(order_id.to_string())
    .fetch_optional(db.reader())
    .await
    .context("Failed to read a payment")?;
    row.map(|r| {
        let status = parse(&r.try_get::<String, _>(0)?)?;
        let captured: Option<i64> = r.try_get(2)?;
        Ok(Captured {
            status,
            token: r.try_get(1)?,
            // Captured before the amount was kept: the total then held.
            captured: captured.unwrap_or(r.try_get(4)?),
            refunded: r.try_get(3)?,
        })
    })
    .transpose()
}

/// A refund recorded before: its order and amount.
pub async fn refund_by_id(db: &Db, refund_id: &str) -> anyhow::Result<Option<(String, i64)>> {
    let row = sqlx::query("SELECT order_id, amount FROM payment_refunds WHERE refund_id = $1")
        .bind(refund_id)
        .fetch_optional(db.writer())
        .await
        .context("Failed to read a refund")?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Records a refund the processor made: the refund row, the new sum and
/// status (`REFUNDED` once the sum reaches the capture, else
/// `PARTIALLY_REFUNDED`: [`crate::domain::refund`], written in SQL so that
/// concurrent refunds under different ids each add to the sum in one
/// statement), in the caller's transaction. False when this refund id was
/// recorded already (a concurrent retry): nothing changes.
pub async fn record_refund(
    tx: &mut Tx,
    order_id: Uuid,
    refund_id: &str,
    amount: i64,
) -> anyhow::Result<bool> {
    let now = Timestamp::now().to_string();
    let inserted = sqlx::query(
        "INSERT INTO payment_refunds (refund_id, order_id, amount, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (refund_id) DO NOTHING",
    )
    .bind(refund_id)
    .bind(order_id.to_string())
    .bind(amount)
    .bind(&now)
    .execute(&mut **tx)
    .await
    .context("Failed to record a refund")?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE payments SET refunded = refunded + $2, modified_at = $3,
             status = CASE WHEN refunded + $2 >= captured THEN $4 ELSE $5 END
         WHERE order_id = $1",
    )
    .bind(order_id.to_string())
    .bind(amount)
    .bind(&now)
    .bind(Step::RefundAll.to().as_str())
    .bind(Step::Refund.to().as_str())
    .execute(&mut **tx)
    .await
    .context("Failed to add a refund to its payment")?;
    Ok(true)
}
