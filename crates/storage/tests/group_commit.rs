//! SQLite's write transactions commit in groups (`src/group.rs`): what each
//! caller sees must be as if each had committed alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, StorageTarget};
use std::path::Path;

async fn sqlite_db(dir: &Path) -> Db {
    let db = Db::open(
        &StorageTarget::Sqlite {
            dir: dir.to_path_buf(),
        },
        "group",
    )
    .await
    .unwrap();
    sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
        .execute(db.writer())
        .await
        .unwrap();
    db
}

async fn values(db: &Db) -> Vec<i64> {
    sqlx::query("SELECT v FROM t ORDER BY v")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn insert(tx: &mut ecom_storage::Tx, v: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO t (v) VALUES ($1)")
        .bind(v)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Many transactions at once: each one's commit returns only when a
/// reader (another connection) sees its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_are_each_visible_when_their_commit_returns() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path()).await;
    let tasks: Vec<_> = (0..200)
        .map(|v| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                insert(&mut tx, v).await.unwrap();
                tx.commit().await.unwrap();
                let seen: i64 = sqlx::query("SELECT COUNT(*) FROM t WHERE v = $1")
                    .bind(v)
                    .fetch_one(db.reader())
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(seen, 1, "row {v} not visible after its commit returned");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(values(&db).await, (0..200).collect::<Vec<_>>());
}

/// A transaction that fails and rolls back (here on a duplicate key) takes
/// nothing of the others in its group with it, and keeps nothing of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_undoes_only_its_own_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path()).await;
    let tasks: Vec<_> = (0..100)
        .map(|v| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                insert(&mut tx, 1000 + v).await.unwrap();
                if v % 3 == 0 {
                    // A second statement that fails: the whole transaction goes.
                    let err = insert(&mut tx, 1000 + v).await.unwrap_err();
                    assert!(ecom_storage::is_unique_violation(&err), "{err}");
                    tx.rollback().await.unwrap();
                    false
                } else {
                    tx.commit().await.unwrap();
                    true
                }
            })
        })
        .collect();
    let mut expected = Vec::new();
    for (v, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap() {
            expected.push(1000 + v as i64);
        }
    }
    assert_eq!(values(&db).await, expected);
}

/// A transaction dropped without commit or rollback (an early `?`) is
/// undone, and the writer is free for the next one and for single
/// statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_is_undone_and_frees_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path()).await;
    {
        let mut tx = db.begin().await.unwrap();
        insert(&mut tx, 1).await.unwrap();
    }
    let mut tx = db.begin().await.unwrap();
    insert(&mut tx, 2).await.unwrap();
    tx.commit().await.unwrap();
    {
        let mut tx = db.begin().await.unwrap();
        insert(&mut tx, 3).await.unwrap();
    }
    // A single statement on the writer pool gets the connection back.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::query("INSERT INTO t (v) VALUES (4)").execute(db.writer()),
    )
    .await
    .expect("the writer came back to the pool")
    .unwrap();
    assert_eq!(values(&db).await, [2, 4]);
}

/// A transaction that only reads and is committed, and one rolled back
/// with nothing in it, leave the writer usable.
#[tokio::test(flavor = "current_thread")]
async fn empty_transactions_commit_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path()).await;
    let mut tx = db.begin().await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM t")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    tx.commit().await.unwrap();
    db.begin().await.unwrap().rollback().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    insert(&mut tx, 7).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(values(&db).await, [7]);
}

/// Work registered with `after_commit` runs once for each transaction that
/// commits, never for one rolled back or dropped, and (the outbox relay
/// counts on it) in commit order: with `AUTOINCREMENT`, committed seqs
/// come out increasing and without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_commit_runs_in_commit_order_and_only_for_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path()).await;
    sqlx::query("CREATE TABLE s (seq INTEGER PRIMARY KEY AUTOINCREMENT, v INTEGER NOT NULL)")
        .execute(db.writer())
        .await
        .unwrap();
    let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..200)
        .map(|v: i64| {
            let (db, ran) = (db.clone(), ran.clone());
            tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                let seq: i64 = sqlx::query("INSERT INTO s (v) VALUES ($1) RETURNING seq")
                    .bind(v)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap()
                    .get(0);
                tx.after_commit(move || ran.lock().unwrap().push(seq));
                match v % 4 {
                    1 => tx.rollback().await.unwrap(),
                    2 => drop(tx),
                    _ => tx.commit().await.unwrap(),
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let ran = ran.lock().unwrap().clone();
    assert_eq!(
        ran,
        (1..=100).collect::<Vec<i64>>(),
        "in seq order, once each, no gaps"
    );
    let stored: Vec<i64> = sqlx::query("SELECT seq FROM s ORDER BY seq")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ran);
}

/// A group's first transaction runs without a savepoint of its own (it is
/// alone in the group's transaction when it begins): its rollback, or its
/// drop, undoes only its own work while others queue behind it, and a
/// later member's rollback leaves the first one's work in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_first_transaction_undoes_only_itself_and_later_ones_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path()).await;
    let queue = |v: i64, commit: bool| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, v).await.unwrap();
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
        })
    };
    let queued = || tokio::time::sleep(std::time::Duration::from_millis(50));

    // The first rolls back while another waits for the writer.
    let mut first = db.begin().await.unwrap();
    insert(&mut first, 1).await.unwrap();
    let waiting = queue(2, true);
    queued().await;
    first.rollback().await.unwrap();
    waiting.await.unwrap();
    assert_eq!(values(&db).await, [2]);

    // The first commits; of the two that joined its group, one rolls back.
    let mut first = db.begin().await.unwrap();
    insert(&mut first, 3).await.unwrap();
    let rolled_back = queue(4, false);
    let committed = queue(5, true);
    queued().await;
    first.commit().await.unwrap();
    rolled_back.await.unwrap();
    committed.await.unwrap();
    assert_eq!(values(&db).await, [2, 3, 5]);

    // The first is dropped (an early `?`) while another waits.
    let mut first = db.begin().await.unwrap();
    insert(&mut first, 6).await.unwrap();
    let waiting = queue(7, true);
    queued().await;
    drop(first);
    waiting.await.unwrap();
    assert_eq!(values(&db).await, [2, 3, 5, 7]);
}
