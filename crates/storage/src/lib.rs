//! One storage interface over SQLite and PostgreSQL.
//!
//! Every service owns its own database: a SQLite file `<data-dir>/<service>.db`
//! by default, or its own schema in one PostgreSQL database. Queries go
//! through sqlx's `Any` driver and use `$1`-style placeholders, which both
//! SQLite and PostgreSQL understand, so each operation has exactly one query
//! text for both backends. Migrations are embedded in the service crates and
//! applied at start by [`Db::migrate`].

pub mod files;
mod group;
mod migrate;

pub use migrate::Migration;
pub use sqlx;

use anyhow::Context as _;
use futures::executor::block_on;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::Row as _;
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::path::PathBuf;
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

/// A write transaction on a service's database: a plain transaction on
/// PostgreSQL; on SQLite, one member of a group that commits together
/// (see `group.rs`). Statements take `&mut *tx` (or `&mut **tx` through a
/// `&mut Tx`), as with sqlx's own transaction.
pub struct Tx {
    inner: TxInner,
    after_commit: Vec<AfterCommit>,
}

/// Work to run once a transaction's changes are durable (see
/// [`Tx::after_commit`]).
pub type AfterCommit = Box<dyn FnOnce() + Send>;

enum TxInner {
    Plain(Transaction<'static, Any>),
    Grouped(group::Member),
}

impl Tx {
    fn new(inner: TxInner) -> Tx {
        Tx {
            inner,
            after_commit: Vec::new(),
        }
    }

    /// Commits. On SQLite this returns once the group's `COMMIT` is done.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Plain(tx) => {
                tx.commit().await?;
                self.after_commit.into_iter().for_each(|f| f());
                Ok(())
            }
            TxInner::Grouped(member) => member.commit(self.after_commit).await,
        }
    }

    /// Runs `f` once this transaction has committed, and never if it does
    /// not. On SQLite the group's committer runs the `f`s of all its
    /// members, in commit order, right after their `COMMIT` and before any
    /// member hears of it; so `f` must be quick and must not block.
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    /// Commits when its statement's `outcome` is a success (returning it),
    /// else rolls back and returns the statement's error.
    async fn settle<T>(self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        match outcome {
            Ok(value) => self.commit().await.map(|()| value),
            Err(e) => {
                self.rollback().await.ok();
                Err(e)
            }
        }
    }

    /// Rolls back this transaction's statements.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Plain(tx) => tx.rollback().await,
            TxInner::Grouped(member) => member.rollback().await,
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        match &self.inner {
            TxInner::Plain(tx) => tx,
            TxInner::Grouped(member) => member.connection(),
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        match &mut self.inner {
            TxInner::Plain(tx) => tx,
            TxInner::Grouped(member) => member.connection_mut(),
        }
    }
}
/// A row from either backend.
pub type Row = AnyRow;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file per service (WAL mode).
    Sqlite,
    /// A schema per service in one PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The backend of an open transaction.
    pub fn of(tx: &Tx) -> Backend {
        if tx.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// Placeholders for a multi-row `VALUES` list of `rows` rows of `cols`
    /// columns: `($1, $2), ($3, $4)`. SQLite gets anonymous `?`s instead:
    /// its driver looks up each numbered parameter's name by a linear scan,
    /// which makes binding a long numbered list quadratic.
    pub fn values_sql(&self, rows: usize, cols: usize) -> String {
        let mut out = String::with_capacity(rows * cols * 5);
        for r in 0..rows {
            out.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..cols {
                if c > 0 {
                    out.push_str(", ");
                }
                self.push_placeholder(&mut out, r * cols + c + 1);
            }
            out.push(')');
        }
        out
    }

    /// Placeholders for an `IN (…)` list of `n` values: `$1, $2, …`
    /// (`?, ?, …` on SQLite, as for [`Backend::values_sql`]).
    pub fn list_sql(&self, n: usize) -> String {
        let mut out = String::with_capacity(n * 5);
        for i in 1..=n {
            if i > 1 {
                out.push_str(", ");
            }
            self.push_placeholder(&mut out, i);
        }
        out
    }

    /// What a `SELECT` ends with to lock the rows it reads until the
    /// transaction ends: `FOR UPDATE` on PostgreSQL; nothing on SQLite,
    /// whose `BEGIN IMMEDIATE` already makes every writer take turns.
    pub fn for_update(&self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// The rows of `select` (`SELECT … FROM …`, without `WHERE`) whose
    /// `key` is one of `n` values, bound in order: `… WHERE key IN ($1, …)`
    /// on PostgreSQL; on SQLite one point lookup per value joined by
    /// `UNION ALL`, because SQLite builds an `IN (…)` list into an
    /// ephemeral b-tree of its own each time, which costs more than the
    /// lookups. A value given twice may give its row twice.
    pub fn lookup_sql(&self, select: &str, key: &str, n: usize) -> String {
        match self {
            Backend::Postgres => format!("{select} WHERE {key} IN ({})", self.list_sql(n)),
            Backend::Sqlite => {
                let one = format!("{select} WHERE {key} = ?");
                let mut out = String::with_capacity(n * (one.len() + 11));
                for i in 0..n {
                    if i > 0 {
                        out.push_str(" UNION ALL ");
                    }
                    out.push_str(&one);
                }
                out
            }
        }
    }

    fn push_placeholder(&self, out: &mut String, n: usize) {
        match self {
            Backend::Sqlite => out.push('?'),
            Backend::Postgres => {
                out.push('$');
                out.push_str(&n.to_string());
            }
        }
    }
}

/// Rows (or `IN` values) per multi-row statement: far below both engines'
/// parameter limits (SQLite's is 32,766), and few enough statement texts
/// for the statement cache. Callers split longer lists with `chunks`.
pub const ROWS_PER_STATEMENT: usize = 100;

/// Where the services keep their data.
#[derive(Debug, Clone)]
pub enum StorageTarget {
    /// One SQLite file per service in this directory.
    Sqlite {
        /// The data directory.
        dir: PathBuf,
    },
    /// One schema per service in this PostgreSQL database.
    Postgres {
        /// `postgres://…` connection URL.
        url: String,
        /// Prefix for schema names, so several platforms (or tests) can share
        /// one database without seeing each other's tables. Empty in production.
        schema_prefix: String,
        /// Connections per service pool.
        max_connections: u32,
    },
}

impl StorageTarget {
    /// Chooses the target from an optional `--database-url`: nothing or a
    /// `sqlite:` URL naming a directory means SQLite files, `postgres://`
    /// or `postgresql://` means PostgreSQL.
    pub fn from_url(database_url: Option<&str>, data_dir: PathBuf) -> anyhow::Result<StorageTarget> {
        match database_url {
            None | Some("") => Ok(StorageTarget::Sqlite { dir: data_dir }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StorageTarget::Postgres {
                    url: url.to_owned(),
                    schema_prefix: String::new(),
                    max_connections: 10,
                })
            }
            Some(url) => match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                Some(dir) if !dir.is_empty() => Ok(StorageTarget::Sqlite { dir: dir.into() }),
                _ => anyhow::bail!(
                    "unsupported database URL '{url}': use postgres://… or sqlite:<directory>, or leave it unset for SQLite files in the data dir"
                ),
            },
        }
    }

    /// The same target with `size` connections in each service's pool on
    /// PostgreSQL (at least 1). SQLite's pools stay as they are: one writer
    /// and a few readers per file.
    pub fn with_pool_size(self, size: u32) -> StorageTarget {
        match self {
            StorageTarget::Postgres {
                url, schema_prefix, ..
            } => StorageTarget::Postgres {
                url,
                schema_prefix,
                max_connections: size.max(1),
            },
            sqlite => sqlite,
        }
    }

    /// The backend this target uses.
    pub fn backend(&self) -> Backend {
        match self {
            StorageTarget::Sqlite { .. } => Backend::Sqlite,
            StorageTarget::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// The database of one service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    /// Writes go through here. On SQLite this pool has one connection: SQLite
    /// allows one writer at a time anyway, and a single writer connection
    /// never meets `SQLITE_BUSY` from its own process.
    write: AnyPool,
    /// Reads go through here (the same pool on PostgreSQL).
    read: AnyPool,
    /// Held by every clone; SQLite's background checkpointer stops when
    /// the last one is dropped.
    _alive: Option<Arc<()>>,
    /// SQLite's write transactions commit in groups (`group.rs`).
    group: Option<group::Group>,
}

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// Set on every SQLite connection. `wal_autocheckpoint` is only a safety
/// net for when [`checkpoint`] falls behind (see `docs/decisions.md`).
///
/// No `busy_timeout`: SQLite's own stays 0, since it would sleep on the
/// executor thread. The patched driver waits for a lock held by another
/// process in async sleeps instead, for up to its `busy_timeout` option
/// (5 s, the default; `vendor/README.md`).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 50000;";

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Every how many rounds it also restarts the WAL from the top.
const RESTART_EVERY: u32 = 8;

/// Keeps a SQLite database's WAL short without stalling commits, until
/// every handle of the database is dropped or its pools close.
///
/// SQLite's automatic checkpoint runs inside whichever commit crosses the
/// threshold: that commit, and every writer queued behind it, waits for the
/// copy and its two fsyncs (10–20 ms here for the default 1,000 pages),
/// which was most of the bus's p99. Instead, every round copies the WAL
/// into the database from a reader connection, beside the writer
/// (`PASSIVE`); every [`RESTART_EVERY`] rounds it then holds the writer
/// connection for a `RESTART` of the few frames committed meanwhile, so
/// the WAL starts over from the top instead of growing (a long WAL slows
/// every read, which searches it first).
async fn checkpoint(alive: Weak<()>, read: AnyPool, write: AnyPool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule = Schedule::default();
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 || read.is_closed() || write.is_closed() {
            return;
        }
        let Some(restart) = schedule.next() else {
            continue;
        };
        match checkpoint_round(&read, &write, restart).await {
            Ok(frames) => schedule.saw(frames),
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

/// Which ticks of [`checkpoint`] run a round, and which rounds restart.
#[derive(Debug)]
struct Schedule {
    round: u32,
    /// Rounds in a row that found the WAL as the round before left it.
    quiet: u32,
    last_frames: i64,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            round: 0,
            quiet: 0,
            last_frames: -1,
        }
    }
}

impl Schedule {
    /// For the next tick: `None` to skip it, else whether the round also
    /// restarts the WAL. A busy database gets a round every tick and a
    /// restart every [`RESTART_EVERY`]; an idle one (the WAL unchanged for
    /// three rounds) is looked at once every [`RESTART_EVERY`] ticks and
    /// its writer left alone: with the WAL all copied and no readers, the
    /// next commit starts it over by itself.
    fn next(&mut self) -> Option<bool> {
        self.round = self.round.wrapping_add(1);
        let every_restart = self.round.is_multiple_of(RESTART_EVERY);
        let idle = self.quiet >= 3;
        if idle && !every_restart {
            return None;
        }
        Some(every_restart && !idle)
    }

    /// Records the frames a round found in the WAL.
    fn saw(&mut self, frames: i64) {
        self.quiet = if frames == self.last_frames {
            self.quiet.saturating_add(1)
        } else {
            0
        };
        self.last_frames = frames;
    }
}

/// One round; returns the frames the WAL held at its start.
///
/// Statements on SQLite run on the thread that awaits them (see
/// `vendor/README.md`), and a checkpoint writes the database file and
/// syncs it: so the round's statements run on a blocking-pool thread, and
/// only waiting for a connection happens on the executor.
async fn checkpoint_round(read: &AnyPool, write: &AnyPool, restart: bool) -> Result<i64, sqlx::Error> {
    // (busy, frames in the WAL, frames copied)
    let (reader, row) = off_executor(read.acquire().await?, |conn| {
        block_on(sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut **conn))
    })
    .await?;
    let frames: i64 = row?.try_get(1)?;
    if frames <= 0 || !restart {
        return Ok(frames);
    }
    // Copy what was committed during that first pass too, so the writer
    // waits for as little as possible.
    let (reader, copied) = off_executor(reader, |conn| {
        block_on(sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut **conn))
    })
    .await?;
    drop(reader);
    copied?;
    // RESTART waits for readers of the old frames to finish before the
    // next commit may write over them; readers are short, and a long one
    // (a replay) must not stall the writer: wait at most a few ms, else
    // leave the WAL for the next round.
    let (writer, done) = off_executor(write.acquire().await?, |conn| {
        block_on(async {
            sqlx::query("PRAGMA busy_timeout = 5")
                .execute(&mut **conn)
                .await?;
            let done = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&mut **conn)
                .await;
            // Back to no wait in SQLite itself: the driver's waits are
            // asynchronous (`SQLITE_PRAGMAS`).
            let restored = sqlx::query("PRAGMA busy_timeout = 0").execute(&mut **conn).await;
            Ok::<_, sqlx::Error>((done, restored))
        })
    })
    .await?;
    let (done, restored) = done?;
    if restored.is_err() {
        // A writer left with SQLite's own busy timeout would sleep on an
        // executor thread when another process writes: drop the connection
        // rather than return it so.
        writer.detach();
    }
    done.and(restored).map(|_| frames)
}

/// Runs `work` on `conn` on a blocking-pool thread and hands the connection
/// back (it returns to its pool when dropped on the executor). `work` runs
/// its statements with `block_on`: a statement on SQLite needs nothing
/// from the runtime.
async fn off_executor<T: Send + 'static>(
    mut conn: PoolConnection<Any>,
    work: impl FnOnce(&mut PoolConnection<Any>) -> T + Send + 'static,
) -> Result<(PoolConnection<Any>, T), sqlx::Error> {
    tokio::task::spawn_blocking(move || {
        let out = work(&mut conn);
        (conn, out)
    })
    .await
    .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))
}

/// The PostgreSQL schema (or SQLite file stem) of a service.
fn schema_name(prefix: &str, service: &str) -> String {
    format!("{prefix}{}", service.replace('-', "_"))
}

impl Db {
    /// Opens (creating if needed) the database of `service`.
    pub async fn open(target: &StorageTarget, service: &str) -> anyhow::Result<Db> {
        install_drivers();
        match target {
            StorageTarget::Sqlite { dir } => {
                let path = dir.join(format!("{}.db", schema_name("", service)));
                // Created owner-only before SQLite opens it: it may hold
                // password hashes and signing keys (see `files`).
                files::private_sqlite(&path)?;
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .min_connections(1)
                        // A SQLite file does not drop connections; pinging
                        // on every acquire would double each query's cost.
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(10))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute(SQLITE_PRAGMAS).await?;
                                Ok(())
                            })
                        })
                        .connect(&url)
                };
                let write = pool(1)
                    .await
                    .with_context(|| format!("Failed to open SQLite database {}", path.display()))?;
                let read = pool(4)
                    .await
                    .with_context(|| format!("Failed to open SQLite database {}", path.display()))?;
                let alive = Arc::new(());
                tokio::spawn(checkpoint(Arc::downgrade(&alive), read.clone(), write.clone()));
                Ok(Db {
                    backend: Backend::Sqlite,
                    write,
                    read,
                    _alive: Some(alive),
                    group: Some(group::Group::new()),
                })
            }
            StorageTarget::Postgres {
                url,
                schema_prefix,
                max_connections,
            } => {
                let schema = schema_name(schema_prefix, service);
                let setup = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .context("Failed to connect to PostgreSQL (check --database-url / ECOM_DATABASE_URL)")?;
                setup
                    .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
                    .await
                    .or_else(ignore_concurrent_create)
                    .with_context(|| format!("Failed to create schema {schema}"))?;
                setup.close().await;
                let search_path = format!("SET search_path TO \"{schema}\"");
                let pool = AnyPoolOptions::new()
                    .max_connections(*max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(move |conn, _| {
                        let search_path = search_path.clone();
                        Box::pin(async move {
                            conn.execute(search_path.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await
                    .context("Failed to connect to PostgreSQL")?;
                Ok(Db {
                    backend: Backend::Postgres,
                    write: pool.clone(),
                    read: pool,
                    _alive: None,
                    group: None,
                })
            }
        }
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for single-statement writes. Prefer [`Db::write`] on hot
    /// paths: a statement run here on SQLite commits on its own.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Runs one write statement as its own transaction. On SQLite it joins
    /// the writer's group (`group.rs`), so it shares a `COMMIT` with the
    /// transactions queued with it instead of paying for one of its own;
    /// on PostgreSQL it runs on its own (autocommit).
    pub async fn write<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        if self.group.is_none() {
            return query.execute(&self.write).await;
        }
        let mut tx = self.begin().await?;
        let done = query.execute(&mut *tx).await;
        tx.settle(done).await
    }

    /// [`Db::write`] for a statement that returns at most one row
    /// (`… RETURNING`).
    pub async fn write_returning<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        if self.group.is_none() {
            return query.fetch_optional(&self.write).await;
        }
        let mut tx = self.begin().await?;
        let row = query.fetch_optional(&mut *tx).await;
        tx.settle(row).await
    }

    /// Starts a write transaction. On SQLite it runs inside the writer's
    /// group transaction (`group.rs`), which takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes can
    /// never fail half-way with `SQLITE_BUSY` when another process writes.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match &self.group {
            Some(group) => Ok(Tx::new(TxInner::Grouped(group.begin(&self.write).await?))),
            None => Ok(Tx::new(TxInner::Plain(self.write.begin().await?))),
        }
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(|_| ())
    }

    /// Applies the migrations of `scope` not applied yet, in version order.
    pub async fn migrate(&self, scope: &str, migrations: &[Migration]) -> anyhow::Result<()> {
        migrate::apply(self, scope, migrations).await
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Drops every schema of the PostgreSQL database at `url` whose name starts
/// with `prefix` (the services of one [`StorageTarget::Postgres`] with that
/// `schema_prefix`: a test's or a benchmark's); returns how many. An empty
/// prefix is refused: it would name every schema, production's included.
pub async fn drop_schemas(url: &str, prefix: &str) -> anyhow::Result<usize> {
    anyhow::ensure!(!prefix.is_empty(), "refusing to drop schemas without a prefix");
    install_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("Failed to connect to PostgreSQL")?;
    let names: Vec<String> =
        sqlx::query("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)")
            .bind(prefix)
            .fetch_all(&pool)
            .await
            .context("Failed to list schemas")?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
    for name in &names {
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            name.replace('"', "\"\"")
        ))
        .execute(&pool)
        .await
        .with_context(|| format!("Failed to drop schema {name}"))?;
    }
    pool.close().await;
    Ok(names.len())
}

/// Two processes creating the same schema at once race inside PostgreSQL's
/// catalogue; the loser's error means the schema exists, which is all we want.
fn ignore_concurrent_create(err: sqlx::Error) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => Ok(Default::default()),
        _ => Err(err),
    }
}

/// True when `err` is a unique-key violation (on either backend), so
/// callers can turn it into a 409 or an idempotent no-op.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || matches!(db.code().as_deref(), Some("23505") | Some("2067") | Some("1555"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_picks_the_backend() {
        let dir = PathBuf::from("/tmp/x");
        let t = |u: Option<&str>| StorageTarget::from_url(u, dir.clone()).map(|t| t.backend()).ok();
        assert_eq!(t(None), Some(Backend::Sqlite));
        assert_eq!(t(Some("postgres://u@h/db")), Some(Backend::Postgres));
        assert_eq!(t(Some("postgresql://u@h/db")), Some(Backend::Postgres));
        assert_eq!(t(Some("sqlite:/var/ecom")), Some(Backend::Sqlite));
        assert_eq!(t(Some("mysql://h/db")), None);
    }

    #[tokio::test]
    async fn placeholders_are_numbered_on_postgres_and_anonymous_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Db::open(
            &StorageTarget::Sqlite {
                dir: dir.path().to_path_buf(),
            },
            "t",
        )
        .await
        .unwrap();
        assert_eq!(sqlite.backend().values_sql(2, 2), "(?, ?), (?, ?)");
        assert_eq!(sqlite.backend().list_sql(3), "?, ?, ?");
        assert_eq!(Backend::Postgres.values_sql(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(Backend::Postgres.list_sql(2), "$1, $2");
        let tx = sqlite.begin().await.unwrap();
        assert_eq!(Backend::of(&tx), Backend::Sqlite);
        tx.rollback().await.unwrap();
        // Anonymous placeholders bind in order.
        sqlx::query("CREATE TABLE t (a BIGINT, b TEXT)")
            .execute(sqlite.writer())
            .await
            .unwrap();
        let sql = format!(
            "INSERT INTO t (a, b) VALUES {}",
            sqlite.backend().values_sql(2, 2)
        );
        sqlx::query(&sql)
            .bind(1i64)
            .bind("one")
            .bind(2i64)
            .bind("two")
            .execute(sqlite.writer())
            .await
            .unwrap();
        let rows = sqlx::query(&format!(
            "SELECT b FROM t WHERE a IN ({}) ORDER BY a",
            sqlite.backend().list_sql(2)
        ))
        .bind(2i64)
        .bind(1i64)
        .fetch_all(sqlite.reader())
        .await
        .unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(names, ["one", "two"]);
        // A lookup by several keys: point lookups on SQLite, an `IN` list
        // on PostgreSQL; absent keys give nothing.
        assert_eq!(
            Backend::Postgres.lookup_sql("SELECT b FROM t", "a", 2),
            "SELECT b FROM t WHERE a IN ($1, $2)"
        );
        let sql = sqlite.backend().lookup_sql("SELECT b FROM t", "a", 3);
        assert_eq!(
            sql,
            "SELECT b FROM t WHERE a = ? UNION ALL SELECT b FROM t WHERE a = ? UNION ALL SELECT b FROM t WHERE a = ?"
        );
        let rows = sqlx::query(&sql)
            .bind(2i64)
            .bind(3i64)
            .bind(1i64)
            .fetch_all(sqlite.reader())
            .await
            .unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(names, ["two", "one"]);
    }

    async fn count(db: &Db) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM t")
            .fetch_one(db.reader())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    /// SQLite statements run on the awaiting thread (`vendor/README.md`):
    /// a transaction dropped without a commit, or a wait for the writer
    /// given up, must leave the one writer connection clean for the next.
    #[tokio::test]
    async fn dropped_transactions_and_abandoned_waits_leave_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let target = StorageTarget::Sqlite {
            dir: dir.path().to_path_buf(),
        };
        let db = Db::open(&target, "t").await.unwrap();
        sqlx::query("CREATE TABLE t (v BIGINT)")
            .execute(db.writer())
            .await
            .unwrap();
        let insert = |v: i64| sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(v);

        // Dropped mid-way: rolled back.
        let mut tx = db.begin().await.unwrap();
        insert(1).execute(&mut *tx).await.unwrap();
        drop(tx);
        assert_eq!(count(&db).await, 0);

        // A second transaction waits for the writer; giving up the wait
        // changes nothing, and the first commits as usual.
        let mut first = db.begin().await.unwrap();
        insert(2).execute(&mut *first).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(50), db.begin()).await;
        assert!(waited.is_err(), "the writer is taken: the wait must time out");
        first.commit().await.unwrap();
        assert_eq!(count(&db).await, 1);

        let mut next = db.begin().await.unwrap();
        insert(3).execute(&mut *next).await.unwrap();
        next.commit().await.unwrap();
        assert_eq!(count(&db).await, 2);
    }

    #[test]
    fn a_busy_database_is_checkpointed_every_tick_and_an_idle_one_once_a_restart_interval_without_its_writer()
    {
        let mut schedule = Schedule::default();
        // Busy: the WAL changes every round.
        let mut plan = Vec::new();
        for frames in 1..=20 {
            plan.push(schedule.next());
            schedule.saw(frames);
        }
        let restart_every = RESTART_EVERY as usize;
        for (i, step) in plan.iter().enumerate() {
            assert_eq!(*step, Some((i + 1) % restart_every == 0), "busy tick {}", i + 1);
        }
        // Idle: the same frame count round after round.
        let mut plan = Vec::new();
        for _ in 0..40 {
            let step = schedule.next();
            if step.is_some() {
                schedule.saw(20);
            }
            plan.push(step);
        }
        // Three rounds find the WAL unchanged (the last busy round left 20
        // frames); then only every RESTART_EVERY-th tick (ticks 21 on are
        // idle), never restarting, even on a tick that would restart a busy
        // database.
        assert!(plan[..3].iter().all(|s| s == &Some(false)), "{plan:?}");
        let later: Vec<usize> = (3..plan.len()).filter(|i| plan[*i].is_some()).collect();
        let expected: Vec<usize> = (3..plan.len())
            .filter(|i| (21 + i) % restart_every == 0)
            .collect();
        assert!(expected.len() >= 4, "{expected:?}");
        assert_eq!(later, expected, "{plan:?}");
        assert!(later.iter().all(|i| plan[*i] == Some(false)), "{plan:?}");
        // Writes again: back to every tick.
        schedule.saw(21);
        assert!(schedule.next().is_some());
        schedule.saw(22);
        assert!(schedule.next().is_some());
    }

    #[tokio::test]
    async fn a_checkpoint_round_restarts_the_wal_under_constant_writes() {
        let dir = tempfile::tempdir().unwrap();
        let target = StorageTarget::Sqlite {
            dir: dir.path().to_path_buf(),
        };
        let mut db = Db::open(&target, "t").await.unwrap();
        db._alive.take(); // no background rounds: this test runs its own
        sqlx::query("CREATE TABLE t (v TEXT)")
            .execute(db.writer())
            .await
            .unwrap();
        // The WAL header counts restarts (its checkpoint sequence number).
        let wal = dir.path().join("t.db-wal");
        let restarts = || {
            let bytes = std::fs::read(&wal).unwrap();
            u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
        };
        // A writer that never pauses, as under load: a passive checkpoint
        // alone never catches up with it, so the WAL would only grow.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = tokio::spawn({
            let (db, stop) = (db.clone(), stop.clone());
            async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sqlx::query("INSERT INTO t (v) VALUES ($1)")
                        .bind("x".repeat(4000))
                        .execute(db.writer())
                        .await
                        .unwrap();
                }
            }
        });
        while std::fs::metadata(&wal).map_or(0, |m| m.len()) < 200 * 4096 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = restarts();
        checkpoint_round(db.reader(), db.writer(), true).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.await.unwrap();
        assert!(restarts() > before, "the WAL did not restart");
    }
}
