//! The `packaging_requests` and `packaging_lines` tables. Changes run inside
//! a transaction the caller owns (an event handler's inbox transaction, or a
//! staff operation with its outbox events), so each is all or nothing.

use crate::domain::{self, Line, LineChange, PackagingRequest, Status};
use anyhow::Context as _;
use ecom_contracts::orders::Order;
use ecom_model::Timestamp;
use ecom_runtime::page::{self, Position};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The status of a request and the order version it reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Current status.
    pub status: Status,
    /// The order's modifiedDate (µs) the lines come from.
    pub modified_micros: i64,
}

/// The header of a request, if one exists (tombstones included).
pub async fn header(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<Option<Header>> {
    let row = sqlx::query("SELECT status, modified_micros FROM packaging_requests WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("Failed to read a packaging request")?;
    row.map(|r| {
        let status: String = r.try_get(0)?;
        Ok(Header {
            status: Status::parse(&status).with_context(|| format!("unknown status {status}"))?,
            modified_micros: r.try_get(1)?,
        })
    })
    .transpose()
}

/// Stores `order` as a NEW request, replacing the lines of a request still
/// NEW (`existed`: whether a request, even a tombstone, was there before;
/// when not, there are no lines to clear). False, changing nothing, when a
/// request past NEW or a tombstone is there: on PostgreSQL one may have
/// been written (a cancellation) after the caller read none.
pub async fn put_new(tx: &mut Tx, order: &Order, existed: bool) -> anyhow::Result<bool> {
    let id = order.order_id.to_string();
    let now = Timestamp::now();
    let stored = sqlx::query(
        "INSERT INTO packaging_requests (order_id, status, modified_micros, created_micros, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO UPDATE SET status = $2, modified_micros = $3, updated_at = $5
         WHERE packaging_requests.status = $2",
    )
    .bind(&id)
    .bind(Status::New.as_str())
    .bind(order.modified_date.unix_micros())
    .bind(now.unix_micros())
    .bind(now.to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to store a packaging request")?;
    if stored.rows_affected() == 0 {
        return Ok(false);
    }
    if existed {
        sqlx::query("DELETE FROM packaging_lines WHERE order_id = $1")
            .bind(&id)
            .execute(&mut **tx)
            .await
            .context("Failed to clear packaging lines")?;
    }
    let changes: Vec<LineChange> = domain::quantities(order)
        .into_iter()
        .map(|(product, q)| LineChange::Added(product, q))
        .collect();
    apply(tx, order.order_id, &changes).await?;
    Ok(true)
}

/// Leaves a CANCELLED tombstone for an order whose request does not exist
/// yet (its `OrderCreated` has not been handled), so that event cannot
/// create one later. False when a request appeared meanwhile (a concurrent
/// `OrderCreated` on PostgreSQL): the caller looks again.
pub async fn cancelled_tombstone(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<bool> {
    let now = Timestamp::now();
    let done = sqlx::query(
        "INSERT INTO packaging_requests (order_id, status, modified_micros, created_micros, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(Status::Cancelled.as_str())
    // Newer than any image of the order.
    .bind(i64::MAX)
    .bind(now.unix_micros())
    .bind(now.to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to store a cancelled packaging request")?;
    Ok(done.rows_affected() == 1)
}

/// The ordered quantity of each line of a request.
pub async fn ordered(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<BTreeMap<Uuid, i64>> {
    let rows = sqlx::query("SELECT product_id, ordered FROM packaging_lines WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_all(&mut **tx)
        .await
        .context("Failed to read packaging lines")?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok((Uuid::parse_str(&id)?, r.try_get::<i64, _>(1)?))
        })
        .collect()
}

/// Applies line changes (a change sets both the ordered and packed
/// quantity): one statement for the lines set, one for those removed (per
/// [`ecom_storage::ROWS_PER_STATEMENT`] lines).
pub async fn apply(tx: &mut Tx, order_id: Uuid, changes: &[LineChange]) -> anyhow::Result<()> {
    let id = order_id.to_string();
    let backend = ecom_storage::Backend::of(tx);
    let mut set = Vec::new();
    let mut removed = Vec::new();
    for change in changes {
        match *change {
            LineChange::Added(product, q) | LineChange::Changed(product, q) => set.push((product, q)),
            LineChange::Removed(product) => removed.push(product),
        }
    }
    // In chunks, to stay far below both engines' limits on parameters.
    for set in set.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO packaging_lines (order_id, product_id, ordered, quantity) VALUES {}
             ON CONFLICT (order_id, product_id) DO UPDATE SET ordered = excluded.ordered, quantity = excluded.quantity",
            backend.values_sql(set.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for (product, q) in set {
            query = query.bind(id.clone()).bind(product.to_string()).bind(*q).bind(*q);
        }
        query
            .execute(&mut **tx)
            .await
            .context("Failed to change packaging lines")?;
    }
    for removed in removed.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        // `$1` (or the first `?`) is the order id, the rest the products.
        let placeholders = backend.list_sql(removed.len() + 1);
        let (order, products) = placeholders.split_once(", ").unwrap_or_default();
        let sql =
            format!("DELETE FROM packaging_lines WHERE order_id = {order} AND product_id IN ({products})");
        let mut query = sqlx::query(&sql).bind(id.clone());
        for product in removed {
            query = query.bind(product.to_string());
        }
        query
            .execute(&mut **tx)
            .await
            .context("Failed to remove packaging lines")?;
    }
    Ok(())
}

/// Records which order version the lines now reflect.
pub async fn set_modified(tx: &mut Tx, order_id: Uuid, modified: Timestamp) -> anyhow::Result<()> {
    sqlx::query("UPDATE packaging_requests SET modified_micros = $2, updated_at = $3 WHERE order_id = $1")
        .bind(order_id.to_string())
        .bind(modified.unix_micros())
        .bind(Timestamp::now().to_string())
        .execute(&mut **tx)
        .await
        .context("Failed to update a packaging request")?;
    Ok(())
}

/// Drops the lines of a request and leaves a DELETED tombstone, so an
/// older event for the order arriving later cannot recreate it.
pub async fn tombstone(tx: &mut Tx, order_id: Uuid, modified: Timestamp) -> anyhow::Result<()> {
    let id = order_id.to_string();
    let now = Timestamp::now();
    sqlx::query(
        "INSERT INTO packaging_requests (order_id, status, modified_micros, created_micros, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (order_id) DO UPDATE SET status = $2, modified_micros = $3, updated_at = $5",
    )
    .bind(&id)
    .bind(Status::Deleted.as_str())
    .bind(modified.unix_micros())
    .bind(now.unix_micros())
    .bind(now.to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to drop a packaging request")?;
    sqlx::query("DELETE FROM packaging_lines WHERE order_id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await
        .context("Failed to drop packaging lines")?;
    Ok(())
}

/// Moves a request from `from` to `to`; false when it was not in `from`.
pub async fn transition(tx: &mut Tx, order_id: Uuid, from: Status, to: Status) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE packaging_requests SET status = $3, updated_at = $4 WHERE order_id = $1 AND status = $2",
    )
    .bind(order_id.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(Timestamp::now().to_string())
    .execute(&mut **tx)
    .await
    .context("Failed to change a packaging request's status")?;
    Ok(done.rows_affected() == 1)
}

/// Sets how many of a product will be packed.
pub async fn set_quantity(
    tx: &mut Tx,
    order_id: Uuid,
    product_id: Uuid,
    quantity: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE packaging_lines SET quantity = $3 WHERE order_id = $1 AND product_id = $2")
        .bind(order_id.to_string())
        .bind(product_id.to_string())
        .bind(quantity)
        .execute(&mut **tx)
        .await
        .context("Failed to update a packaging line")?;
    Ok(())
}

/// The lines still to pack (quantity above 0), by product id.
pub async fn lines(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    order_id: Uuid,
) -> anyhow::Result<Vec<Line>> {
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM packaging_lines WHERE order_id = $1 AND quantity > 0
         ORDER BY product_id",
    )
    .bind(order_id.to_string())
    .fetch_all(executor)
    .await
    .context("Failed to read packaging lines")?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok(Line {
                product_id: Uuid::parse_str(&id)?,
                quantity: r.try_get(1)?,
            })
        })
        .collect()
}

/// A request as staff see it; `None` when absent or dropped.
pub async fn get(db: &Db, order_id: Uuid) -> anyhow::Result<Option<PackagingRequest>> {
    let row = sqlx::query("SELECT status FROM packaging_requests WHERE order_id = $1 AND status <> $2")
        .bind(order_id.to_string())
        .bind(Status::Deleted.as_str())
        .fetch_optional(db.reader())
        .await
        .context("Failed to read a packaging request")?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get(0)?;
    let status = Status::parse(&status).with_context(|| format!("unknown status {status}"))?;
    Ok(Some(PackagingRequest {
        order_id,
        status: status.as_str(),
        products: lines(db.reader(), order_id).await?,
    }))
}

/// Up to `limit` ids of NEW requests, oldest first, after `after`; and
/// the cursor of the next page when there may be one.
pub async fn list_new(
    db: &Db,
    after: Option<Position>,
    limit: i64,
) -> anyhow::Result<(Vec<Uuid>, Option<Position>)> {
    let (micros, id) = after.unwrap_or_else(page::start);
    let rows = sqlx::query(
        "SELECT order_id, created_micros FROM packaging_requests
         WHERE status = $1 AND (created_micros > $2 OR (created_micros = $2 AND order_id > $3))
         ORDER BY created_micros, order_id LIMIT $4",
    )
    .bind(Status::New.as_str())
    .bind(micros)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await
    .context("Failed to list packaging requests")?;
    let (rows, next) = page::split(rows, limit, |last| {
        Ok::<_, sqlx::Error>((last.try_get(1)?, last.try_get(0)?))
    })?;
    let ids = rows
        .iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Uuid::parse_str(&id).context("bad order id in packaging_requests")
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((ids, next))
}
