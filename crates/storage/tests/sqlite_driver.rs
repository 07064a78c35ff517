//! The patched SQLite driver (`vendor/sqlx-sqlite`, `vendor/README.md`):
//! it is the one in the build, statements run on the awaiting thread, rows
//! stream, and a lock held by another process is waited for without
//! holding an executor thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_storage::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use ecom_storage::sqlx::{self, Connection as _, Executor as _, Row as _};
use ecom_storage::{Db, StorageTarget};
use futures::StreamExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
}

/// Another connection, on its own thread (to SQLite, as good as another
/// process), holding the write lock of a database.
struct Holder {
    release: mpsc::Sender<()>,
    thread: JoinHandle<bool>,
}

impl Holder {
    /// Takes `path`'s write lock (`BEGIN IMMEDIATE` and an insert into
    /// `table`) and returns once it holds it. It lets go when released, or
    /// after 30 s so that a failing test cannot hang.
    fn hold(path: &Path, table: &str) -> Holder {
        let (path, insert) = (path.to_path_buf(), format!("INSERT INTO {table} (v) VALUES (0)"));
        let (holding_tx, holding) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut conn = SqliteConnection::connect_with(&options(&path)).await.unwrap();
                conn.execute("BEGIN IMMEDIATE").await.unwrap();
                conn.execute(insert.as_str()).await.unwrap();
                holding_tx.send(()).unwrap();
                let released = release_rx.recv_timeout(Duration::from_secs(30)).is_ok();
                conn.execute("COMMIT").await.unwrap();
                released
            })
        });
        holding.recv().expect("the holder took the lock");
        Holder { release, thread }
    }

    /// Lets go; true if it still held the lock until now (was released,
    /// not timed out).
    fn release(self) -> bool {
        let _ = self.release.send(());
        self.thread.join().unwrap()
    }
}

async fn sqlite_db(dir: &Path, service: &str) -> Db {
    Db::open(
        &StorageTarget::Sqlite {
            dir: dir.to_path_buf(),
        },
        service,
    )
    .await
    .unwrap()
}

fn db_file(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.db"))
}

/// A checkpoint that restarts the WAL from the top; 1 if a reader was in
/// the way.
async fn restart_wal(conn: &mut SqliteConnection) -> i64 {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(conn)
        .await
        .unwrap()
        .get(0)
}

async fn count(db: &Db, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db.reader())
        .await
        .unwrap()
        .get(0)
}

/// Upstream's driver runs every statement on a thread of its own per
/// connection; the patched one on the thread that awaits it. A SQLite
/// hook runs where the statement runs.
#[tokio::test(flavor = "current_thread")]
async fn the_patched_driver_runs_statements_on_the_awaiting_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = SqliteConnection::connect_with(&options(&dir.path().join("t.db")))
        .await
        .unwrap();
    conn.execute("CREATE TABLE t (v INTEGER)").await.unwrap();
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    conn.lock_handle().await.unwrap().set_update_hook({
        let ran_on = ran_on.clone();
        move |_| ran_on.lock().unwrap().push(thread::current().id())
    });
    sqlx::query("INSERT INTO t (v) VALUES ($1)")
        .bind(1i64)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(*ran_on.lock().unwrap(), [thread::current().id()]);
}

/// SQLite's own busy handler would sleep on the executor thread: on the
/// storage layer's connections it is off (upstream's driver sets 5,000 ms),
/// and the driver's async waits take its place (tests below).
#[tokio::test]
async fn sqlite_itself_never_sleeps_on_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path(), "t").await;
    for pool in [db.reader(), db.writer()] {
        let ms: i64 = sqlx::query("PRAGMA busy_timeout")
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(ms, 0);
    }
}

/// `fetch` steps the statement as rows are taken, a batch
/// (`row_channel_size`, 50) at a time: the first row of 200,000 costs a
/// batch's work, not the whole result's. The open statement holds its read
/// snapshot (a checkpoint cannot restart the WAL past it); dropping the
/// stream early ends it and frees the connection.
#[tokio::test(flavor = "current_thread")]
async fn fetch_streams_in_batches_and_a_dropped_stream_ends_its_statement() {
    const ROWS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut writer = SqliteConnection::connect_with(&options(&path).pragma("wal_autocheckpoint", "0"))
        .await
        .unwrap();
    writer.execute("CREATE TABLE t (v INTEGER)").await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < $1) \
         INSERT INTO t (v) SELECT v FROM n",
    )
    .bind(ROWS)
    .execute(&mut writer)
    .await
    .unwrap();

    let mut reader = SqliteConnection::connect_with(&options(&path)).await.unwrap();
    // SQLite calls this every 100 virtual-machine instructions it runs.
    let work = Arc::new(AtomicU64::new(0));
    reader.lock_handle().await.unwrap().set_progress_handler(100, {
        let work = work.clone();
        move || {
            work.fetch_add(1, Ordering::Relaxed);
            true
        }
    });

    // The whole result, for the work it takes.
    let mut all = sqlx::query("SELECT v FROM t").fetch(&mut reader);
    let mut seen = 0i64;
    while let Some(row) = all.next().await {
        seen += row.unwrap().get::<i64, _>(0).signum();
    }
    drop(all);
    assert_eq!(seen, ROWS);
    let whole = work.swap(0, Ordering::Relaxed);

    // Its first rows.
    let mut first = sqlx::query("SELECT v FROM t").fetch(&mut reader);
    for v in 1..=10i64 {
        assert_eq!(first.next().await.unwrap().unwrap().get::<i64, _>(0), v);
    }
    let ten = work.load(Ordering::Relaxed);
    assert!(
        ten * 200 < whole,
        "ten rows cost {ten} units of work, all {ROWS} rows {whole}: the result was not streamed"
    );
    let busy: i64 = restart_wal(&mut writer).await;
    assert_eq!(busy, 1, "an open statement keeps its snapshot");

    drop(first);
    let busy: i64 = restart_wal(&mut writer).await;
    assert_eq!(busy, 0, "a dropped stream ends its statement");
    assert!(work.load(Ordering::Relaxed) <= ten + 1);
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM t")
        .fetch_one(&mut reader)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
}

/// The case: another process holds one service's database
/// (`BEGIN IMMEDIATE`) while a one-thread runtime serves requests. The
/// writes that need that database wait without holding the thread, every
/// request on another database completes while they wait, and the waiting
/// writes go through once the lock is released.
#[tokio::test(flavor = "current_thread")]
async fn a_writer_held_by_another_process_does_not_stall_other_databases() {
    let dir = tempfile::tempdir().unwrap();
    let held = sqlite_db(dir.path(), "held").await;
    let free = sqlite_db(dir.path(), "free").await;
    for db in [&held, &free] {
        sqlx::query("CREATE TABLE t (v BIGINT)")
            .execute(db.writer())
            .await
            .unwrap();
    }
    // As a second process would, a second handle on the held database.
    let held_too = sqlite_db(dir.path(), "held").await;

    let holder = Holder::hold(&db_file(dir.path(), "held"), "t");

    // A write transaction (`BEGIN IMMEDIATE` meets the lock) and a single
    // statement (its step meets it), each in a task of its own. On this
    // runtime a task only runs when the test's task waits, so once each has
    // said it started, it has tried the lock at least once.
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let in_transaction = tokio::spawn({
        let (db, started) = (held.clone(), started_tx.clone());
        async move {
            started.send(()).unwrap();
            let mut tx = db.begin().await?;
            sqlx::query("INSERT INTO t (v) VALUES (1)")
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
    });
    let single = tokio::spawn({
        let (db, started) = (held_too.clone(), started_tx);
        async move {
            started.send(()).unwrap();
            sqlx::query("INSERT INTO t (v) VALUES (2)")
                .execute(db.writer())
                .await
                .map(drop)
        }
    });
    started.recv().await.unwrap();
    started.recv().await.unwrap();

    // Unrelated requests: writes and reads on the other database, reads on
    // the held one (WAL readers do not wait for the writer).
    for v in 0..50i64 {
        let mut tx = free.begin().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES ($1)")
            .bind(v)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&free, "t").await, v + 1);
        assert_eq!(count(&held, "t").await, 0);
    }
    assert!(
        !in_transaction.is_finished() && !single.is_finished(),
        "the writes to the held database ended before it was released"
    );

    assert!(holder.release(), "the holder gave up before the test released it");
    in_transaction.await.unwrap().unwrap();
    single.await.unwrap().unwrap();
    assert_eq!(count(&held, "t").await, 3);
}

/// A lock held for longer than the connection's `busy_timeout` fails the
/// statement with `SQLITE_BUSY` ("database is locked"), as SQLite's own
/// wait did.
#[tokio::test(flavor = "current_thread")]
async fn a_lock_held_past_the_busy_timeout_fails_with_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut conn = SqliteConnection::connect_with(&options(&path).busy_timeout(Duration::from_millis(50)))
        .await
        .unwrap();
    conn.execute("CREATE TABLE t (v INTEGER)").await.unwrap();
    let holder = Holder::hold(&path, "t");
    let err = sqlx::query("INSERT INTO t (v) VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("5"),
        "{err}"
    );
    assert!(holder.release());
    // The connection is fine afterwards.
    sqlx::query("INSERT INTO t (v) VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// A write in a transaction that has already read cannot wait for the
/// lock: its snapshot would be stale once the other writer commits. SQLite
/// answers `SQLITE_BUSY` at once there, and so does the driver, without
/// spending its budget (the caller retries the whole transaction).
#[tokio::test(flavor = "current_thread")]
async fn a_transaction_that_has_read_is_not_retried_on_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut conn = SqliteConnection::connect_with(&options(&path).busy_timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    conn.execute("CREATE TABLE t (v INTEGER)").await.unwrap();
    let mut tx = conn.begin().await.unwrap(); // deferred
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM t")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let holder = Holder::hold(&path, "t");
    let err = sqlx::query("INSERT INTO t (v) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("5"),
        "{err}"
    );
    // Answered while the lock was still held (a retry would have waited
    // for the holder's own 30 s timeout).
    assert!(holder.release(), "the statement waited for the lock");
    tx.rollback().await.unwrap();
}
