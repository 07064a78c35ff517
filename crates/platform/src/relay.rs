//! The outbox relay: moves committed outbox rows of one service database
//! to the bus, oldest first, then deletes them. Runs for as long as the
//! process does; on start it sends whatever a crash left behind.
//!
//! On SQLite the delete is deferred: the relay reads past the last row it
//! published (`seq` grows in commit order there, since one writer commits
//! at a time and `AUTOINCREMENT` never reuses a value) and deletes every
//! published row in one statement at most every [`SWEEP_EVERY`], instead
//! of one write per batch. A crash before the sweep only means those rows
//! are published again, which the bus ignores by event id. On PostgreSQL
//! a transaction that took a lower `seq` can commit after a higher one was
//! read, so the relay deletes exactly the rows it published, at once.
//!
//! Also on SQLite, rows this process commits are handed to the relay in
//! memory, in commit order ([`Outbox::push_all`]), and the relay publishes
//! them without reading the table. Committed seqs have no gaps there (a
//! rolled-back insert gives its seq back), so the relay knows the rows it
//! was handed follow the last one it published; when they do not (a row
//! written by another process, such as the CLI, or one not kept in
//! memory), and at start, after a failure and when it polls, it reads the
//! table as above.
//!
//! An event the bus refuses for good (a [`crate::bus::Permanent`] error,
//! such as an event larger than NATS takes in one message) is moved to
//! `_outbox_rejected` with the refusal, logged and counted in
//! `ecom_outbox_rejected_total`, so that it does not hold up every later
//! event of the service. Any other failure is retried, with backoff, for as
//! long as it lasts.

use crate::bus::{describe_error, is_permanent};
use crate::{Bus, Encoded, Outbox};
use anyhow::Context as _;
use ecom_model::Timestamp;
use ecom_runtime::metrics::{counter, Counter};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Backend, Db};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;
/// How often the relay looks even when no commit woke it (commits in other
/// processes, such as the CLI, do not wake this one).
const POLL: Duration = Duration::from_millis(250);
/// How often, at most, the relay deletes what it published (SQLite).
const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// Relays until `shutdown`.
pub async fn run(service: &'static str, db: Db, outbox: Outbox, bus: Bus, shutdown: CancellationToken) {
    // Created now so that `/metrics` shows the count (0) of every service.
    rejected_counter(service);
    let mut failures = 0u32;
    let mut sweep = (db.backend() == Backend::Sqlite).then(Sweep::default);
    loop {
        let relayed = match &mut sweep {
            Some(sweep) => relay_after(service, &db, &outbox, &bus, sweep).await,
            None => relay_batch(service, &db, &bus).await,
        };
        match relayed {
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
            _ = tokio::time::sleep(pause) => {
                // Rows of other processes wake nobody here.
                if let Some(sweep) = &mut sweep {
                    sweep.read_table = true;
                }
            }
        }
    }
}

/// `ecom_outbox_rejected_total{service}`: events of `service` the bus
/// refused for good, set aside in `_outbox_rejected`.
pub fn rejected_counter(service: &str) -> Arc<Counter> {
    counter(
        "ecom_outbox_rejected_total",
        "Outbox events the bus refused for good, set aside in _outbox_rejected.",
        &[("service", service)],
    )
}

/// Publishes one batch of `service`'s outbox and deletes it; returns how
/// many outbox rows it took care of (published, set aside or undecodable).
/// [`read_batch`] then [`send_batch`].
pub async fn relay_batch(service: &str, db: &Db, bus: &Bus) -> anyhow::Result<usize> {
    let batch = read_batch(db).await?;
    send_batch(service, db, bus, batch).await
}

/// What the relay published on SQLite and has not deleted yet.
#[derive(Debug)]
struct Sweep {
    /// Every outbox row up to this `seq` is published (or set aside).
    published: i64,
    /// Every row up to this `seq` is deleted.
    swept: i64,
    /// When the last sweep ran.
    at: Instant,
    /// The next batch comes from the table, not from what was handed over.
    read_table: bool,
}

impl Default for Sweep {
    fn default() -> Sweep {
        Sweep {
            published: 0,
            swept: 0,
            // Due at once (`checked_sub`: an `Instant` cannot go below
            // the clock's start).
            at: Instant::now()
                .checked_sub(SWEEP_EVERY)
                .unwrap_or_else(Instant::now),
            read_table: true,
        }
    }
}

/// [`relay_batch`] on SQLite: takes the rows past those published already
/// from what commits handed over, or else reads them, and deletes published
/// rows at most every [`SWEEP_EVERY`] (module documentation).
async fn relay_after(
    service: &str,
    db: &Db,
    outbox: &Outbox,
    bus: &Bus,
    sweep: &mut Sweep,
) -> anyhow::Result<usize> {
    let handed = match sweep.read_table {
        true => None,
        false => outbox.take_handed(sweep.published, BATCH as usize),
    };
    let batch = match handed {
        Some(rows) => Batch::of(rows),
        None => read(db, Some(sweep.published)).await?,
    };
    let n = batch.len();
    if let Some(last) = batch.last() {
        // Until this batch is out, what it took from memory is only in
        // the table.
        sweep.read_table = true;
        // Rows left to delete (`true`) go with a sweep; the others are gone.
        publish_batch(service, db, bus, &batch).await?;
        sweep.published = sweep.published.max(last);
    }
    sweep.read_table = false;
    if sweep.published > sweep.swept && sweep.at.elapsed() >= SWEEP_EVERY {
        db.write(sqlx::query("DELETE FROM _outbox WHERE seq <= $1").bind(sweep.published))
            .await
            .context("Failed to delete published events from the outbox")?;
        sweep.swept = sweep.published;
        sweep.at = Instant::now();
    }
    Ok(n)
}

/// Committed outbox rows, oldest first, as [`read_batch`] found them.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events as stored (their envelope read, the detail left encoded),
    /// in outbox order...
    events: Vec<Encoded>,
    /// ...and the outbox seq of each.
    seqs: Vec<i64>,
    /// Rows that did not decode: seq and the decoding error.
    undecodable: Vec<(i64, String)>,
}

impl Batch {
    /// The batch of rows handed over in memory, in seq order.
    fn of(rows: Vec<(i64, Encoded)>) -> Batch {
        let (seqs, events) = rows.into_iter().unzip();
        Batch {
            events,
            seqs,
            undecodable: Vec::new(),
        }
    }

    /// How many outbox rows the batch holds.
    pub fn len(&self) -> usize {
        self.events.len() + self.undecodable.len()
    }

    /// True when the outbox was empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest outbox seq the batch holds.
    fn last(&self) -> Option<i64> {
        let undecodable = self.undecodable.iter().map(|(seq, _)| *seq);
        self.seqs.iter().copied().chain(undecodable).max()
    }
}

/// Reads up to [`BATCH`] committed outbox rows, oldest first.
pub async fn read_batch(db: &Db) -> anyhow::Result<Batch> {
    read(db, None).await
}

/// Reads up to [`BATCH`] committed outbox rows after `seq` `after`, oldest
/// first.
async fn read(db: &Db, after: Option<i64>) -> anyhow::Result<Batch> {
    let rows = sqlx::query("SELECT seq, payload FROM _outbox WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after.unwrap_or(i64::MIN))
        .bind(BATCH)
        .fetch_all(db.reader())
        .await
        .context("Failed to read the outbox")?;
    let mut batch = Batch::default();
    for row in &rows {
        let seq = row.try_get::<i64, _>(0)?;
        let payload: String = row.try_get(1)?;
        match Encoded::parse(payload) {
            Ok(event) => {
                batch.events.push(event);
                batch.seqs.push(seq);
            }
            Err(e) => batch.undecodable.push((seq, e.to_string())),
        }
    }
    Ok(batch)
}

/// Publishes `batch` and deletes its rows from the outbox; returns how many
/// rows it took care of.
///
/// When the bus refuses the batch for good, its events are published one at
/// a time, in outbox order, and each one refused on its own is set aside in
/// `_outbox_rejected`, as is a row that does not decode (only this code
/// writes the outbox, so that is a bug, but it must not block every later
/// event). Any other error is returned for the caller to retry; rows
/// already published are deleted first.
pub async fn send_batch(service: &str, db: &Db, bus: &Bus, batch: Batch) -> anyhow::Result<usize> {
    if publish_batch(service, db, bus, &batch).await? {
        // Publishing is idempotent by event id, so a crash before this
        // delete only means the batch is published again.
        delete_rows(db, &batch.seqs).await?;
    }
    Ok(batch.len())
}

/// Publishes `batch` (the undecodable rows set aside); true when its
/// events went in one publish and their rows are left for the caller to
/// delete, false when the bus refused the batch for good and its events
/// were published one at a time, each row deleted or set aside then.
async fn publish_batch(service: &str, db: &Db, bus: &Bus, batch: &Batch) -> anyhow::Result<bool> {
    if batch.is_empty() {
        return Ok(false);
    }
    for (seq, error) in &batch.undecodable {
        set_aside(
            service,
            db,
            *seq,
            "an undecodable outbox row",
            &format!("undecodable: {error}"),
        )
        .await?;
    }
    match bus.publish_encoded(&batch.events).await {
        Ok(()) => {}
        Err(e) if is_permanent(&e) => {
            tracing::warn!(
                service,
                error = %describe_error(&e),
                "the bus refused a batch for good; publishing its events one at a time"
            );
            return publish_one_by_one(service, db, bus, batch).await.map(|()| false);
        }
        Err(e) => return Err(e),
    }
    Ok(true)
}

/// Publishes the events of `batch` one at a time, setting aside those the
/// bus refuses for good. On another error, deletes the rows published so
/// far and returns it.
async fn publish_one_by_one(service: &str, db: &Db, bus: &Bus, batch: &Batch) -> anyhow::Result<()> {
    let mut published = Vec::new();
    for (seq, event) in batch.seqs.iter().zip(&batch.events) {
        match bus.publish_encoded(std::slice::from_ref(event)).await {
            Ok(()) => published.push(*seq),
            Err(e) if is_permanent(&e) => {
                let what = format!("event {} ({} {})", event.id, event.source, event.detail_type);
                set_aside(service, db, *seq, &what, &describe_error(&e)).await?;
            }
            Err(e) => {
                delete_rows(db, &published).await?;
                return Err(e);
            }
        }
    }
    delete_rows(db, &published).await
}

/// Moves outbox row `seq` (`what`, for the log) to `_outbox_rejected` with
/// the reason, in one transaction, then logs and counts it. Taking the row
/// with `DELETE … RETURNING` means that of several relays on one database
/// (replicas on PostgreSQL) only one moves it.
async fn set_aside(service: &str, db: &Db, seq: i64, what: &str, error: &str) -> anyhow::Result<()> {
    let mut tx = db
        .begin()
        .await
        .context("Failed to start setting an outbox event aside")?;
    let row = sqlx::query("DELETE FROM _outbox WHERE seq = $1 RETURNING event_id, payload, created_at")
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await
        .context("Failed to take a refused event out of the outbox")?;
    let Some(row) = row else {
        // Another relay got there first.
        return Ok(());
    };
    let event_id: String = row.try_get(0)?;
    let payload: String = row.try_get(1)?;
    let created_at: i64 = row.try_get(2)?;
    sqlx::query(
        "INSERT INTO _outbox_rejected (seq, event_id, payload, created_at, error, rejected_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(event_id)
    .bind(payload)
    .bind(created_at)
    .bind(error)
    .bind(Timestamp::now().unix_micros())
    .execute(&mut *tx)
    .await
    .context("Failed to set a refused event aside")?;
    tx.commit()
        .await
        .context("Failed to commit setting an outbox event aside")?;
    tracing::error!(
        service,
        seq,
        what,
        error,
        "the bus refused an outbox row for good; set aside in _outbox_rejected"
    );
    rejected_counter(service).inc();
    Ok(())
}

/// Deletes exactly the outbox rows `seqs`. Not "every row up to the last
/// one": on PostgreSQL a transaction that took a lower seq can commit after
/// the batch was read, and its event would be deleted unpublished.
async fn delete_rows(db: &Db, seqs: &[i64]) -> anyhow::Result<()> {
    for chunk in seqs.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM _outbox WHERE seq IN ({})",
            db.backend().list_sql(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for seq in chunk {
            query = query.bind(*seq);
        }
        db.write(query)
            .await
            .context("Failed to delete published events from the outbox")?;
    }
    Ok(())
}
