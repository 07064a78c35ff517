//! The embedded bus: durable tables in the platform's own database (SQLite
//! file `<data-dir>/platform.db`, or the `platform` schema on PostgreSQL).
//!
//! - `publish` writes, in one transaction, each new event to the archive
//!   (its unique id turns a duplicate publish into a no-op) and one pending
//!   delivery per matching rule. Rules are read from `bus_rules`, which the
//!   servers fill at start, so a publish from another process (the CLI)
//!   reaches them too.
//! - One worker per rule claims due deliveries in batches, runs the handler
//!   on each (bounded concurrency), deletes those that succeeded and
//!   reschedules the others with exponential backoff and full jitter, or
//!   moves them to the rule's dead-letter queue once exhausted. A short
//!   poll catches publishes of other processes and retries falling due.
//! - An in-process publish hands each delivery of a rule this process
//!   serves straight to its worker, with the payload, so the worker does
//!   not read it back; the row is stored due only after [`LEASE`], the
//!   time the worker has to deal with it before a table read would take it
//!   again (and `start` makes such rows of its rules due at once, for a
//!   process that stopped before dealing with them). The worker
//!   acknowledges handed deliveries through a shared task that deletes
//!   them together every [`ACK_EVERY`]: a crash in between only delivers
//!   them again, which handlers take (their inbox).
//! - `start` stores the process's rules and removes the stored rules of its
//!   services (the name before the first dot) that it no longer has, with
//!   their pending deliveries: rules deleted from the code stop collecting
//!   deliveries nobody takes. Other services' rules are left alone.
//! - A feed task follows the archive and copies new events to the listener.
//! - A maintenance task prunes the archive past its retention and updates
//!   the backlog and lag gauges.
//!
//! Delivery runs in the process that registered the rule: a rule must be
//! served by one process at a time. Scaling a service out to several
//! replicas is what the NATS backend is for.

use super::{service_of, BusBackend, DeadLetter, Rule, RuleInfo, RuleMetrics};
use crate::pattern::Pattern;
use crate::{Encoded, Event};
use anyhow::Context as _;
use ecom_model::Timestamp;
use ecom_runtime::config::BusSettings;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Migration, ROWS_PER_STATEMENT};
use futures::{FutureExt as _, StreamExt as _};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Tables of the embedded bus (scope [`SCOPE`] in the platform database).
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "embedded bus: archive, rules, deliveries, dead letters",
        include_str!("../../migrations/bus_0001_tables.sql"),
    ),
    Migration::new(
        2,
        "deliveries refer to the archived payload",
        include_str!("../../migrations/bus_0002_deliveries_by_reference.sql"),
    ),
];

/// Migration scope of [`MIGRATIONS`].
pub const SCOPE: &str = "platform";

/// Deliveries a worker claims at once.
const BATCH: i64 = 256;
/// Handlers of one rule running at the same time.
const CONCURRENCY: usize = 64;
/// How often a worker looks for work nobody woke it for (publishes from
/// other processes).
const POLL: Duration = Duration::from_millis(250);
/// How long a delivery handed to an in-process worker stays out of table
/// reads.
const LEASE: Duration = Duration::from_secs(60);
/// How often handed deliveries that were dealt with are deleted.
const ACK_EVERY: Duration = Duration::from_millis(20);
/// How long the stored rules are trusted before being read again.
const RULES_TTL: Duration = Duration::from_secs(1);
/// How often the backlog and lag gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(5);
/// How often the archive is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Archived events one pruning statement deletes at most.
const PRUNE_SLICE: i64 = 2_000;

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    settings: BusSettings,
    rules: Mutex<Option<(Instant, Arc<Vec<StoredRule>>)>>,
    /// Workers of this process, by rule name.
    wakers: Mutex<HashMap<String, Arc<Local>>>,
    /// Handed deliveries dealt with, for the acknowledging task to delete.
    acks: Mutex<Vec<i64>>,
    /// Wakes the acknowledging task.
    acked: Notify,
    /// Wakes the feed task after an in-process publish.
    published: Notify,
    /// The highest archive position this process has published.
    latest: AtomicI64,
}

/// What a worker of this process shares with publishes.
#[derive(Default)]
struct Local {
    wake: Notify,
    /// Deliveries an in-process publish handed over (their rows leased).
    handed: Mutex<Vec<Claimed>>,
    /// Set when the worker should also read the table: deliveries were
    /// added without being handed over (a redrive, a replay).
    scan: std::sync::atomic::AtomicBool,
}

/// A rule as stored in `bus_rules`.
struct StoredRule {
    name: String,
    pattern: Pattern,
    sources: Option<Vec<String>>,
    detail_types: Option<Vec<String>>,
    /// The pattern tests only the source and detail-type against plain
    /// strings: [`StoredRule::admits`] alone decides a match.
    exact: bool,
}

impl StoredRule {
    fn new(name: String, pattern: Pattern) -> StoredRule {
        StoredRule {
            sources: pattern.exact_values("source"),
            detail_types: pattern.exact_values("detail-type"),
            exact: pattern.only_source_and_type(),
            name,
            pattern,
        }
    }

    /// Whether a message of this source and detail-type passes the rule's
    /// subject filter (what a broker would route on, before decoding).
    fn admits(&self, source: &str, detail_type: &str) -> bool {
        let ok = |set: &Option<Vec<String>>, v: &str| set.as_ref().is_none_or(|s| s.iter().any(|x| x == v));
        ok(&self.sources, source) && ok(&self.detail_types, detail_type)
    }
}

/// A pending delivery as claimed by a worker.
struct Claimed {
    id: i64,
    event_id: String,
    /// `None` when the archive no longer holds the event (pruned while
    /// the delivery waited).
    payload: Option<String>,
    attempts: i64,
    created_at: i64,
    /// Handed over by an in-process publish (its row leased), rather than
    /// read from the table.
    handed: bool,
}

fn now_micros() -> i64 {
    Timestamp::now().unix_micros()
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// A new delivery row.
struct NewDelivery<'a> {
    rule: &'a str,
    event_id: &'a str,
    /// `None` for an archived event: the worker reads the archive's copy.
    payload: Option<&'a str>,
}

/// Inserts deliveries (skipping those already pending); returns how many
/// were added.
async fn insert_deliveries(tx: &mut ecom_storage::Tx, rows: &[NewDelivery<'_>]) -> anyhow::Result<u64> {
    let now = now_micros();
    let mut added = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_sql(ecom_storage::Backend::of(tx), chunk.len(), "");
        added += bind_deliveries(sqlx::query(&sql), chunk, now, now)
            .execute(&mut **tx)
            .await
            .context("Failed to queue deliveries")?
            .rows_affected();
    }
    Ok(added)
}

/// Inserts deliveries to hand to in-process workers, due only after
/// [`LEASE`]; returns the id, rule and event id of each one added.
///
/// On SQLite a chunk first goes in as a plain `INSERT`: then its rows take
/// consecutive ids in `VALUES` order (one writer) ending at the last
/// inserted rowid, which says all `RETURNING` would have without the
/// ephemeral table SQLite runs `RETURNING` through. A delivery already
/// pending makes that statement fail, and undo only itself (SQLite's
/// statement rollback); the chunk then goes in with `ON CONFLICT DO
/// NOTHING RETURNING`, as on PostgreSQL, where a failed statement would
/// end the transaction.
async fn insert_leased(
    tx: &mut ecom_storage::Tx,
    rows: &[NewDelivery<'_>],
) -> anyhow::Result<Vec<(i64, String, String)>> {
    let now = now_micros();
    let due = now.saturating_add(micros(LEASE));
    let backend = ecom_storage::Backend::of(tx);
    let mut added = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        if backend == ecom_storage::Backend::Sqlite {
            let sql = format!(
                "INSERT INTO bus_deliveries (rule, event_id, payload, attempts, due_at, created_at) VALUES {}",
                backend.values_sql(chunk.len(), 6)
            );
            match bind_deliveries(sqlx::query(&sql), chunk, due, now)
                .execute(&mut **tx)
                .await
            {
                Ok(done) => {
                    let n = chunk.len() as i64;
                    if let Some(last) = done.last_insert_id().filter(|_| done.rows_affected() == n as u64) {
                        added.extend(
                            chunk
                                .iter()
                                .zip(last + 1 - n..)
                                .map(|(d, id)| (id, d.rule.to_owned(), d.event_id.to_owned())),
                        );
                        continue;
                    }
                    anyhow::bail!("queued deliveries without learning their ids");
                }
                Err(e) if ecom_storage::is_unique_violation(&e) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("Failed to queue deliveries")),
            }
        }
        let sql = insert_sql(backend, chunk.len(), " RETURNING id, rule, event_id");
        for row in bind_deliveries(sqlx::query(&sql), chunk, due, now)
            .fetch_all(&mut **tx)
            .await
            .context("Failed to queue deliveries")?
        {
            added.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(added)
}

fn insert_sql(backend: ecom_storage::Backend, rows: usize, returning: &str) -> String {
    format!(
        "INSERT INTO bus_deliveries (rule, event_id, payload, attempts, due_at, created_at) VALUES {}
         ON CONFLICT (rule, event_id) DO NOTHING{returning}",
        backend.values_sql(rows, 6)
    )
}

fn bind_deliveries<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    rows: &[NewDelivery<'_>],
    due: i64,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for d in rows {
        q = q
            .bind(d.rule.to_owned())
            .bind(d.event_id.to_owned())
            .bind(d.payload.map(str::to_owned))
            .bind(0i64)
            .bind(due)
            .bind(now);
    }
    q
}

impl EmbeddedBus {
    /// Opens the bus on the platform database `db`, creating its tables.
    pub async fn open(db: Db, settings: BusSettings) -> anyhow::Result<EmbeddedBus> {
        db.migrate(SCOPE, MIGRATIONS)
            .await
            .context("Failed to create the tables of the embedded bus")?;
        Ok(EmbeddedBus {
            inner: Arc::new(Inner {
                db,
                settings,
                rules: Mutex::new(None),
                wakers: Mutex::new(HashMap::new()),
                acks: Mutex::new(Vec::new()),
                acked: Notify::new(),
                published: Notify::new(),
                latest: AtomicI64::new(0),
            }),
        })
    }

    /// Deletes archived events older than the retention; returns how many.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        self.inner.prune().await
    }
}

impl Inner {
    /// The stored rules, read again when the cached copy is older than
    /// [`RULES_TTL`] (rules registered by other processes show up then).
    async fn rules(&self) -> anyhow::Result<Arc<Vec<StoredRule>>> {
        if let Some((at, rules)) = &*self.rules.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < RULES_TTL {
                return Ok(rules.clone());
            }
        }
        let rows = sqlx::query("SELECT name, pattern FROM bus_rules ORDER BY name")
            .fetch_all(self.db.reader())
            .await
            .context("Failed to read the bus rules")?;
        let mut rules = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get(0)?;
            let text: String = row.try_get(1)?;
            match Pattern::from_json_str(&text) {
                Ok(pattern) => rules.push(StoredRule::new(name, pattern)),
                // Written by another version of ecom: its own process
                // still delivers what it can route; this one cannot route.
                Err(e) => {
                    tracing::warn!(rule = name, error = %e, "stored rule has a pattern this version cannot read")
                }
            }
        }
        let rules = Arc::new(rules);
        *self.rules.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// Wakes the workers of `rules` in this process to read the table.
    fn wake(&self, rules: impl IntoIterator<Item = String>) {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for rule in rules {
            if let Some(w) = wakers.get(&rule) {
                w.scan.store(true, Ordering::Release);
                w.wake.notify_one();
            }
        }
    }

    /// The worker of `rule` in this process, if it runs here.
    fn local(&self, rule: &str) -> Option<Arc<Local>> {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rule)
            .cloned()
    }

    async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        self.publish_encoded(&Encoded::all(events)?).await
    }

    async fn publish_encoded(&self, events: &[Encoded]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rules = self.rules().await?;
        // A batch may repeat an id; the first copy wins, like a later publish.
        let mut seen = HashSet::new();
        let events: Vec<(&Encoded, String)> = events
            .iter()
            .filter(|e| seen.insert(e.id))
            .map(|e| (e, e.id.to_string()))
            .collect();
        let now = now_micros();
        let mut tx = self
            .db
            .begin()
            .await
            .context("Failed to start a publish transaction")?;
        let mut fresh = HashSet::new();
        let mut latest = 0i64;
        // On SQLite (one writer) a statement's new rows take consecutive
        // seqs ending at its last inserted rowid: when every row of a chunk
        // is new, which is the rule, that says all `RETURNING` would have,
        // without the ephemeral table SQLite runs `RETURNING` through.
        let sqlite = self.db.backend() == ecom_storage::Backend::Sqlite;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO bus_events (event_id, source, detail_type, event_time, published_at, payload)
                 VALUES {} ON CONFLICT (event_id) DO NOTHING{}",
                self.db.backend().values_sql(chunk.len(), 6),
                if sqlite { "" } else { " RETURNING event_id, seq" }
            );
            let mut q = sqlx::query(&sql);
            for (event, id) in chunk {
                q = q
                    .bind(id.clone())
                    .bind(event.source.clone())
                    .bind(event.detail_type.clone())
                    .bind(event.time.unix_micros())
                    .bind(now)
                    .bind(event.payload.clone());
            }
            if !sqlite {
                for row in q.fetch_all(&mut *tx).await.context("Failed to archive events")? {
                    fresh.insert(row.try_get::<String, _>(0)?);
                    latest = latest.max(row.try_get::<i64, _>(1)?);
                }
                continue;
            }
            let done = q.execute(&mut *tx).await.context("Failed to archive events")?;
            let (added, last) = (done.rows_affected(), done.last_insert_id().unwrap_or(0));
            if added == 0 {
                continue;
            }
            latest = latest.max(last);
            if added == chunk.len() as u64 {
                fresh.extend(chunk.iter().map(|(_, id)| id.clone()));
                continue;
            }
            // Some were published before. A row skipped on conflict still
            // used up a seq, so this statement's rows lie among the last
            // `chunk.len()` seqs, with gaps; of those, the rows stamped with
            // this publish's time are its own.
            let rows = sqlx::query(
                "SELECT event_id FROM bus_events WHERE seq > $1 AND seq <= $2 AND published_at = $3",
            )
            .bind(last - chunk.len() as i64)
            .bind(last)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .context("Failed to read archived events")?;
            for row in rows {
                fresh.insert(row.try_get::<String, _>(0)?);
            }
        }
        let mut deliveries = Vec::new();
        let mut handed = Vec::new();
        let mut woken = HashSet::new();
        let mut payloads: HashMap<&str, &str> = HashMap::new();
        // The worker of each matched rule in this process (if any), looked
        // up once per publish and used again to hand the deliveries over.
        let mut locals: HashMap<&str, Option<Arc<Local>>> = HashMap::new();
        for (event, id) in events.iter().filter(|(_, id)| fresh.contains(id)) {
            // Decoded only for a rule that tests more than the source and
            // detail-type, and then once.
            let mut value: Option<serde_json::Value> = None;
            for rule in rules
                .iter()
                .filter(|r| r.admits(&event.source, &event.detail_type))
            {
                let matched = rule.exact
                    || rule.pattern.matches(
                        value.get_or_insert_with(|| serde_json::from_str(&event.payload).unwrap_or_default()),
                    );
                if !matched {
                    continue;
                }
                let delivery = NewDelivery {
                    rule: &rule.name,
                    event_id: id,
                    payload: None,
                };
                let local = locals
                    .entry(rule.name.as_str())
                    .or_insert_with(|| self.local(&rule.name));
                if local.is_some() {
                    payloads.insert(id.as_str(), event.payload.as_str());
                    handed.push(delivery);
                } else {
                    deliveries.push(delivery);
                    woken.insert(rule.name.clone());
                }
            }
        }
        insert_deliveries(&mut tx, &deliveries).await?;
        let leased = insert_leased(&mut tx, &handed).await?;
        tx.commit().await.context("Failed to commit a publish")?;
        self.latest.fetch_max(latest, Ordering::AcqRel);
        Self::hand_over(leased, &payloads, &locals);
        self.wake(woken);
        self.published.notify_one();
        Ok(())
    }

    /// Gives each leased delivery to its rule's worker in this process. A
    /// worker that stops before dealing with it leaves its row to the next
    /// start.
    fn hand_over(
        leased: Vec<(i64, String, String)>,
        payloads: &HashMap<&str, &str>,
        locals: &HashMap<&str, Option<Arc<Local>>>,
    ) {
        let created_at = now_micros();
        for (id, rule, event_id) in leased {
            let Some(Some(local)) = locals.get(rule.as_str()) else {
                continue;
            };
            let payload = payloads.get(event_id.as_str()).map(|p| (*p).to_owned());
            local
                .handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Claimed {
                    id,
                    event_id,
                    payload,
                    attempts: 0,
                    created_at,
                    handed: true,
                });
            local.wake.notify_one();
        }
    }

    async fn publish_raw(&self, source: &str, detail_type: &str, payload: &[u8]) -> anyhow::Result<()> {
        let rules = self.rules().await?;
        let text = String::from_utf8_lossy(payload).into_owned();
        // Keep the id when there is one, so the dead letter names it.
        let event_id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let targets: Vec<&StoredRule> = rules.iter().filter(|r| r.admits(source, detail_type)).collect();
        let deliveries: Vec<NewDelivery> = targets
            .iter()
            .map(|r| NewDelivery {
                rule: &r.name,
                event_id: &event_id,
                payload: Some(&text),
            })
            .collect();
        let mut tx = self.db.begin().await?;
        insert_deliveries(&mut tx, &deliveries).await?;
        tx.commit().await?;
        self.wake(targets.iter().map(|r| r.name.clone()));
        Ok(())
    }

    async fn register(&self, rules: &[Arc<Rule>]) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        let now = now_micros();
        for rule in rules {
            sqlx::query(
                "INSERT INTO bus_rules (name, pattern, registered_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, registered_at = excluded.registered_at",
            )
            .bind(rule.name.clone())
            .bind(rule.pattern_json.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("Failed to register rule {}", rule.name))?;
        }
        self.remove_stale(&mut tx, rules).await?;
        tx.commit().await.context("Failed to register the rules")?;
        // Publishes from now on must see them.
        *self.rules.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Deletes the stored rules of the services among `rules` (the part of
    /// a name before its first dot) that `rules` does not contain: rules
    /// removed from the code, which would otherwise keep collecting
    /// deliveries nobody takes. Their pending deliveries go too; their dead
    /// letters stay for a person to look at (`ecom events dlq purge`).
    /// Rules of services this process does not run are left alone.
    async fn remove_stale(&self, tx: &mut ecom_storage::Tx, rules: &[Arc<Rule>]) -> anyhow::Result<()> {
        let current: HashSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        let services: HashSet<&str> = rules.iter().filter_map(|r| service_of(&r.name)).collect();
        if services.is_empty() {
            return Ok(());
        }
        let stored: Vec<String> = sqlx::query("SELECT name FROM bus_rules")
            .fetch_all(&mut **tx)
            .await
            .context("Failed to read the bus rules")?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        let stale = stored.iter().filter(|name| {
            !current.contains(name.as_str()) && service_of(name).is_some_and(|s| services.contains(s))
        });
        for name in stale {
            let deliveries = sqlx::query("DELETE FROM bus_deliveries WHERE rule = $1")
                .bind(name.clone())
                .execute(&mut **tx)
                .await
                .with_context(|| format!("Failed to remove the deliveries of the stale rule {name}"))?
                .rows_affected();
            sqlx::query("DELETE FROM bus_rules WHERE name = $1")
                .bind(name.clone())
                .execute(&mut **tx)
                .await
                .with_context(|| format!("Failed to remove the stale rule {name}"))?;
            tracing::info!(
                rule = name,
                pending_deliveries_removed = deliveries,
                "removed a rule its service no longer registers (its dead letters stay)"
            );
        }
        Ok(())
    }

    /// Reads up to [`BATCH`] due deliveries of `rule` from the table.
    async fn due(&self, rule: &Rule) -> anyhow::Result<Vec<Claimed>> {
        let now = now_micros();
        let rows = sqlx::query(
            "SELECT d.id, d.event_id, COALESCE(d.payload, e.payload), d.attempts, d.created_at
             FROM bus_deliveries d LEFT JOIN bus_events e ON e.event_id = d.event_id
             WHERE d.rule = $1 AND d.due_at <= $2 ORDER BY d.due_at, d.id LIMIT $3",
        )
        .bind(rule.name.clone())
        .bind(now)
        .bind(BATCH)
        .fetch_all(self.db.reader())
        .await
        .context("Failed to read due deliveries")?;
        let claimed = rows
            .iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    payload: row.try_get(2)?,
                    attempts: row.try_get(3)?,
                    created_at: row.try_get(4)?,
                    handed: false,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(claimed)
    }

    /// Runs `claimed` deliveries of `rule` and records the outcomes;
    /// returns when the earliest retry it scheduled falls due.
    async fn run(
        &self,
        rule: &Rule,
        metrics: &RuleMetrics,
        claimed: Vec<Claimed>,
    ) -> anyhow::Result<Option<i64>> {
        if claimed.is_empty() {
            return Ok(None);
        }
        let outcomes: Vec<(Claimed, anyhow::Result<()>)> = futures::stream::iter(claimed)
            .map(|c| {
                let handler = rule.handler.clone();
                async move {
                    let result = match c.payload.as_deref().map(serde_json::from_str::<Event>) {
                        // Run in place (a spawn per event costs a cross-thread
                        // hand-off); a panic is caught and retried like an error.
                        Some(Ok(event)) => std::panic::AssertUnwindSafe(handler(event))
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("the handler panicked"))),
                        Some(Err(e)) => Err(super::permanent(format!("malformed event: {e}"))),
                        None => Err(super::permanent(
                            "the event left the archive (retention) before it was delivered",
                        )),
                    };
                    (c, result)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        self.record(rule, metrics, outcomes).await
    }

    /// Acknowledges successes, reschedules or dead-letters failures, in one
    /// transaction; returns the earliest retry time it set.
    async fn record(
        &self,
        rule: &Rule,
        metrics: &RuleMetrics,
        outcomes: Vec<(Claimed, anyhow::Result<()>)>,
    ) -> anyhow::Result<Option<i64>> {
        let now = now_micros();
        if outcomes.iter().all(|(_, result)| result.is_ok()) {
            // The usual case. Handed deliveries go to the acknowledging
            // task (their rows stay out of reads until then); the others
            // are deleted now.
            let (handed, read): (Vec<_>, Vec<_>) = outcomes.iter().map(|(c, _)| c).partition(|c| c.handed);
            if !handed.is_empty() {
                self.acks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(handed.iter().map(|c| c.id));
                self.acked.notify_one();
                metrics.delivered.add(handed.len() as u64);
            }
            let ids: Vec<i64> = read.iter().map(|c| c.id).collect();
            self.delete_deliveries(&ids).await?;
            metrics.delivered.add(ids.len() as u64);
            return Ok(None);
        }
        let mut next_retry: Option<i64> = None;
        let mut done = Vec::new();
        let mut retried = 0;
        let mut dead = 0;
        let mut tx = self
            .db
            .begin()
            .await
            .context("Failed to start recording deliveries")?;
        for (c, result) in outcomes {
            let Err(err) = result else {
                done.push(c.id);
                continue;
            };
            let attempts = c.attempts.saturating_add(1);
            let age = Duration::from_micros(now.saturating_sub(c.created_at).max(0) as u64);
            let message = super::describe_error(&err);
            if super::exhausted(&self.settings, attempts as u32, age, &err) {
                tracing::warn!(
                    rule = rule.name,
                    event = c.event_id,
                    attempts,
                    error = message,
                    "event dead-lettered"
                );
                sqlx::query(
                    "INSERT INTO bus_dead_letters (rule, event_id, payload, attempts, last_error, failed_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (rule, event_id) DO UPDATE SET payload = excluded.payload,
                       attempts = excluded.attempts, last_error = excluded.last_error, failed_at = excluded.failed_at",
                )
                .bind(rule.name.clone())
                .bind(c.event_id)
                .bind(c.payload.unwrap_or_default())
                .bind(attempts)
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("Failed to dead-letter an event")?;
                done.push(c.id);
                dead += 1;
            } else {
                let delay = super::backoff(&self.settings, attempts as u32);
                let due = now.saturating_add(micros(delay));
                next_retry = Some(next_retry.map_or(due, |t| t.min(due)));
                tracing::info!(rule = rule.name, event = c.event_id, attempts, retry_in = ?delay, error = message, "handler failed; will retry");
                sqlx::query(
                    "UPDATE bus_deliveries SET attempts = $1, due_at = $2, last_error = $3 WHERE id = $4",
                )
                .bind(attempts)
                .bind(due)
                .bind(message)
                .bind(c.id)
                .execute(&mut *tx)
                .await
                .context("Failed to reschedule a delivery")?;
                retried += 1;
            }
        }
        self.acknowledge(&mut tx, &done).await?;
        tx.commit().await.context("Failed to record deliveries")?;
        metrics.delivered.add((done.len() - dead) as u64);
        metrics.retried.add(retried);
        metrics.dead_lettered.add(dead as u64);
        Ok(next_retry)
    }

    /// The statement that deletes `n` deliveries by id.
    fn acknowledge_sql(&self, n: usize) -> String {
        format!(
            "DELETE FROM bus_deliveries WHERE id IN ({})",
            self.db.backend().list_sql(n)
        )
    }

    /// Deletes the deliveries `ids`, one statement per chunk, each its own
    /// write (on SQLite sharing a `COMMIT` with the writes queued with it).
    /// A crash between two only delivers the rest again.
    async fn delete_deliveries(&self, ids: &[i64]) -> anyhow::Result<()> {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = self.acknowledge_sql(chunk.len());
            let query = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            self.db
                .write(query)
                .await
                .context("Failed to acknowledge deliveries")?;
        }
        Ok(())
    }

    /// Deletes the deliveries `ids` (handled or dead-lettered) in `conn`'s
    /// transaction.
    async fn acknowledge(&self, conn: &mut sqlx::AnyConnection, ids: &[i64]) -> anyhow::Result<()> {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = self.acknowledge_sql(chunk.len());
            let q = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            q.execute(&mut *conn)
                .await
                .context("Failed to acknowledge deliveries")?;
        }
        Ok(())
    }

    async fn worker(self: Arc<Self>, rule: Arc<Rule>, local: Arc<Local>, shutdown: CancellationToken) {
        let metrics = RuleMetrics::new(&rule.name);
        let mut failures = 0u32;
        // Retries this worker scheduled: the only deliveries due in the
        // future that nobody will wake it for (others wait at most a poll).
        let mut next_retry: Option<i64> = None;
        // Read the table first: what was due before this start.
        let mut scan = true;
        while !shutdown.is_cancelled() {
            let mut claimed = std::mem::take(&mut *local.handed.lock().unwrap_or_else(|e| e.into_inner()));
            let mut full = false;
            let mut result = Ok(None);
            // `|`, not `||`: the flag a publish set is cleared either way.
            if std::mem::take(&mut scan) | local.scan.swap(false, Ordering::AcqRel) {
                match self.due(&rule).await {
                    Ok(rows) => {
                        full = rows.len() as i64 == BATCH;
                        claimed.extend(rows);
                    }
                    Err(e) => result = Err(e),
                }
            }
            if result.is_ok() {
                result = self.run(&rule, &metrics, claimed).await;
            }
            match result {
                Ok(due) => {
                    failures = 0;
                    if let Some(due) = due {
                        next_retry = Some(next_retry.map_or(due, |t| t.min(due)));
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(rule = rule.name, error = %format!("{e:#}"), "delivery failed; will retry");
                }
            }
            if full {
                scan = true;
                continue;
            }
            let now = now_micros();
            if next_retry.is_some_and(|t| t <= now) {
                // Due now: the next read takes it.
                next_retry = None;
                scan = true;
                continue;
            }
            let pause = if failures > 0 {
                POLL * failures.min(20)
            } else {
                next_retry.map_or(POLL, |t| Duration::from_micros((t - now) as u64).min(POLL))
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = local.wake.notified() => {}
                _ = tokio::time::sleep(pause) => scan = true,
            }
        }
        // Publishes from now on leave this rule's deliveries to a read.
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rule.name);
    }

    /// Deletes the handed deliveries workers dealt with, together, every
    /// [`ACK_EVERY`], until `shutdown` (the task `start` returns deletes
    /// the last ones once the workers have stopped).
    async fn acknowledger(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.acked.notified() => {}
            }
            tokio::time::sleep(ACK_EVERY).await;
            self.delete_acknowledged().await;
        }
    }

    /// Deletes the handed deliveries dealt with so far.
    async fn delete_acknowledged(&self) {
        let ids = std::mem::take(&mut *self.acks.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = self.delete_deliveries(&ids).await {
            // Their leases run out and they are delivered again.
            tracing::warn!(error = %format!("{e:#}"), "could not delete delivered events; they will be delivered again");
        }
    }

    /// Makes the leased deliveries of `rules` due now: this process serves
    /// them, so whatever an earlier process was handed and did not deal
    /// with is for it.
    async fn unlease(&self, rules: &[Arc<Rule>]) -> anyhow::Result<()> {
        let now = now_micros();
        for rule in rules {
            self.db
                .write(
                    sqlx::query("UPDATE bus_deliveries SET due_at = $1 WHERE rule = $2 AND attempts = 0 AND due_at > $1")
                        .bind(now)
                        .bind(rule.name.clone()),
                )
                .await
                .context("Failed to take over the deliveries of an earlier process")?;
        }
        Ok(())
    }

    /// Copies each newly archived event to `feed`, in archive order.
    async fn follow(
        self: Arc<Self>,
        mut last: i64,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) {
        loop {
            let published = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.published.notified() => true,
                _ = tokio::time::sleep(POLL) => false,
            };
            if feed.receiver_count() == 0 {
                // Nobody listening: skip ahead without reading payloads.
                // After a publish of this process its end is known; the
                // poll catches up with publishes of other processes (the
                // maximum of the primary key is one index lookup).
                last = last.max(self.latest.load(Ordering::Acquire));
                if !published {
                    match self.max_seq().await {
                        Ok(seq) => last = last.max(seq),
                        Err(e) => tracing::debug!(error = %format!("{e:#}"), "event feed position not read"),
                    }
                }
                continue;
            }
            match self.feed_from(last, &feed).await {
                Ok(seq) => last = seq,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "event feed failed; will retry"),
            }
        }
    }

    async fn max_seq(&self) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT MAX(seq) FROM bus_events")
            .fetch_one(self.db.reader())
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// Sends the events archived after `last` to `feed`; returns the new
    /// position.
    async fn feed_from(&self, mut last: i64, feed: &broadcast::Sender<Arc<Event>>) -> anyhow::Result<i64> {
        loop {
            let rows =
                sqlx::query("SELECT seq, payload FROM bus_events WHERE seq > $1 ORDER BY seq LIMIT 1000")
                    .bind(last)
                    .fetch_all(self.db.reader())
                    .await?;
            for row in &rows {
                last = row.try_get(0)?;
                let payload: String = row.try_get(1)?;
                if let Ok(event) = serde_json::from_str::<Event>(&payload) {
                    let _ = feed.send(Arc::new(event));
                }
            }
            if rows.len() < 1000 {
                return Ok(last);
            }
        }
    }

    async fn prune(&self) -> anyhow::Result<u64> {
        let cutoff = now_micros().saturating_sub(micros(self.settings.retention));
        // In slices, so that an hour of events is not one statement holding
        // the writer (and, on SQLite, a thread) for seconds. An event still
        // waiting for a delivery stays: its delivery reads the payload
        // from here.
        let mut pruned = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM bus_events WHERE event_id IN (
                     SELECT event_id FROM bus_events WHERE event_time < $1
                     AND event_id NOT IN (SELECT event_id FROM bus_deliveries WHERE payload IS NULL)
                     LIMIT $2)",
            )
            .bind(cutoff)
            .bind(PRUNE_SLICE)
            .execute(self.db.writer())
            .await
            .context("Failed to prune the event archive")?;
            pruned += done.rows_affected();
            if done.rows_affected() < PRUNE_SLICE as u64 {
                return Ok(pruned);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn update_gauges(&self, metrics: &HashMap<String, RuleMetrics>) -> anyhow::Result<()> {
        let rows = sqlx::query("SELECT rule, COUNT(*), MIN(created_at) FROM bus_deliveries GROUP BY rule")
            .fetch_all(self.db.reader())
            .await?;
        let now = now_micros();
        let mut seen = HashSet::new();
        for row in rows {
            let rule: String = row.try_get(0)?;
            if let Some(m) = metrics.get(&rule) {
                m.backlog.set(row.try_get(1)?);
                let oldest: Option<i64> = row.try_get(2)?;
                m.lag_ms.set(oldest.map_or(0, |t| now.saturating_sub(t) / 1000));
                seen.insert(rule);
            }
        }
        for (rule, m) in metrics {
            if !seen.contains(rule) {
                m.backlog.set(0);
                m.lag_ms.set(0);
            }
        }
        Ok(())
    }

    async fn maintain(self: Arc<Self>, rules: Vec<String>, shutdown: CancellationToken) {
        let metrics: HashMap<String, RuleMetrics> =
            rules.iter().map(|r| (r.clone(), RuleMetrics::new(r))).collect();
        let mut last_prune: Option<Instant> = None;
        loop {
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                match self.prune().await {
                    Ok(n) if n > 0 => tracing::info!(events = n, "pruned the event archive"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "archive pruning failed"),
                }
                last_prune = Some(Instant::now());
            }
            if let Err(e) = self.update_gauges(&metrics).await {
                tracing::debug!(error = %format!("{e:#}"), "bus gauges not updated");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(GAUGES_EVERY) => {}
            }
        }
    }
}

/// The message for a rule name the bus does not know.
fn unknown_rule<'a>(rule: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    format!(
        "unknown rule '{rule}'; the rules are: {} (rules are registered when the server starts)",
        if known.is_empty() {
            "none yet".to_owned()
        } else {
            known.join(", ")
        }
    )
}

/// A dead letter as stored; a payload that is not an event is shown as well
/// as can be (its id when it has one, the raw text as detail).
fn dead_letter_from_row(row: &ecom_storage::Row) -> anyhow::Result<DeadLetter> {
    let rule: String = row.try_get(0)?;
    let event_id: String = row.try_get(1)?;
    let payload: String = row.try_get(2)?;
    let attempts: i64 = row.try_get(3)?;
    let last_error: String = row.try_get(4)?;
    let failed_at: i64 = row.try_get(5)?;
    let event = serde_json::from_str::<Event>(&payload).unwrap_or_else(|_| Event {
        version: "0".to_owned(),
        id: Uuid::parse_str(&event_id).unwrap_or(Uuid::nil()),
        source: String::new(),
        detail_type: String::new(),
        time: Timestamp::from_unix_micros(failed_at).unwrap_or_else(Timestamp::now),
        resources: Vec::new(),
        detail: serde_json::Value::String(payload).into(),
        traceparent: None,
    });
    Ok(DeadLetter {
        rule,
        event,
        attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
        last_error,
        failed_at: Timestamp::from_unix_micros(failed_at).unwrap_or_else(Timestamp::now),
    })
}

#[async_trait::async_trait]
impl BusBackend for EmbeddedBus {
    async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        self.inner.publish(events).await
    }

    async fn publish_encoded(&self, events: &[Encoded]) -> anyhow::Result<()> {
        self.inner.publish_encoded(events).await
    }

    async fn start(
        &self,
        rules: Vec<Arc<Rule>>,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        self.inner.register(&rules).await?;
        self.inner.unlease(&rules).await?;
        let mut tasks = Vec::new();
        for rule in &rules {
            let local = Arc::new(Local::default());
            self.inner
                .wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(rule.name.clone(), local.clone());
            tasks.push(tokio::spawn(self.inner.clone().worker(
                rule.clone(),
                local,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(self.inner.clone().acknowledger(shutdown.clone())));
        // Read here, so the feed shows everything published once `start` returns.
        let last = self
            .inner
            .max_seq()
            .await
            .context("Failed to start the event feed")?;
        tasks.push(tokio::spawn(self.inner.clone().follow(
            last,
            feed,
            shutdown.clone(),
        )));
        let names = rules.iter().map(|r| r.name.clone()).collect();
        tasks.push(tokio::spawn(self.inner.clone().maintain(names, shutdown)));
        let inner = self.inner.clone();
        Ok(tokio::spawn(async move {
            futures::future::join_all(tasks).await;
            // What the workers dealt with after the acknowledger's last
            // round: deleted now rather than delivered again at the next start.
            inner.delete_acknowledged().await;
        }))
    }

    async fn dead_letters(&self, rule: Option<&str>, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let columns = "SELECT rule, event_id, payload, attempts, last_error, failed_at FROM bus_dead_letters";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match rule {
            Some(rule) => {
                sqlx::query(&format!("{columns} WHERE rule = $1 ORDER BY id LIMIT $2"))
                    .bind(rule.to_owned())
                    .bind(limit)
                    .fetch_all(self.inner.db.reader())
                    .await
            }
            None => {
                sqlx::query(&format!("{columns} ORDER BY id LIMIT $1"))
                    .bind(limit)
                    .fetch_all(self.inner.db.reader())
                    .await
            }
        }
        .context("Failed to read dead letters")?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    async fn purge(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        let filter = if rule.is_some() { "rule = $1" } else { "$1 = $1" };
        let purged = sqlx::query(&format!("DELETE FROM bus_dead_letters WHERE {filter}"))
            .bind(rule.unwrap_or("").to_owned())
            .execute(self.inner.db.writer())
            .await
            .context("Failed to purge dead letters")?
            .rows_affected();
        if let (Some(rule), 0) = (rule, purged) {
            // Nothing deleted: tell a typo from an empty queue.
            *self.inner.rules.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let rules = self.inner.rules().await?;
            if !rules.iter().any(|r| r.name == rule) {
                anyhow::bail!("{}", unknown_rule(rule, rules.iter().map(|r| r.name.as_str())));
            }
        }
        Ok(purged)
    }

    async fn rules(&self) -> anyhow::Result<Vec<RuleInfo>> {
        let rows = sqlx::query("SELECT name, pattern FROM bus_rules ORDER BY name")
            .fetch_all(self.inner.db.reader())
            .await
            .context("Failed to read the bus rules")?;
        rows.iter()
            .map(|row| {
                Ok(RuleInfo {
                    name: row.try_get(0)?,
                    pattern: row.try_get(1)?,
                })
            })
            .collect()
    }

    async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        let now = now_micros();
        let filter = if rule.is_some() { "rule = $2" } else { "$2 = $2" };
        let mut tx = self.inner.db.begin().await?;
        // `WHERE` is required by SQLite's parser in an INSERT … SELECT
        // with an ON CONFLICT clause.
        let rules: Vec<String> = sqlx::query(&format!(
            "INSERT INTO bus_deliveries (rule, event_id, payload, attempts, due_at, created_at)
             SELECT rule, event_id, payload, 0, $1, $1 FROM bus_dead_letters WHERE {filter}
             ON CONFLICT (rule, event_id) DO NOTHING RETURNING rule"
        ))
        .bind(now)
        .bind(rule.unwrap_or("").to_owned())
        .fetch_all(&mut *tx)
        .await
        .context("Failed to redrive dead letters")?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        let filter = if rule.is_some() { "rule = $1" } else { "$1 = $1" };
        let moved = sqlx::query(&format!("DELETE FROM bus_dead_letters WHERE {filter}"))
            .bind(rule.unwrap_or("").to_owned())
            .execute(&mut *tx)
            .await
            .context("Failed to redrive dead letters")?
            .rows_affected();
        tx.commit().await.context("Failed to redrive dead letters")?;
        self.inner.wake(rules);
        Ok(moved)
    }

    async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64> {
        // Read afresh: the rule may have been registered a moment ago.
        *self.inner.rules.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let rules = self.inner.rules().await?;
        let Some(stored) = rules.iter().find(|r| r.name == rule) else {
            anyhow::bail!("{}", unknown_rule(rule, rules.iter().map(|r| r.name.as_str())));
        };
        // Deliveries handled but not yet deleted (the acknowledging task
        // deletes them every ACK_EVERY) would make the replay's rows for
        // the same events conflict and be skipped: an event handled a
        // moment ago would not be delivered again.
        self.inner.delete_acknowledged().await;
        let mut last = 0i64;
        let mut queued = 0;
        loop {
            let rows = sqlx::query(
                "SELECT seq, event_id, payload FROM bus_events
                 WHERE event_time >= $1 AND event_time < $2 AND seq > $3 ORDER BY seq LIMIT 1000",
            )
            .bind(from.unix_micros())
            .bind(to.unix_micros())
            .bind(last)
            .fetch_all(self.inner.db.reader())
            .await
            .context("Failed to read the event archive")?;
            let mut matching = Vec::new();
            for row in &rows {
                last = row.try_get(0)?;
                let id: String = row.try_get(1)?;
                let payload: String = row.try_get(2)?;
                let matches = serde_json::from_str::<serde_json::Value>(&payload)
                    .is_ok_and(|v| stored.pattern.matches(&v));
                if matches {
                    matching.push(id);
                }
            }
            let deliveries: Vec<NewDelivery> = matching
                .iter()
                .map(|id| NewDelivery {
                    rule,
                    event_id: id,
                    payload: None,
                })
                .collect();
            let mut tx = self.inner.db.begin().await?;
            queued += insert_deliveries(&mut tx, &deliveries).await?;
            tx.commit().await.context("Failed to queue the replay")?;
            if rows.len() < 1000 {
                break;
            }
        }
        self.inner.wake([rule.to_owned()]);
        Ok(queued)
    }

    async fn publish_raw(&self, source: &str, detail_type: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.inner.publish_raw(source, detail_type, payload).await
    }
}
