// ecom patch: this file replaces upstream's `worker.rs`.
//
// Upstream runs each SQLite connection on a dedicated thread and sends
// every statement there over a channel, so each statement costs two or
// three thread wake-ups. Here a statement runs on the thread of the task
// that awaits it, under the connection's async mutex. SQLite statements of
// an OLTP workload take microseconds, less than the wake-ups they replace.
//
// Three rules keep that from blocking or bloating the caller:
//
// - Rows stream. A query is an `ExecuteStream` that steps its statement
//   when polled, at most `row_channel_size` results (50 by default) ahead
//   of the consumer: a large result set never sits whole in memory, and a
//   stream dropped early resets its statement at once, ending its read
//   transaction and freeing the connection.
// - Lock waits are asynchronous. SQLite's own busy timeout is 0 on every
//   connection, so no step ever sleeps on the calling thread. A step that
//   meets `SQLITE_BUSY` where SQLite's busy handler would have waited (no
//   row returned yet, and no transaction open on the connection once the
//   statement is reset) is retried after an async sleep, on SQLite's default
//   schedule (1, 2, 5, 10 … 100 ms), until the connection's `busy_timeout`
//   (5 s by default) has passed; then the error is returned, as SQLite
//   would have returned it. A `BEGIN` is retried the same way, a `COMMIT`
//   always (SQLite documents both as retryable). A busy step inside a
//   transaction that already holds a snapshot is returned at once: SQLite
//   would not wait there either (waiting cannot help a stale snapshot; the
//   caller must retry the whole transaction). A `PRAGMA busy_timeout = N`
//   sent as SQL makes SQLite sleep on the calling thread again: only do
//   that on a blocking-pool thread, and set it back to 0.
// - Long loops yield. Every `YIELD_EVERY` operations or batches of rows,
//   the task yields to its executor, so a loop of statements (each of which
//   completes without returning `Pending`) cannot starve other tasks.
//
// An operation that is not a query completes within one poll once it
// holds the mutex, except while it waits for a lock; cancelled during that
// wait, it has changed nothing (the statement it waits for is not begun).
// A rollback asked for from `Drop` while the mutex is held elsewhere is
// recorded and run before the next operation.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use futures_core::Stream;
use futures_intrusive::sync::{Mutex, MutexGuard};
use libsqlite3_sys::{sqlite3_txn_state, SQLITE_BUSY, SQLITE_TXN_NONE};

use sqlx_core::describe::Describe;
use sqlx_core::error::Error;
use sqlx_core::logger::QueryLogger;
use sqlx_core::transaction::{
    begin_ansi_transaction_sql, commit_ansi_transaction_sql, rollback_ansi_transaction_sql,
};
use sqlx_core::Either;

use crate::connection::describe::describe;
use crate::connection::establish::EstablishParams;
use crate::connection::{ConnectionHandle, ConnectionState, Statements};
use crate::statement::VirtualStatement;
use crate::{Sqlite, SqliteArguments, SqliteQueryResult, SqliteRow, SqliteStatement};

use super::serialize::{deserialize, serialize, SchemaName, SqliteOwnedBuf};

pub(crate) struct ConnectionWorker {
    pub(crate) shared: Arc<WorkerSharedState>,
}

pub(crate) struct WorkerSharedState {
    transaction_depth: AtomicUsize,
    cached_statements_size: AtomicUsize,
    /// A transaction was dropped while the connection was locked: roll it
    /// back before anything else runs on the connection.
    rollback_pending: AtomicBool,
    /// How long an operation may wait, asynchronously, for a lock held by
    /// another connection: the connection's `busy_timeout` option.
    busy_timeout: Duration,
    pub(crate) conn: Mutex<ConnectionState>,
}

impl WorkerSharedState {
    pub(crate) fn get_transaction_depth(&self) -> usize {
        self.transaction_depth.load(Ordering::Acquire)
    }

    pub(crate) fn get_cached_statements_size(&self) -> usize {
        self.cached_statements_size.load(Ordering::Acquire)
    }

    fn rollback(&self, conn: &mut ConnectionState) -> Result<(), Error> {
        let depth = self.transaction_depth.load(Ordering::Acquire);
        if depth == 0 {
            return Ok(());
        }
        conn.handle.exec(rollback_ansi_transaction_sql(depth))?;
        self.transaction_depth.fetch_sub(1, Ordering::Release);
        Ok(())
    }

    /// The connection once it is free, after any rollback left pending by
    /// a dropped transaction.
    async fn lock(&self) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        self.lock_after(yield_due()).await
    }

    /// [`Self::lock`], yielding first if `yield_first`.
    async fn lock_after(
        &self,
        yield_first: bool,
    ) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        if yield_first {
            sqlx_core::rt::yield_now().await;
        }
        let mut conn = self.conn.lock().await;
        self.settle(&mut conn)?;
        Ok(conn)
    }

    fn settle(&self, conn: &mut ConnectionState) -> Result<(), Error> {
        if self.rollback_pending.swap(false, Ordering::AcqRel) {
            self.rollback(conn)?;
        }
        Ok(())
    }

    /// Runs `op`, and again after an async wait while it fails with
    /// `SQLITE_BUSY` where SQLite's own busy handler would have waited:
    /// with no transaction open on the connection (or always, for a
    /// `COMMIT`), until `busy_timeout` has passed.
    async fn retry_busy<T>(
        &self,
        conn: &mut ConnectionState,
        even_in_transaction: bool,
        mut op: impl FnMut(&mut ConnectionState) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut wait = BusyWait::new(self.busy_timeout);
        loop {
            match op(conn) {
                Err(e) if is_busy(&e) && (even_in_transaction || no_transaction(&conn.handle)) => {
                    match wait.next() {
                        Some(pause) => sqlx_core::rt::sleep(pause).await,
                        None => return Err(e),
                    }
                }
                result => return result,
            }
        }
    }
}

/// Operations or row batches a thread runs between two yields to its
/// executor.
const YIELD_EVERY: u32 = 32;

thread_local! {
    static YIELD_COUNTDOWN: std::cell::Cell<u32> = const { std::cell::Cell::new(YIELD_EVERY) };
}

/// Counts one operation; true when the thread should yield before it.
///
/// The yield is Tokio's, which needs a Tokio context: every ecom thread
/// that runs statements has one (executor and blocking-pool threads).
fn yield_due() -> bool {
    YIELD_COUNTDOWN.with(|n| {
        let left = n.get().saturating_sub(1);
        n.set(if left == 0 { YIELD_EVERY } else { left });
        left == 0
    })
}

/// SQLite's default busy handler's waits, in ms; 100 ms after these.
const BUSY_WAITS_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

/// The waits of one operation for a lock, within its budget.
struct BusyWait {
    budget: Duration,
    deadline: Option<Instant>,
    waits: usize,
}

impl BusyWait {
    fn new(budget: Duration) -> Self {
        Self {
            budget,
            deadline: None,
            waits: 0,
        }
    }

    /// How long to wait before the next try, or `None` once the budget
    /// (counted from the first busy try) is spent.
    fn next(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + self.budget);
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return None;
        }
        let ms = BUSY_WAITS_MS.get(self.waits).copied().unwrap_or(100);
        self.waits += 1;
        Some(Duration::from_millis(ms).min(left))
    }
}

/// `SQLITE_BUSY`, with any extended code (`_RECOVERY`, `_SNAPSHOT`, …).
fn is_busy(error: &Error) -> bool {
    match error {
        Error::Database(e) => e
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_BUSY),
        _ => false,
    }
}

/// No transaction holds a lock or a snapshot on the connection. Asked after
/// a failed statement is reset, this is true in autocommit mode (the
/// statement was rolled back whole; an autocommit statement never commits
/// part of its work) and in an explicit transaction that has not read yet;
/// false in one that has. Only then does SQLite's own busy handler wait,
/// and only then is running the statement again the same as running it
/// the first time.
fn no_transaction(handle: &ConnectionHandle) -> bool {
    // SAFETY: the caller holds the connection's mutex; a null schema asks
    // about every attached database.
    unsafe { sqlite3_txn_state(handle.as_ptr(), std::ptr::null()) == SQLITE_TXN_NONE }
}

type ExecuteResult = Result<Either<SqliteQueryResult, SqliteRow>, Error>;

impl ConnectionWorker {
    pub(crate) async fn establish(params: EstablishParams) -> Result<Self, Error> {
        let busy_timeout = params.busy_timeout;
        let mut conn = params.establish()?;
        // Lock waits are this worker's, asynchronous: SQLite's would sleep
        // on the calling thread.
        conn.handle.exec("PRAGMA busy_timeout = 0")?;
        Ok(Self {
            shared: Arc::new(WorkerSharedState {
                transaction_depth: AtomicUsize::new(0),
                cached_statements_size: AtomicUsize::new(0),
                rollback_pending: AtomicBool::new(false),
                busy_timeout,
                conn: Mutex::new(conn, true),
            }),
        })
    }

    pub(crate) async fn prepare(&mut self, query: &str) -> Result<SqliteStatement<'static>, Error> {
        let shared = &*self.shared;
        let mut conn = shared.lock().await?;
        let prepared = shared
            .retry_busy(&mut conn, false, |conn| prepare(conn, query))
            .await;
        update_cached_statements_size(&conn, &shared.cached_statements_size);
        prepared
    }

    pub(crate) async fn describe(&mut self, query: &str) -> Result<Describe<Sqlite>, Error> {
        let shared = &*self.shared;
        let mut conn = shared.lock().await?;
        shared
            .retry_busy(&mut conn, false, |conn| describe(conn, query))
            .await
    }

    /// The results of `query`, produced as the stream is polled (see the
    /// top of this file).
    pub(crate) fn execute<'a>(
        &'a mut self,
        query: &'a str,
        args: Option<SqliteArguments<'a>>,
        chan_size: usize,
        persistent: bool,
        limit: Option<usize>,
    ) -> ExecuteStream<'a> {
        ExecuteStream {
            shared: &self.shared,
            query,
            args,
            persistent,
            batch: chan_size.max(1),
            limit,
            rows_returned: 0,
            statement_rows: 0,
            args_used: 0,
            goto_next: true,
            wait: BusyWait::new(self.shared.busy_timeout),
            logger: None,
            buffer: VecDeque::new(),
            state: State::Start,
        }
    }

    pub(crate) async fn begin(
        &mut self,
        statement: Option<Cow<'static, str>>,
    ) -> Result<(), Error> {
        let shared = &*self.shared;
        let mut conn = shared.lock().await?;
        let depth = shared.transaction_depth.load(Ordering::Acquire);
        let statement = match statement {
            // custom `BEGIN` statements are not allowed if we're already in
            // a transaction (we need to issue a `SAVEPOINT` instead)
            Some(_) if depth > 0 => return Err(Error::InvalidSavePointStatement),
            Some(statement) => statement,
            None => begin_ansi_transaction_sql(depth),
        };
        shared
            .retry_busy(&mut conn, false, |conn| conn.handle.exec(&*statement))
            .await?;
        shared.transaction_depth.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        let shared = &*self.shared;
        let mut conn = shared.lock().await?;
        let depth = shared.transaction_depth.load(Ordering::Acquire);
        if depth > 0 {
            shared
                .retry_busy(&mut conn, true, |conn| {
                    conn.handle.exec(commit_ansi_transaction_sql(depth))
                })
                .await?;
            shared.transaction_depth.fetch_sub(1, Ordering::Release);
        }
        Ok(())
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        let mut conn = self.shared.lock().await?;
        self.shared.rollback(&mut conn)
    }

    /// Rolls back from `Drop`: now if the connection is free, else before
    /// the next operation on it.
    pub(crate) fn start_rollback(&mut self) -> Result<(), Error> {
        match self.shared.conn.try_lock() {
            Some(mut conn) => self.shared.rollback(&mut conn),
            None => {
                self.shared.rollback_pending.store(true, Ordering::Release);
                Ok(())
            }
        }
    }

    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        self.shared.lock().await.map(drop)
    }

    pub(crate) async fn deserialize(
        &mut self,
        schema: Option<SchemaName>,
        data: SqliteOwnedBuf,
        read_only: bool,
    ) -> Result<(), Error> {
        let mut conn = self.shared.lock().await?;
        deserialize(&mut conn, schema, data, read_only)
    }

    pub(crate) async fn serialize(
        &mut self,
        schema: Option<SchemaName>,
    ) -> Result<SqliteOwnedBuf, Error> {
        let mut conn = self.shared.lock().await?;
        serialize(&mut conn, schema)
    }

    pub(crate) async fn clear_cache(&mut self) -> Result<(), Error> {
        let mut conn = self.shared.lock().await?;
        conn.statements.clear();
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        Ok(())
    }

    pub(crate) async fn unlock_db(&mut self) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        self.shared.lock().await
    }

    /// Nothing to stop: the connection closes when its last handle drops.
    pub(crate) fn shutdown(&mut self) -> impl Future<Output = Result<(), Error>> {
        std::future::ready(Ok(()))
    }
}

/// The results of one query, stepped as they are asked for.
///
/// The connection stays locked from the first poll until the query's last
/// result is produced or the stream is dropped; dropping it resets the
/// statement.
pub(crate) struct ExecuteStream<'a> {
    shared: &'a WorkerSharedState,
    query: &'a str,
    args: Option<SqliteArguments<'a>>,
    persistent: bool,
    /// Results stepped per poll at most: the bound on what is buffered.
    batch: usize,
    limit: Option<usize>,
    rows_returned: usize,
    /// Rows the current statement of the query has returned.
    statement_rows: usize,
    /// A query can hold several statements; arguments bound so far.
    args_used: usize,
    goto_next: bool,
    wait: BusyWait,
    logger: Option<QueryLogger<'a>>,
    buffer: VecDeque<ExecuteResult>,
    state: State<'a>,
}

enum State<'a> {
    /// Not polled yet.
    Start,
    /// Waiting for the connection.
    Locking(BoxFuture<'a, Result<MutexGuard<'a, ConnectionState>, Error>>),
    /// The statement has started and has more to produce.
    Running(MutexGuard<'a, ConnectionState>),
    /// Paused, the connection in hand: waiting for a lock, or yielding.
    Paused(MutexGuard<'a, ConnectionState>, BoxFuture<'static, ()>),
    /// Every result produced (or the first error).
    Done,
}

/// What one batch of steps ended with.
enum Batch {
    /// The batch is full; the query has more.
    Full,
    /// The query is finished (or failed): its statement is reset.
    Finished,
    /// `SQLITE_BUSY` where a retry is safe: the statement is reset; step
    /// it again after this long.
    Busy(Duration),
}

impl<'a> ExecuteStream<'a> {
    /// Steps up to one batch into the buffer.
    fn fill(&mut self, handle: &mut ConnectionHandle, statement: &mut VirtualStatement) -> Batch {
        for _ in 0..self.batch {
            match self.step(handle, statement) {
                None => {
                    let _ = statement.reset();
                    return Batch::Finished;
                }
                Some(Ok(Either::Right(row))) => {
                    self.buffer.push_back(Ok(Either::Right(row)));
                    self.statement_rows += 1;
                    self.rows_returned += 1;
                    if self.limit.is_some_and(|limit| self.rows_returned >= limit) {
                        let _ = statement.reset();
                        return Batch::Finished;
                    }
                }
                Some(Ok(done)) => {
                    self.buffer.push_back(Ok(done));
                    self.statement_rows = 0;
                }
                Some(Err(e)) => {
                    if self.statement_rows == 0 && is_busy(&e) {
                        if let Some(current) = statement.current() {
                            // Returns the error in hand. In autocommit mode
                            // this rolls the statement back whole.
                            let _ = current.handle.reset();
                        }
                        if no_transaction(handle) {
                            if let Some(pause) = self.wait.next() {
                                return Batch::Busy(pause);
                            }
                        }
                    }
                    self.buffer.push_back(Err(e));
                    let _ = statement.reset();
                    return Batch::Finished;
                }
            }
        }
        Batch::Full
    }

    /// The next result of the query (upstream's `ExecuteIter::next`).
    fn step(
        &mut self,
        handle: &mut ConnectionHandle,
        statement: &mut VirtualStatement,
    ) -> Option<ExecuteResult> {
        let statement = if self.goto_next {
            // A failure here (`SQLITE_BUSY` reading the schema, say) leaves
            // the statement where it was: preparing again continues.
            let statement = match statement.prepare_next(handle) {
                Ok(Some(statement)) => statement,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            self.goto_next = false;

            // sanity check: ensure the VM is reset and the bindings are cleared
            if let Err(e) = statement.handle.reset() {
                return Some(Err(e.into()));
            }
            statement.handle.clear_bindings();

            if let Some(args) = &self.args {
                match args.bind(statement.handle, self.args_used) {
                    Ok(used) => self.args_used += used,
                    Err(e) => return Some(Err(e)),
                }
            }
            statement
        } else {
            statement.current()?
        };

        match statement.handle.step() {
            Ok(true) => {
                if let Some(logger) = &mut self.logger {
                    logger.increment_rows_returned();
                }
                Some(Ok(Either::Right(SqliteRow::current(
                    statement.handle,
                    statement.columns,
                    statement.column_names,
                ))))
            }
            Ok(false) => {
                let last_insert_rowid = handle.last_insert_rowid();
                let changes = statement.handle.changes();
                if let Some(logger) = &mut self.logger {
                    logger.increase_rows_affected(changes);
                }
                self.goto_next = true;
                Some(Ok(Either::Left(SqliteQueryResult {
                    changes,
                    last_insert_rowid,
                })))
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Runs one batch on the locked connection and decides what follows.
    fn run(&mut self, mut conn: MutexGuard<'a, ConnectionState>, first: bool) -> State<'a> {
        let state = &mut *conn;
        let statement = if first {
            // Any rollback left pending (`lock` did it already when the
            // connection was waited for).
            if let Err(e) = self.shared.settle(state) {
                self.buffer.push_back(Err(e));
                return State::Done;
            }
            self.logger = Some(QueryLogger::new(self.query, state.log_settings.clone()));
            state.statements.get(self.query, self.persistent)
        } else {
            started(&mut state.statements, self.query, self.persistent)
        };
        let statement = match statement {
            Ok(statement) => statement,
            Err(e) => {
                self.buffer.push_back(Err(e));
                return State::Done;
            }
        };
        let batch = self.fill(&mut state.handle, statement);
        if first {
            update_cached_statements_size(state, &self.shared.cached_statements_size);
        }
        match batch {
            Batch::Full => State::Running(conn),
            Batch::Finished => {
                self.logger = None;
                State::Done
            }
            Batch::Busy(pause) => State::Paused(conn, Box::pin(sqlx_core::rt::sleep(pause))),
        }
    }
}

/// The statement a stream started, on its connection.
fn started<'s>(
    statements: &'s mut Statements,
    query: &str,
    persistent: bool,
) -> Result<&'s mut VirtualStatement, Error> {
    let statement = if !persistent || !statements.cached.is_enabled() {
        statements.temp.as_mut()
    } else {
        statements.cached.get_mut(query)
    };
    statement.ok_or_else(|| err_protocol!("the statement of a running query left the cache"))
}

impl<'a> Stream for ExecuteStream<'a> {
    type Item = ExecuteResult;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(result) = this.buffer.pop_front() {
                return Poll::Ready(Some(result));
            }
            match std::mem::replace(&mut this.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Start => {
                    // The uncontended path takes the connection without a
                    // future (and its allocation).
                    let yield_first = yield_due();
                    let free = match yield_first {
                        true => None,
                        false => this.shared.conn.try_lock(),
                    };
                    this.state = match free {
                        Some(conn) => this.run(conn, true),
                        None => State::Locking(Box::pin(this.shared.lock_after(yield_first))),
                    };
                }
                State::Locking(mut lock) => match lock.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Locking(lock);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(conn)) => this.state = this.run(conn, true),
                },
                State::Running(conn) => {
                    this.state = if yield_due() {
                        State::Paused(conn, Box::pin(sqlx_core::rt::yield_now()))
                    } else {
                        this.run(conn, false)
                    };
                }
                State::Paused(conn, mut pause) => match pause.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Paused(conn, pause);
                        return Poll::Pending;
                    }
                    Poll::Ready(()) => this.state = this.run(conn, false),
                },
            }
        }
    }
}

impl Drop for ExecuteStream<'_> {
    fn drop(&mut self) {
        // Dropped before its end: stop the statement, which ends its read
        // (or, in autocommit mode, its write) transaction.
        if let State::Running(conn) | State::Paused(conn, _) = &mut self.state {
            if let Ok(statement) = started(&mut conn.statements, self.query, self.persistent) {
                let _ = statement.reset();
            }
        }
    }
}

fn prepare(conn: &mut ConnectionState, query: &str) -> Result<SqliteStatement<'static>, Error> {
    // prepare statement object (or checkout from cache)
    let statement = conn.statements.get(query, true)?;

    let mut parameters = 0;
    let mut columns = None;
    let mut column_names = None;

    while let Some(statement) = statement.prepare_next(&mut conn.handle)? {
        parameters += statement.handle.bind_parameter_count();

        // the first non-empty statement is chosen as the statement we pull columns from
        if !statement.columns.is_empty() && columns.is_none() {
            columns = Some(Arc::clone(statement.columns));
            column_names = Some(Arc::clone(statement.column_names));
        }
    }

    Ok(SqliteStatement {
        sql: Cow::Owned(query.to_string()),
        columns: columns.unwrap_or_default(),
        column_names: column_names.unwrap_or_default(),
        parameters,
    })
}

fn update_cached_statements_size(conn: &ConnectionState, size: &AtomicUsize) {
    size.store(conn.statements.len(), Ordering::Release);
}
