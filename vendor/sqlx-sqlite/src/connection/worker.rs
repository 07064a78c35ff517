// ecom patch: this file replaces upstream's `worker.rs`.
//
// Upstream runs each SQLite connection on a dedicated thread and sends
// every statement there over a channel, so each statement costs two or
// three thread wake-ups. Here the statement runs on the calling task's
// thread, under the connection's async mutex, and its results are handed
// back through a channel that is already full when the caller reads it.
// SQLite statements of an OLTP workload take microseconds, less than the
// wake-ups they replace; the price is that a statement that waits for a
// lock (`busy_timeout`) blocks its executor thread while it waits.
//
// Every operation finishes within one poll once it holds the mutex, so a
// cancelled future never leaves a statement half done. A rollback asked
// for from `Drop` while the mutex is held elsewhere is recorded and run
// before the next operation.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_intrusive::sync::{Mutex, MutexGuard};

use sqlx_core::describe::Describe;
use sqlx_core::error::Error;
use sqlx_core::transaction::{
    begin_ansi_transaction_sql, commit_ansi_transaction_sql, rollback_ansi_transaction_sql,
};
use sqlx_core::Either;

use crate::connection::describe::describe;
use crate::connection::establish::EstablishParams;
use crate::connection::execute;
use crate::connection::ConnectionState;
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
}

/// Operations a thread runs between two yields to its executor.
const YIELD_EVERY: u32 = 32;

thread_local! {
    static YIELD_COUNTDOWN: std::cell::Cell<u32> = const { std::cell::Cell::new(YIELD_EVERY) };
}

type ExecuteResult = Result<Either<SqliteQueryResult, SqliteRow>, Error>;

impl ConnectionWorker {
    pub(crate) async fn establish(params: EstablishParams) -> Result<Self, Error> {
        let conn = params.establish()?;
        Ok(Self {
            shared: Arc::new(WorkerSharedState {
                transaction_depth: AtomicUsize::new(0),
                cached_statements_size: AtomicUsize::new(0),
                rollback_pending: AtomicBool::new(false),
                conn: Mutex::new(conn, true),
            }),
        })
    }

    /// The connection, after any rollback left pending by a dropped
    /// transaction.
    async fn lock(&self) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        // A statement completes without ever returning `Pending`, so a loop
        // of them would never give its executor thread back to other tasks
        // (on a current-thread runtime, never at all): every so often, yield.
        // Tokio's yield, which needs a Tokio context: every ecom thread that
        // runs statements has one (executor and blocking-pool threads).
        if YIELD_COUNTDOWN.with(|n| {
            let left = n.get().saturating_sub(1);
            n.set(if left == 0 { YIELD_EVERY } else { left });
            left == 0
        }) {
            sqlx_core::rt::yield_now().await;
        }
        let mut conn = self.shared.conn.lock().await;
        if self.shared.rollback_pending.swap(false, Ordering::AcqRel) {
            self.shared.rollback(&mut conn)?;
        }
        Ok(conn)
    }

    pub(crate) async fn prepare(&mut self, query: &str) -> Result<SqliteStatement<'static>, Error> {
        let mut conn = self.lock().await?;
        let prepared = prepare(&mut conn, query);
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        prepared
    }

    pub(crate) async fn describe(&mut self, query: &str) -> Result<Describe<Sqlite>, Error> {
        let mut conn = self.lock().await?;
        describe(&mut conn, query)
    }

    pub(crate) async fn execute(
        &mut self,
        query: &str,
        args: Option<SqliteArguments<'_>>,
        _chan_size: usize,
        persistent: bool,
        limit: Option<usize>,
    ) -> Result<flume::Receiver<ExecuteResult>, Error> {
        let mut conn = self.lock().await?;
        let (tx, rx) = flume::unbounded();
        let iter = execute::iter(&mut conn, query, args, persistent)?;
        let mut rows_returned = 0;
        for res in iter {
            let is_row = matches!(res, Ok(Either::Right(_)));
            let has_error = res.is_err();
            // The receiver is in hand: sending cannot fail.
            let _ = tx.send(res);
            if has_error {
                break;
            }
            if is_row {
                rows_returned += 1;
                if limit.is_some_and(|limit| rows_returned >= limit) {
                    break;
                }
            }
        }
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        Ok(rx)
    }

    pub(crate) async fn begin(
        &mut self,
        statement: Option<Cow<'static, str>>,
    ) -> Result<(), Error> {
        let mut conn = self.lock().await?;
        let depth = self.shared.transaction_depth.load(Ordering::Acquire);
        let statement = match statement {
            // custom `BEGIN` statements are not allowed if we're already in
            // a transaction (we need to issue a `SAVEPOINT` instead)
            Some(_) if depth > 0 => return Err(Error::InvalidSavePointStatement),
            Some(statement) => statement,
            None => begin_ansi_transaction_sql(depth),
        };
        conn.handle.exec(statement)?;
        self.shared.transaction_depth.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        let mut conn = self.lock().await?;
        let depth = self.shared.transaction_depth.load(Ordering::Acquire);
        if depth > 0 {
            conn.handle.exec(commit_ansi_transaction_sql(depth))?;
            self.shared.transaction_depth.fetch_sub(1, Ordering::Release);
        }
        Ok(())
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        let mut conn = self.lock().await?;
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
        self.lock().await.map(drop)
    }

    pub(crate) async fn deserialize(
        &mut self,
        schema: Option<SchemaName>,
        data: SqliteOwnedBuf,
        read_only: bool,
    ) -> Result<(), Error> {
        let mut conn = self.lock().await?;
        deserialize(&mut conn, schema, data, read_only)
    }

    pub(crate) async fn serialize(
        &mut self,
        schema: Option<SchemaName>,
    ) -> Result<SqliteOwnedBuf, Error> {
        let mut conn = self.lock().await?;
        serialize(&mut conn, schema)
    }

    pub(crate) async fn clear_cache(&mut self) -> Result<(), Error> {
        let mut conn = self.lock().await?;
        conn.statements.clear();
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        Ok(())
    }

    pub(crate) async fn unlock_db(&mut self) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        self.lock().await
    }

    /// Nothing to stop: the connection closes when its last handle drops.
    pub(crate) fn shutdown(&mut self) -> impl Future<Output = Result<(), Error>> {
        std::future::ready(Ok(()))
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
