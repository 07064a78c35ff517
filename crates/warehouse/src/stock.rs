//! Inventory: stock per product (`onHand`, `reserved`, `available`), the
//! reservations createOrder makes, and how they follow the order's life.
//!
//! A product without a stock record is untracked and never runs out, so a
//! catalogue without stock works as before. For a tracked product:
//!
//! - createOrder reserves (`reserved += q`) as part of its checks, in one
//!   transaction for all lines, with a conditional `UPDATE … WHERE
//!   on_hand - reserved >= q`: on PostgreSQL a second transaction on the
//!   same row waits for the first and re-checks the condition, on SQLite
//!   there is one writer; either way N concurrent orders for the last k
//!   units give exactly k reservations. The hold expires unless the order's
//!   `OrderCreated` confirms it (the caller may have crashed in between).
//! - completing packaging turns the hold into a decrement of `onHand` by
//!   what was packed (lowered lines give the rest back); packaging that
//!   fails, an order deleted, cancelled or whose payment failed release it;
//!   a failed delivery puts what was shipped back on hand.
//!
//! Every change writes `StockChanged {productId, onHand, reserved,
//! available}` to the outbox in the same transaction. Every change runs in a
//! transaction the caller owns (a staff operation, a backend call, or an
//! event handler's inbox transaction), so a redelivered event moves nothing
//! twice.

use anyhow::Context as _;
use ecom_contracts::backend::StockLine;
use ecom_contracts::warehouse::StockChanged;
use ecom_model::Timestamp;
use ecom_platform::{Event, Outbox};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Largest `onHand` staff may set: far below where sums could overflow.
pub const MAX_ON_HAND: i64 = 1_000_000_000;

/// A tracked product's stock, as staff and `StockChanged` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stock {
    /// The product.
    pub product_id: Uuid,
    /// Units in the warehouse, including those held for orders.
    pub on_hand: i64,
    /// Units held for orders not yet packed.
    pub reserved: i64,
    /// `onHand - reserved`: what new orders may still take.
    pub available: i64,
}

impl Stock {
    fn new(product_id: Uuid, on_hand: i64, reserved: i64) -> Stock {
        Stock {
            product_id,
            on_hand,
            reserved,
            available: on_hand - reserved,
        }
    }

    /// The `StockChanged` event for this state.
    pub fn event(&self) -> anyhow::Result<Event> {
        let detail = StockChanged {
            product_id: self.product_id,
            on_hand: self.on_hand,
            reserved: self.reserved,
            available: self.available,
        };
        Event::of::<StockChanged>(vec![self.product_id.to_string()], &detail)
    }
}

/// What a reservation request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every tracked line is held (untracked lines need nothing).
    Held {
        /// Whether anything was held (false: every product is untracked).
        tracked: bool,
    },
    /// Not enough of these products; nothing was held.
    OutOfStock(Vec<Uuid>),
}

/// The stock of one product, if tracked.
pub async fn get(db: &Db, product_id: Uuid) -> anyhow::Result<Option<Stock>> {
    let row = sqlx::query("SELECT on_hand, reserved FROM stock WHERE product_id = $1")
        .bind(product_id.to_string())
        .fetch_optional(db.reader())
        .await
        .context("Failed to read stock")?;
    row.map(|r| Ok(Stock::new(product_id, r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// Available units of the tracked products among `ids` (untracked ones are
/// absent from the answer).
pub async fn available(db: &Db, ids: &[Uuid]) -> anyhow::Result<BTreeMap<Uuid, i64>> {
    let mut conn = db.reader().acquire().await.context("Failed to read stock")?;
    Ok(available_of(figures_on(&mut conn, db.backend(), ids).await?))
}

/// [`available`] inside a transaction (on SQLite the writer's page cache
/// is warm, where a reader's starts cold after every commit).
pub async fn available_in(tx: &mut Tx, ids: &[Uuid]) -> anyhow::Result<BTreeMap<Uuid, i64>> {
    Ok(available_of(figures_in(tx, ids).await?))
}

fn available_of(figures: BTreeMap<Uuid, (i64, i64)>) -> BTreeMap<Uuid, i64> {
    figures
        .into_iter()
        .map(|(id, (on_hand, reserved))| (id, on_hand - reserved))
        .collect()
}

/// `onHand` and `reserved` of the tracked products among `ids`, inside a
/// transaction.
async fn figures_in(tx: &mut Tx, ids: &[Uuid]) -> anyhow::Result<BTreeMap<Uuid, (i64, i64)>> {
    let backend = ecom_storage::Backend::of(tx);
    figures_on(tx, backend, ids).await
}

async fn figures_on(
    conn: &mut ecom_storage::sqlx::AnyConnection,
    backend: ecom_storage::Backend,
    ids: &[Uuid],
) -> anyhow::Result<BTreeMap<Uuid, (i64, i64)>> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        let sql = backend.lookup_sql(
            "SELECT product_id, on_hand, reserved FROM stock",
            "product_id",
            chunk.len(),
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query
            .fetch_all(&mut *conn)
            .await
            .context("Failed to read stock")?
        {
            let id: String = row.try_get(0)?;
            out.insert(Uuid::parse_str(&id)?, (row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(out)
}

/// Why staff's new `onHand` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRefused {
    /// Below what orders hold.
    BelowReserved {
        /// Units held for orders.
        reserved: i64,
    },
}

/// Sets a product's `onHand` (making it tracked), unless that is below what
/// is reserved. Emits `StockChanged`.
pub async fn set(
    db: &Db,
    outbox: &Outbox,
    product_id: Uuid,
    on_hand: i64,
) -> anyhow::Result<Result<Stock, SetRefused>> {
    let mut tx = db.begin().await.context("Failed to begin")?;
    let id = product_id.to_string();
    let reserved: Option<i64> = sqlx::query("SELECT reserved FROM stock WHERE product_id = $1")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .context("Failed to read stock")?
        .map(|r| r.try_get(0))
        .transpose()?;
    let reserved = reserved.unwrap_or(0);
    if on_hand < reserved {
        return Ok(Err(SetRefused::BelowReserved { reserved }));
    }
    sqlx::query(
        "INSERT INTO stock (product_id, on_hand, reserved, modified_at) VALUES ($1, $2, 0, $3)
         ON CONFLICT (product_id) DO UPDATE SET on_hand = $2, modified_at = $3",
    )
    .bind(&id)
    .bind(on_hand)
    .bind(Timestamp::now().to_string())
    .execute(&mut *tx)
    .await
    .context("Failed to set stock")?;
    let stock = Stock::new(product_id, on_hand, reserved);
    outbox.push(&mut tx, &stock.event()?).await?;
    outbox.commit(tx).await?;
    Ok(Ok(stock))
}

/// Products this process has seen tracked: only a hint. A reservation
/// for one of them skips the read before its transaction and finds out
/// inside it what is tracked; a stale entry costs that transaction,
/// nothing else. Cheap to clone.
#[derive(Clone, Default)]
pub struct SeenTracked(Arc<Mutex<HashSet<Uuid>>>);

/// How many products [`SeenTracked`] remembers before it starts over.
const SEEN_AT_MOST: usize = 100_000;

impl SeenTracked {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn any(&self, ids: &[Uuid]) -> bool {
        let seen = self.set();
        ids.iter().any(|id| seen.contains(id))
    }

    fn add(&self, ids: impl Iterator<Item = Uuid>) {
        let mut seen = self.set();
        if seen.len() >= SEEN_AT_MOST {
            seen.clear();
        }
        seen.extend(ids);
    }
}

/// Holds the tracked lines of `order_id` until `expires` (µs since the
/// epoch), all or nothing. Asking again for an order that already holds
/// stock changes nothing and answers as the first time did (unless the
/// stock it would take is gone meanwhile: then it answers out of stock).
pub async fn reserve(
    db: &Db,
    outbox: &Outbox,
    seen: &SeenTracked,
    order_id: Uuid,
    wants: &[StockLine],
    expires: i64,
) -> anyhow::Result<Reserved> {
    // Sum duplicate lines, and take rows in one order so that concurrent
    // transactions on PostgreSQL cannot deadlock on them.
    let mut wanted: BTreeMap<Uuid, i64> = BTreeMap::new();
    for w in wants {
        *wanted.entry(w.product_id).or_default() += w.quantity;
    }
    let ids: Vec<Uuid> = wanted.keys().copied().collect();
    // A catalogue without stock costs one read and no write transaction;
    // products seen tracked before go straight to the transaction.
    if !seen.any(&ids) {
        let tracked = available(db, &ids).await?;
        if tracked.is_empty() {
            return Ok(Reserved::Held { tracked: false });
        }
        let short: Vec<Uuid> = tracked
            .iter()
            .filter(|(id, available)| wanted.get(id).is_some_and(|q| q > available))
            .map(|(id, _)| *id)
            .collect();
        if !short.is_empty() {
            return Ok(Reserved::OutOfStock(short));
        }
        seen.add(tracked.keys().copied());
        wanted.retain(|id, _| tracked.contains_key(id));
    }

    let mut tx = db.begin().await.context("Failed to begin")?;
    let now = Timestamp::now().to_string();
    let mut held = Vec::with_capacity(wanted.len());
    for (product_id, quantity) in &wanted {
        // No `RETURNING`: SQLite runs it through an ephemeral table, which
        // cost more than the update; the figures are read once below.
        let done = sqlx::query(
            "UPDATE stock SET reserved = reserved + $2, modified_at = $3
             WHERE product_id = $1 AND on_hand - reserved >= $2",
        )
        .bind(product_id.to_string())
        .bind(*quantity)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .context("Failed to reserve stock")?;
        if done.rows_affected() > 0 {
            held.push((*product_id, *quantity));
        }
    }
    // After the updates (so with their rows locked on PostgreSQL): the new
    // figures of what was held, and which of the rest is tracked (short)
    // rather than untracked.
    let ids: Vec<Uuid> = wanted.keys().copied().collect();
    let figures = figures_in(&mut tx, &ids).await?;
    let short: Vec<Uuid> = ids
        .iter()
        .filter(|id| figures.contains_key(id) && !held.iter().any(|(h, _)| h == *id))
        .copied()
        .collect();
    if !short.is_empty() {
        // Another order took the last units.
        tx.rollback().await.ok();
        return Ok(Reserved::OutOfStock(short));
    }
    let mut events = Vec::with_capacity(held.len());
    for (product_id, _) in &held {
        let &(on_hand, reserved) = figures
            .get(product_id)
            .context("a product just reserved has no stock row")?;
        events.push(Stock::new(*product_id, on_hand, reserved).event()?);
    }
    if held.is_empty() {
        tx.rollback().await.ok();
        return Ok(Reserved::Held { tracked: false });
    }
    // The holds: when the order holds stock already (a retried call) they
    // conflict, and nothing changes.
    let order = order_id.to_string();
    let mut inserted = 0;
    for chunk in held.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO stock_reservations (order_id, product_id, quantity, expires_micros) VALUES {}
             ON CONFLICT (order_id, product_id) DO NOTHING",
            ecom_storage::Backend::of(&tx).values_sql(chunk.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for (product_id, quantity) in chunk {
            query = query
                .bind(&order)
                .bind(product_id.to_string())
                .bind(*quantity)
                .bind(expires);
        }
        inserted += query
            .execute(&mut *tx)
            .await
            .context("Failed to record a reservation")?
            .rows_affected();
    }
    if inserted < held.len() as u64 {
        tx.rollback().await.ok();
        return Ok(Reserved::Held { tracked: true });
    }
    outbox.push_all(&mut tx, &events).await?;
    outbox.commit(tx).await?;
    seen.add(held.into_iter().map(|(id, _)| id));
    Ok(Reserved::Held { tracked: true })
}

/// Releases what `order_id` holds (all of it, or only a hold that expired
/// before `expired_before` µs when given), in the caller's transaction.
/// Returns the `StockChanged` events to push; none when nothing was held,
/// so a second release changes nothing.
pub async fn release(tx: &mut Tx, order_id: Uuid, expired_before: Option<i64>) -> anyhow::Result<Vec<Event>> {
    let order = order_id.to_string();
    let rows = match expired_before {
        None => {
            sqlx::query("DELETE FROM stock_reservations WHERE order_id = $1 RETURNING product_id, quantity")
                .bind(&order)
                .fetch_all(&mut **tx)
                .await
        }
        Some(before) => {
            sqlx::query(
                "DELETE FROM stock_reservations WHERE order_id = $1 AND expires_micros < $2
                 RETURNING product_id, quantity",
            )
            .bind(&order)
            .bind(before)
            .fetch_all(&mut **tx)
            .await
        }
    }
    .context("Failed to drop reservations")?;
    let held = by_product(&rows)?;
    let now = Timestamp::now().to_string();
    let mut events = Vec::with_capacity(held.len());
    for (product_id, quantity) in held {
        let stock = move_stock(tx, &product_id, 0, -quantity, &now).await?;
        events.extend(stock.map(|s| s.event()).transpose()?);
    }
    Ok(events)
}

/// Confirms the holds of an order that now exists: they no longer expire.
/// Whether it held anything.
pub async fn confirm(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE stock_reservations SET expires_micros = NULL WHERE order_id = $1")
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await
        .context("Failed to confirm reservations")?;
    Ok(done.rows_affected() > 0)
}

/// Packaging completed with `packed` (product → units packed, removed lines
/// absent): each hold becomes a decrement of `onHand` by what was packed of
/// it, and the rest goes back to available. What was shipped is remembered
/// for a failed delivery. Returns the `StockChanged` events to push.
pub async fn ship(tx: &mut Tx, order_id: Uuid, packed: &BTreeMap<Uuid, i64>) -> anyhow::Result<Vec<Event>> {
    let order = order_id.to_string();
    let rows =
        sqlx::query("DELETE FROM stock_reservations WHERE order_id = $1 RETURNING product_id, quantity")
            .bind(&order)
            .fetch_all(&mut **tx)
            .await
            .context("Failed to drop reservations")?;
    let held = by_product(&rows)?;
    let now = Timestamp::now().to_string();
    let mut events = Vec::with_capacity(held.len());
    for (product_id, reserved) in held {
        let id = Uuid::parse_str(&product_id).context("bad product id in stock_reservations")?;
        // Staff can only lower a line, so at most the hold is packed.
        let shipped = packed.get(&id).copied().unwrap_or(0).clamp(0, reserved);
        let stock = move_stock(tx, &product_id, -shipped, -reserved, &now).await?;
        events.extend(stock.map(|s| s.event()).transpose()?);
        if shipped > 0 {
            sqlx::query("INSERT INTO stock_shipped (order_id, product_id, quantity) VALUES ($1, $2, $3)")
                .bind(&order)
                .bind(&product_id)
                .bind(shipped)
                .execute(&mut **tx)
                .await
                .context("Failed to record shipped stock")?;
        }
    }
    Ok(events)
}

/// The delivery of `order_id` failed: what it shipped goes back on hand.
/// Returns the `StockChanged` events to push; none the second time.
pub async fn restock(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<Vec<Event>> {
    let rows = sqlx::query("DELETE FROM stock_shipped WHERE order_id = $1 RETURNING product_id, quantity")
        .bind(order_id.to_string())
        .fetch_all(&mut **tx)
        .await
        .context("Failed to read shipped stock")?;
    let shipped = by_product(&rows)?;
    let now = Timestamp::now().to_string();
    let mut events = Vec::with_capacity(shipped.len());
    for (product_id, quantity) in shipped {
        let stock = move_stock(tx, &product_id, quantity, 0, &now).await?;
        events.extend(stock.map(|s| s.event()).transpose()?);
    }
    Ok(events)
}

/// The delivery of `order_id` completed: what it shipped is gone for good.
pub async fn delivered(tx: &mut Tx, order_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM stock_shipped WHERE order_id = $1")
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await
        .context("Failed to forget shipped stock")?;
    Ok(())
}

/// `(product_id, quantity)` rows, in product-id order (the order every
/// transaction takes stock rows in, so none deadlocks another).
fn by_product(rows: &[ecom_storage::sqlx::any::AnyRow]) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// Adds `on_hand` and `reserved` (either may be negative) to a product's
/// row; its new state, or `None` when the product is no longer tracked.
async fn move_stock(
    tx: &mut Tx,
    product_id: &str,
    on_hand: i64,
    reserved: i64,
    now: &str,
) -> anyhow::Result<Option<Stock>> {
    let row = sqlx::query(
        "UPDATE stock SET on_hand = on_hand + $2, reserved = reserved + $3, modified_at = $4
         WHERE product_id = $1 RETURNING on_hand, reserved",
    )
    .bind(product_id)
    .bind(on_hand)
    .bind(reserved)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .context("Failed to move stock")?;
    let id = Uuid::parse_str(product_id).context("bad product id")?;
    row.map(|r| Ok(Stock::new(id, r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// Which holds expired: a range of the expiry index, which holds only the
/// unconfirmed ones. (With `DISTINCT order_id`, SQLite preferred scanning
/// every hold in primary-key order, on each sweep.)
pub const EXPIRED_HOLDS_SQL: &str =
    "SELECT order_id FROM stock_reservations WHERE expires_micros < $1 ORDER BY expires_micros LIMIT $2";

/// Orders whose holds expired before `now` (µs), from at most `limit` holds.
pub async fn expired_orders(db: &Db, now: i64, limit: i64) -> anyhow::Result<Vec<Uuid>> {
    let rows = sqlx::query(EXPIRED_HOLDS_SQL)
        .bind(now)
        .bind(limit)
        .fetch_all(db.reader())
        .await
        .context("Failed to read expired reservations")?;
    let (mut orders, mut seen) = (Vec::new(), HashSet::new());
    for row in &rows {
        let id =
            Uuid::parse_str(&row.try_get::<String, _>(0)?).context("bad order id in stock_reservations")?;
        if seen.insert(id) {
            orders.push(id);
        }
    }
    Ok(orders)
}

/// How many tracked products have nothing available.
pub async fn out_of_stock(db: &Db) -> anyhow::Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM stock WHERE on_hand - reserved <= 0")
        .fetch_one(db.reader())
        .await
        .context("Failed to count products out of stock")?;
    Ok(row.try_get(0)?)
}
