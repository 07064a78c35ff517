//! Crash cases of the embedded bus on SQLite: a process killed with SIGKILL
//! at the worst moments loses and duplicates nothing once restarted.
//!
//! Each test runs this test binary again as a child (the ignored test
//! `crash_child`, picked by `ECOM_CRASH_CHILD`), which does the steps of a
//! service, the relay or a handler up to the crash point, prints
//! `CRASH-POINT-REACHED` and waits; the parent kills it with SIGKILL, then
//! plays the restarted process on the same files and checks the outcome.
//! Production code carries no fault hooks: the child stops itself between
//! the same calls the relay and the delivery worker make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_platform::bus::embedded::EmbeddedBus;
use ecom_platform::{inbox, Bus, Event, Outbox, Rule};
use ecom_runtime::config::BusSettings;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, StorageTarget};
use serde_json::json;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MARK: &str = "CRASH-POINT-REACHED";
const RULE: &str = "crash.on-order";

fn settings() -> BusSettings {
    BusSettings {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..BusSettings::default()
    }
}

/// The service database (outbox, inbox, its effects) and the bus, as a
/// process opens them at start.
async fn open(dir: &Path) -> (Db, Bus) {
    let target = StorageTarget::Sqlite {
        dir: dir.to_path_buf(),
    };
    let svc = Db::open(&target, "svc").await.unwrap();
    svc.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL)")
        .execute(svc.writer())
        .await
        .unwrap();
    let platform = Db::open(&target, "platform").await.unwrap();
    let bus = Bus::new(Arc::new(EmbeddedBus::open(platform, settings()).await.unwrap()));
    (svc, bus)
}

/// The consumer under test: records its effect and the inbox row in one
/// transaction; `after_effect` runs after that commit, before the handler
/// returns (that is, before the bus acknowledges the delivery).
fn rule(db: Db, calls: Arc<AtomicUsize>, after_effect: fn()) -> Rule {
    Rule::new(
        RULE,
        json!({"source": ["ecommerce.orders"]}),
        move |event: Event| {
            let (db, calls) = (db.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let Some(mut tx) = inbox::begin(&db, RULE, event.id).await? else {
                    return Ok(());
                };
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                after_effect();
                Ok(())
            }
        },
    )
    .unwrap()
}

fn nothing() {}

fn crash_here() {
    println!("{MARK}");
    // Wait to be killed; never acknowledge.
    std::thread::sleep(Duration::from_secs(60));
}

/// A service write and its event, committed together.
async fn write_order(svc: &Db) -> Event {
    let outbox = Outbox::new();
    let event = Event::new(
        "ecommerce.orders",
        "OrderCreated",
        vec!["o-1".into()],
        json!({"orderId": "o-1"}),
    );
    let mut tx = svc.begin().await.unwrap();
    outbox.push(&mut tx, &event).await.unwrap();
    outbox.commit(tx).await.unwrap();
    event
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// A previous run of the server: registers the rule, then stops cleanly.
async fn register_rule(dir: &Path) {
    let (svc, bus) = open(dir).await;
    bus.subscribe(rule(svc, Arc::default(), nothing)).unwrap();
    let stop = CancellationToken::new();
    let handle = bus.start(stop.clone()).await.unwrap();
    stop.cancel();
    handle.await.unwrap();
}

/// The child: runs `scenario` up to its crash point.
#[test]
#[ignore = "a child process of the crash tests, not a test by itself"]
fn crash_child() {
    let (Ok(scenario), Ok(dir)) = (std::env::var("ECOM_CRASH_CHILD"), std::env::var("ECOM_CRASH_DIR")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = Path::new(&dir);
        let (svc, bus) = open(dir).await;
        match scenario.as_str() {
            // The write and its outbox row are committed; the relay never ran.
            "after-commit" => {
                write_order(&svc).await;
                crash_here();
            }
            // The relay published the batch but did not delete it from the outbox.
            "after-publish" => {
                write_order(&svc).await;
                let payload: String = sqlx::query("SELECT payload FROM _outbox")
                    .fetch_one(svc.reader())
                    .await
                    .unwrap()
                    .try_get(0)
                    .unwrap();
                bus.publish(&[serde_json::from_str(&payload).unwrap()])
                    .await
                    .unwrap();
                crash_here();
            }
            // The handler committed its effect; the delivery is not acknowledged.
            "after-effect" => {
                bus.subscribe(rule(svc.clone(), Arc::default(), crash_here))
                    .unwrap();
                let _running = bus.start(CancellationToken::new()).await.unwrap();
                write_order(&svc).await;
                ecom_platform::relay::relay_batch("svc", &svc, &bus)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            other => panic!("unknown crash scenario {other}"),
        }
    });
}

/// Runs the child until its crash point, then kills it with SIGKILL.
fn run_child_and_kill(scenario: &str, dir: &Path) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ECOM_CRASH_CHILD", scenario)
        .env("ECOM_CRASH_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reached = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(MARK));
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "the child of {scenario} ended before its crash point");
}

/// The restarted process: the bus delivering, the relay relaying. Returns
/// how often the handler ran, once the outbox is empty and nothing waits.
async fn restart_and_settle(dir: &Path) -> (Db, usize) {
    let (svc, bus) = open(dir).await;
    let calls = Arc::new(AtomicUsize::new(0));
    bus.subscribe(rule(svc.clone(), calls.clone(), nothing)).unwrap();
    let stop = CancellationToken::new();
    let delivery = bus.start(stop.clone()).await.unwrap();
    let relay = tokio::spawn(ecom_platform::relay::run(
        "svc",
        svc.clone(),
        Outbox::new(),
        bus.clone(),
        stop.clone(),
    ));
    let platform = Db::open(
        &StorageTarget::Sqlite {
            dir: dir.to_path_buf(),
        },
        "platform",
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let outbox = count(&svc, "SELECT COUNT(*) FROM _outbox").await;
        let pending = count(&platform, "SELECT COUNT(*) FROM bus_deliveries").await;
        if outbox == 0 && pending == 0 && calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox {outbox}, pending {pending}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything that would be delivered twice has had time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    relay.await.unwrap();
    delivery.await.unwrap();
    (svc, calls.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_outbox_commit_and_publish_the_event_is_delivered_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    register_rule(dir.path()).await;
    run_child_and_kill("after-commit", dir.path());
    let (svc, calls) = restart_and_settle(dir.path()).await;
    assert_eq!(calls, 1);
    assert_eq!(count(&svc, "SELECT COUNT(*) FROM effects").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_publish_and_outbox_delete_the_republished_event_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    register_rule(dir.path()).await;
    run_child_and_kill("after-publish", dir.path());
    let (svc, calls) = restart_and_settle(dir.path()).await;
    assert_eq!(
        calls, 1,
        "the relay's second publish of the event must be a no-op"
    );
    assert_eq!(count(&svc, "SELECT COUNT(*) FROM effects").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_a_handler_effect_and_its_ack_the_redelivery_has_no_second_effect() {
    let dir = tempfile::tempdir().unwrap();
    run_child_and_kill("after-effect", dir.path());
    let (svc, calls) = restart_and_settle(dir.path()).await;
    assert_eq!(calls, 1, "the unacknowledged delivery comes back once");
    assert_eq!(count(&svc, "SELECT COUNT(*) FROM effects").await, 1);
}
