//! Group commit for SQLite's one writer connection.
//!
//! A SQLite file has one writer at a time, so the write transactions of a
//! service queue for its writer connection anyway. Committing each one on
//! its own writes every page it touched to the WAL again (a busy table's
//! last leaf page, once per order) and pays a commit's fixed cost each time.
//! Here the transactions waiting for the writer share one SQLite
//! transaction instead:
//!
//! - The first [`Group::begin`] opens `BEGIN IMMEDIATE`; each transaction
//!   (a [`Member`]) that joins it later runs inside its own `SAVEPOINT`, so
//!   its rollback undoes its own statements only. The first one needs
//!   none: the transaction holds nothing else, so its rollback is a
//!   `ROLLBACK` of the whole (under no load every group is one member, and
//!   the savepoint's two statements a transaction would be pure cost).
//! - A member's commit releases its savepoint, hands the connection on and
//!   waits. A committer task then takes its turn for the connection behind
//!   every transaction already waiting (the lock is fair, first come first
//!   served), and commits them all at once with one `COMMIT`. Each member's
//!   `commit` returns only then, with the outcome of that `COMMIT`: a
//!   transaction is never reported committed before it is.
//! - Under no load a group holds one transaction; under load it holds the
//!   ones that queued while the previous group ran, without any timer.
//!
//! A member dropped without commit or rollback (an early `?`) leaves a
//! note; whoever takes the connection next rolls its savepoint (or, for a
//! group's first member, the whole transaction) back first.
//! If SQLite rolled the whole transaction back (it does on I/O errors and
//! a full disk), the savepoint is gone too: the group is abandoned and its
//! waiting members get the error. The connection goes back to the pool
//! (for single statements through [`crate::Db::writer`]) after each group.

use crate::AfterCommit;
use sqlx::pool::PoolConnection;
use sqlx::AnyConnection;
use sqlx::{Any, AnyPool};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, Notify, OwnedMappedMutexGuard, OwnedMutexGuard};

/// The writer connection while a group holds it; `None` when it is back in
/// the pool.
type Parked = Option<PoolConnection<Any>>;

/// What a member waiting for its group's `COMMIT` is told.
type Outcome = Result<(), String>;

/// A member waiting for its group's `COMMIT`: where to tell it, and what
/// to run first if the `COMMIT` succeeds.
type Waiting = (oneshot::Sender<Outcome>, Vec<AfterCommit>);

/// The group-commit state of one SQLite database. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Group {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Group")
    }
}

struct Inner {
    /// The writer connection and the turn to use it.
    conn: Arc<tokio::sync::Mutex<Parked>>,
    /// Changed only by whoever holds `conn`'s lock.
    state: Mutex<State>,
    /// Wakes the committer.
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// A `BEGIN IMMEDIATE` is open on the parked connection.
    open: bool,
    /// Members whose savepoint is released, waiting for the `COMMIT`.
    waiting: Vec<Waiting>,
    /// A member was dropped before it ended: undo its work first.
    undo: Undo,
}

/// What a member dropped before it ended left to undo.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Undo {
    #[default]
    Nothing,
    /// Its savepoint.
    Savepoint,
    /// The whole transaction: it was the group's first member (so alone in it).
    Transaction,
}

/// The savepoint every member runs in. One name serves all: members never
/// nest, each releases or rolls back its own before the next begins.
const SAVEPOINT: &str = "SAVEPOINT ecom_tx";
const RELEASE: &str = "RELEASE ecom_tx";
const ROLLBACK_TO: &str = "ROLLBACK TO ecom_tx";

/// Runs one of the group's fixed statements as a prepared statement the
/// connection keeps: given as a bare `&str`, it would be parsed again on
/// every use (a few per transaction, each a few thousand instructions).
async fn run(conn: &mut AnyConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

impl Group {
    /// A group over the writer pool; its committer runs until every clone
    /// of the group is dropped.
    pub(crate) fn new() -> Group {
        let group = Group {
            inner: Arc::new(Inner {
                conn: Arc::new(tokio::sync::Mutex::new(None)),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
            }),
        };
        tokio::spawn(committer(Arc::downgrade(&group.inner)));
        group
    }

    /// Starts a transaction in the open group, or opens one.
    pub(crate) async fn begin(&self, pool: &AnyPool) -> Result<Member, sqlx::Error> {
        let mut guard = self.inner.conn.clone().lock_owned().await;
        self.inner.settle(&mut guard).await;
        let mut conn = match guard.take() {
            Some(conn) => conn,
            None => pool.acquire().await?,
        };
        let savepoint = self.inner.state().open;
        if savepoint {
            if let Err(e) = run(&mut conn, SAVEPOINT).await {
                *guard = Some(conn);
                self.inner.abandon(&mut guard, &e.to_string()).await;
                return Err(e);
            }
        } else {
            // The group's first member: nothing else is in the transaction,
            // so it needs no savepoint. On failure nothing is open: the
            // connection goes back to the pool.
            run(&mut conn, "BEGIN IMMEDIATE").await?;
            self.inner.state().open = true;
        }
        *guard = Some(conn);
        match OwnedMutexGuard::try_map(guard, Option::as_mut) {
            Ok(conn) => Ok(Member {
                conn,
                group: self.inner.clone(),
                savepoint,
                done: false,
            }),
            // Cannot happen: the connection was put there just above.
            Err(_) => Err(sqlx::Error::PoolClosed),
        }
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Undoes the work of a member that was dropped before it ended.
    async fn settle(&self, parked: &mut Parked) {
        let undo = std::mem::take(&mut self.state().undo);
        let Some(conn) = parked.as_mut() else {
            return;
        };
        let undone = match undo {
            Undo::Nothing => return,
            Undo::Savepoint => match run(conn, ROLLBACK_TO).await {
                Ok(()) => run(conn, RELEASE).await,
                Err(e) => Err(e),
            },
            Undo::Transaction => {
                let undone = run(conn, "ROLLBACK").await;
                self.state().open = false;
                undone
            }
        };
        if let Err(e) = undone {
            self.abandon(parked, &format!("rolling back a dropped transaction failed: {e}"))
                .await;
        }
    }

    /// Gives up the open group: rolls back whatever is left of it and
    /// tells its waiting members that nothing of theirs was committed.
    async fn abandon(&self, parked: &mut Parked, why: &str) {
        if let Some(conn) = parked.as_mut() {
            // SQLite may have rolled back already; then this fails, harmlessly.
            let _ = run(conn, "ROLLBACK").await;
        }
        self.close_failed(why);
        // Back to the pool, in case the connection is in a state we do not know.
        *parked = None;
    }

    /// Marks the group closed and tells its waiting members that nothing of
    /// theirs was committed.
    fn close_failed(&self, why: &str) {
        let waiting = {
            let mut state = self.state();
            state.open = false;
            std::mem::take(&mut state.waiting)
        };
        for (member, _) in waiting {
            let _ = member.send(Err(format!("the transaction was not committed: {why}")));
        }
    }

    /// Commits the open group (if any) and puts the connection back in the pool.
    async fn commit(&self, parked: &mut Parked) {
        self.settle(parked).await;
        let open = self.state().open;
        if let (true, Some(conn)) = (open, parked.as_mut()) {
            match run(conn, "COMMIT").await {
                Ok(()) => {
                    let mut waiting = {
                        let mut state = self.state();
                        state.open = false;
                        std::mem::take(&mut state.waiting)
                    };
                    // Every member's work first, in commit order: what one
                    // hands on is never seen after what a later one does.
                    for (_, after) in &mut waiting {
                        after.drain(..).for_each(|f| f());
                    }
                    for (member, _) in waiting {
                        let _ = member.send(Ok(()));
                    }
                }
                Err(e) => self.abandon(parked, &e.to_string()).await,
            }
        }
        *parked = None;
    }
}

/// Commits a group once its members have handed the connection on and
/// every transaction that queued before this turn has joined it.
async fn committer(inner: Weak<Inner>) {
    loop {
        let (wake, conn) = match inner.upgrade() {
            Some(inner) => (inner.clone(), inner.conn.clone()),
            None => return,
        };
        let woken = tokio::time::timeout(Duration::from_secs(1), wake.wake.notified()).await;
        if woken.is_err() {
            // Only to notice that the database is gone.
            continue;
        }
        let mut parked = conn.lock_owned().await;
        wake.commit(&mut parked).await;
    }
}

/// One transaction of a group: its own savepoint inside the group's
/// transaction (or, for the group's first, the transaction itself), on the
/// writer connection, which it holds until it ends.
pub(crate) struct Member {
    conn: OwnedMappedMutexGuard<Parked, PoolConnection<Any>>,
    group: Arc<Inner>,
    /// It runs in a savepoint of its own; else it opened the group's
    /// transaction and is alone in it.
    savepoint: bool,
    done: bool,
}

impl Member {
    pub(crate) fn connection(&self) -> &AnyConnection {
        &self.conn
    }

    pub(crate) fn connection_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Releases the savepoint, hands the connection on, and returns when
    /// the group's `COMMIT` has (or has not) made it durable; `after` runs
    /// (in the committer) once it has.
    pub(crate) async fn commit(mut self, after: Vec<AfterCommit>) -> Result<(), sqlx::Error> {
        if self.savepoint {
            if let Err(e) = run(&mut self.conn, RELEASE).await {
                self.rollback_inner().await;
                return Err(e);
            }
        }
        let (tell, told) = oneshot::channel();
        self.group.state().waiting.push((tell, after));
        self.done = true;
        self.group.wake.notify_one();
        drop(self);
        match told.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(sqlx::Error::Protocol(why)),
            Err(_) => Err(sqlx::Error::Protocol(
                "the transaction was not committed: its group was dropped".to_owned(),
            )),
        }
    }

    /// Undoes this transaction's statements (only its own).
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.rollback_inner().await;
        Ok(())
    }

    async fn rollback_inner(&mut self) {
        self.done = true;
        let undone = if self.savepoint {
            match run(&mut self.conn, ROLLBACK_TO).await {
                Ok(()) => run(&mut self.conn, RELEASE).await,
                Err(e) => Err(e),
            }
        } else {
            // Alone in the group's transaction: roll all of it back.
            let undone = run(&mut self.conn, "ROLLBACK").await;
            self.group.state().open = false;
            undone
        };
        if let Err(e) = undone {
            // The group's transaction is gone (SQLite rolled it back on an
            // error) or in a state we cannot trust: give it up. The
            // committer puts the connection back in the pool.
            tracing::warn!(error = %e, "a rollback to a savepoint failed; the transaction group is abandoned");
            let _ = run(&mut self.conn, "ROLLBACK").await;
            self.group.close_failed(&e.to_string());
        }
        // The committer returns the connection to the pool when nobody else
        // wants it, and commits the others' work.
        self.group.wake.notify_one();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before it ended: the next holder undoes it.
            self.group.state().undo = if self.savepoint {
                Undo::Savepoint
            } else {
                Undo::Transaction
            };
            self.group.wake.notify_one();
        }
    }
}
