//! The outbox relay against a bus that refuses some events for good: those
//! are set aside in `_outbox_rejected` and every other event still flows;
//! a transient failure is retried and sets nothing aside. Runs on SQLite
//! always and on PostgreSQL when `ECOM_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_model::Timestamp;
use ecom_platform::bus::embedded::EmbeddedBus;
use ecom_platform::bus::{permanent, BusBackend, DeadLetter, RuleInfo};
use ecom_platform::relay::{read_batch, rejected_counter, relay_batch, send_batch};
use ecom_platform::{Bus, Event, Outbox, Rule};
use ecom_runtime::config::BusSettings;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, StorageTarget};
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SOURCE: &str = "test.relay";

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// SQLite in `dir`, and PostgreSQL under a fresh schema prefix when configured.
fn targets(dir: &std::path::Path) -> Vec<(&'static str, StorageTarget)> {
    let mut targets = vec![(
        "sqlite",
        StorageTarget::Sqlite {
            dir: dir.to_path_buf(),
        },
    )];
    match env_var("ECOM_TEST_DATABASE_URL") {
        Some(url) => targets.push((
            "postgres",
            StorageTarget::Postgres {
                url,
                schema_prefix: format!("t{}_", &Uuid::new_v4().simple().to_string()[..10]),
                max_connections: 5,
            },
        )),
        None => eprintln!("note: ECOM_TEST_DATABASE_URL is not set: the relay on PostgreSQL skipped"),
    }
    targets
}

/// A real (embedded) bus behind a door that refuses, for good, every call
/// holding an event whose detail has `"poison": true` (sending nothing of
/// it, as `BusBackend::publish` says), and fails the calls numbered in
/// `transient` (0 = the first call) with a plain error.
struct TestBus {
    inner: Arc<dyn BusBackend>,
    transient: HashSet<usize>,
    /// How many events each publish call held, in order.
    calls: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl BusBackend for TestBus {
    async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(events.len());
            calls.len() - 1
        };
        if self.transient.contains(&call) {
            anyhow::bail!("connection reset (call {call})");
        }
        if let Some(poison) = events.iter().find(|e| e.detail.value()["poison"] == json!(true)) {
            return Err(permanent(format!("event {} is poison", poison.id)));
        }
        self.inner.publish(events).await
    }

    async fn start(
        &self,
        rules: Vec<Arc<Rule>>,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        self.inner.start(rules, feed, shutdown).await
    }

    async fn dead_letters(&self, rule: Option<&str>, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        self.inner.dead_letters(rule, limit).await
    }

    async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        self.inner.redrive(rule).await
    }

    async fn purge(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        self.inner.purge(rule).await
    }

    async fn rules(&self) -> anyhow::Result<Vec<RuleInfo>> {
        self.inner.rules().await
    }

    async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64> {
        self.inner.replay(rule, from, to).await
    }
}

/// A service database with its outbox, a bus delivering to a rule that
/// records the ids it receives, and the door in front of that bus.
struct Setup {
    svc: Db,
    platform: Db,
    bus: Bus,
    door: Arc<TestBus>,
    received: Arc<Mutex<Vec<Uuid>>>,
    stop: CancellationToken,
    delivery: JoinHandle<()>,
}

impl Setup {
    async fn new(target: &StorageTarget, transient: &[usize]) -> Setup {
        let svc = Db::open(target, "svc").await.unwrap();
        svc.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
            .await
            .unwrap();
        let platform = Db::open(target, "platform").await.unwrap();
        let settings = BusSettings {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..BusSettings::default()
        };
        let embedded = EmbeddedBus::open(platform.clone(), settings).await.unwrap();
        let door = Arc::new(TestBus {
            inner: Arc::new(embedded),
            transient: transient.iter().copied().collect(),
            calls: Mutex::default(),
        });
        let bus = Bus::new(door.clone());
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = received.clone();
        bus.subscribe(
            Rule::new("relay.recorder", json!({"source": [SOURCE]}), move |event| {
                let r = r.clone();
                async move {
                    r.lock().unwrap().push(event.id);
                    Ok(())
                }
            })
            .unwrap(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let delivery = bus.start(stop.clone()).await.unwrap();
        Setup {
            svc,
            platform,
            bus,
            door,
            received,
            stop,
            delivery,
        }
    }

    /// Writes `events` to the outbox in one transaction, as a service does.
    async fn write(&self, events: &[Event]) {
        let outbox = Outbox::new();
        let mut tx = self.svc.begin().await.unwrap();
        outbox.push_all(&mut tx, events).await.unwrap();
        outbox.commit(tx).await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(self.svc.reader())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    /// Waits until the rule has received every one of `ids`.
    async fn received_all(&self, ids: &[Uuid]) {
        let received = self.received.clone();
        eventually("the rule receives every good event", || {
            let received = received.clone();
            async move {
                let received = received.lock().unwrap();
                ids.iter().all(|id| received.contains(id))
            }
        })
        .await;
    }

    /// The relay of `outbox` running on the service database until `stop`.
    fn run_relay(&self, service: &'static str, outbox: Outbox) -> JoinHandle<()> {
        tokio::spawn(ecom_platform::relay::run(
            service,
            self.svc.clone(),
            outbox,
            self.bus.clone(),
            self.stop.clone(),
        ))
    }

    /// Waits until the running relay has emptied the outbox.
    async fn outbox_empties(&self) {
        let svc = self.svc.clone();
        eventually("the outbox is empty", || {
            let svc = svc.clone();
            async move {
                let n: i64 = sqlx::query("SELECT COUNT(*) FROM _outbox")
                    .fetch_one(svc.reader())
                    .await
                    .unwrap()
                    .try_get(0)
                    .unwrap();
                n == 0
            }
        })
        .await;
    }

    fn calls(&self) -> Vec<usize> {
        self.door.calls.lock().unwrap().clone()
    }

    async fn finish(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.delivery).await;
        drop(self.bus);
        self.svc.close().await;
        self.platform.close().await;
    }
}

/// Waits until `check` holds (or fails the test after 15 s).
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn good(n: usize) -> Event {
    Event::new(SOURCE, "Thing", vec![], json!({"n": n}))
}

fn poison() -> Event {
    Event::new(SOURCE, "Thing", vec![], json!({"poison": true}))
}

fn ids(events: &[Event]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// The rows of `_outbox_rejected`: (seq, event id, payload, created_at,
/// error, rejected_at), oldest first.
async fn rejected(db: &Db) -> Vec<(i64, String, String, i64, String, i64)> {
    sqlx::query(
        "SELECT seq, event_id, payload, created_at, error, rejected_at FROM _outbox_rejected ORDER BY seq",
    )
    .fetch_all(db.reader())
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get(0).unwrap(),
            row.try_get(1).unwrap(),
            row.try_get(2).unwrap(),
            row.try_get(3).unwrap(),
            row.try_get(4).unwrap(),
            row.try_get(5).unwrap(),
        )
    })
    .collect()
}

/// The value of one series in the metrics `/metrics` renders.
fn metric(series: &str) -> Option<u64> {
    ecom_runtime::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn drop_schemas(target: &StorageTarget) {
    if let StorageTarget::Postgres {
        url, schema_prefix, ..
    } = target
    {
        let _ = ecom_storage::drop_schemas(url, schema_prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_bus_refuses_for_good_is_set_aside_and_every_other_event_is_published() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in targets(dir.path()) {
        eprintln!("running on {name}");
        // Metrics are per process: a service name of its own per run.
        let service = format!("reject-{name}");
        let s = Setup::new(&target, &[]).await;
        let started = Timestamp::now().unix_micros();
        let bad = poison();
        let before: Vec<Event> = (0..3).map(good).collect();
        let after: Vec<Event> = (3..6).map(good).collect();
        let batch: Vec<Event> = before.iter().chain([&bad]).chain(&after).cloned().collect();
        s.write(&batch).await;

        assert_eq!(relay_batch(&service, &s.svc, &s.bus).await.unwrap(), 7);

        let good_ids: Vec<Uuid> = ids(&before).into_iter().chain(ids(&after)).collect();
        s.received_all(&good_ids).await;
        assert_eq!(
            s.calls(),
            vec![7, 1, 1, 1, 1, 1, 1, 1],
            "the refused batch, then each event alone"
        );
        assert_eq!(s.count("SELECT COUNT(*) FROM _outbox").await, 0, "{name}");
        let rows = rejected(&s.svc).await;
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        let (_, event_id, payload, created_at, error, rejected_at) = &rows[0];
        assert_eq!(*event_id, bad.id.to_string());
        assert_eq!(serde_json::from_str::<Event>(payload).unwrap(), bad);
        assert_eq!(*created_at, bad.time.unix_micros());
        assert!(error.contains(&format!("event {} is poison", bad.id)), "{error}");
        assert!(*rejected_at >= started, "rejected_at is in µs");
        assert_eq!(rejected_counter(&service).get(), 1);
        assert_eq!(
            metric(&format!("ecom_outbox_rejected_total{{service=\"{service}\"}}")),
            Some(1)
        );

        // A later event flows as usual.
        let later = good(6);
        s.write(std::slice::from_ref(&later)).await;
        assert_eq!(relay_batch(&service, &s.svc, &s.bus).await.unwrap(), 1);
        s.received_all(&[later.id]).await;
        assert_eq!(s.count("SELECT COUNT(*) FROM _outbox").await, 0);
        assert_eq!(rejected(&s.svc).await.len(), 1);
        // `later` was relayed after the refusal and has been received: had
        // the refused event been sent, the rule would have it by now.
        assert!(
            !s.received.lock().unwrap().contains(&bad.id),
            "the refused event never reaches the rule"
        );
        s.finish().await;
        drop_schemas(&target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_by_the_relay_and_sets_nothing_aside() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in targets(dir.path()) {
        eprintln!("running on {name}");
        let service: &'static str = match name {
            "sqlite" => "transient-sqlite",
            _ => "transient-postgres",
        };
        // The first three publishes fail with a plain error.
        let s = Setup::new(&target, &[0, 1, 2]).await;
        let events: Vec<Event> = (0..5).map(good).collect();
        s.write(&events).await;
        let outbox = Outbox::new();
        let relay = s.run_relay(service, outbox);

        s.received_all(&ids(&events)).await;
        s.outbox_empties().await;
        assert_eq!(
            s.calls(),
            vec![5, 5, 5, 5],
            "the whole batch is retried, never split"
        );
        assert!(rejected(&s.svc).await.is_empty(), "{name}");
        assert_eq!(rejected_counter(service).get(), 0);
        assert_eq!(
            metric(&format!("ecom_outbox_rejected_total{{service=\"{service}\"}}")),
            Some(0),
            "the relay shows its count from its start"
        );
        s.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), relay).await;
        s.finish().await;
        drop_schemas(&target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_while_publishing_one_at_a_time_keeps_what_was_done() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in targets(dir.path()) {
        eprintln!("running on {name}");
        let service = format!("one-at-a-time-{name}");
        // Calls: 0 the batch (refused for good), 1 the first event, 2 the
        // poison (refused for good), 3 the next event: fails.
        let s = Setup::new(&target, &[3]).await;
        let (first, bad, second, third) = (good(0), poison(), good(1), good(2));
        s.write(&[first.clone(), bad.clone(), second.clone(), third.clone()])
            .await;

        let err = relay_batch(&service, &s.svc, &s.bus).await.unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err:#}");
        assert_eq!(
            s.count("SELECT COUNT(*) FROM _outbox").await,
            2,
            "{name}: the published and the refused events are out of the outbox"
        );
        assert_eq!(rejected(&s.svc).await.len(), 1);

        assert_eq!(relay_batch(&service, &s.svc, &s.bus).await.unwrap(), 2);
        s.received_all(&[first.id, second.id, third.id]).await;
        assert_eq!(s.calls(), vec![4, 1, 1, 1, 2]);
        assert_eq!(s.count("SELECT COUNT(*) FROM _outbox").await, 0);
        let rows = rejected(&s.svc).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, bad.id.to_string());
        assert_eq!(rejected_counter(&service).get(), 1);
        s.finish().await;
        drop_schemas(&target).await;
    }
}

/// On PostgreSQL a transaction can take a lower outbox seq than another and
/// commit after the relay read a batch holding the other: deleting "every
/// row up to the last one read" would then drop its event unpublished.
/// (SQLite has one writer at a time, so there commit order is seq order.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_behind_a_read_batch_is_relayed_not_deleted() {
    let Some(url) = env_var("ECOM_TEST_DATABASE_URL") else {
        eprintln!("note: ECOM_TEST_DATABASE_URL is not set: the relay on PostgreSQL skipped");
        return;
    };
    let target = StorageTarget::Postgres {
        url,
        schema_prefix: format!("t{}_", &Uuid::new_v4().simple().to_string()[..10]),
        max_connections: 5,
    };
    let s = Setup::new(&target, &[]).await;
    let (early, late) = (good(1), good(2));
    let outbox = Outbox::new();
    // Takes the lower seq and stays open...
    let mut slow = s.svc.begin().await.unwrap();
    outbox.push(&mut slow, &early).await.unwrap();
    // ...while a later write commits and the relay reads it.
    s.write(std::slice::from_ref(&late)).await;
    let batch = read_batch(&s.svc).await.unwrap();
    assert_eq!(batch.len(), 1, "only the committed event is visible");
    outbox.commit(slow).await.unwrap();
    assert_eq!(send_batch("behind", &s.svc, &s.bus, batch).await.unwrap(), 1);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM _outbox").await,
        1,
        "the early event waits for the next batch"
    );
    assert_eq!(relay_batch("behind", &s.svc, &s.bus).await.unwrap(), 1);
    s.received_all(&ids(&[early, late])).await;
    s.finish().await;
    drop_schemas(&target).await;
}

/// A row that is not an event (only a bug could write one) is set aside
/// with the decoding error; the events around it are published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_outbox_row_is_set_aside_and_the_rest_published() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in targets(dir.path()) {
        eprintln!("running on {name}");
        let s = Setup::new(&target, &[]).await;
        let before = good(1);
        s.write(std::slice::from_ref(&before)).await;
        sqlx::query("INSERT INTO _outbox (event_id, payload, created_at) VALUES ($1, $2, $3)")
            .bind("not-an-event")
            .bind("{\"this\": \"is not an event\"}")
            .bind(0i64)
            .execute(s.svc.writer())
            .await
            .unwrap();
        let after = good(2);
        s.write(std::slice::from_ref(&after)).await;

        assert_eq!(
            relay_batch("undecodable", &s.svc, &s.bus).await.unwrap(),
            3,
            "{name}"
        );
        s.received_all(&ids(&[before, after])).await;
        assert_eq!(s.count("SELECT COUNT(*) FROM _outbox").await, 0, "{name}");
        let rows = rejected(&s.svc).await;
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        assert_eq!(rows[0].1, "not-an-event");
        assert!(rows[0].4.starts_with("undecodable: "), "{}", rows[0].4);
        s.finish().await;
        drop_schemas(&target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_relay_publishes_every_row_once_and_empties_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in targets(dir.path()) {
        eprintln!("running on {name}");
        let service: &'static str = match name {
            "sqlite" => "sweep-sqlite",
            _ => "sweep-postgres",
        };
        let s = Setup::new(&target, &[]).await;
        let outbox = Outbox::new();
        let relay = s.run_relay(service, outbox.clone());
        // Commits while the relay runs, some of them more than one batch
        // (on SQLite it reads past what it published and deletes later).
        let mut all = Vec::new();
        for round in 0..20 {
            let events: Vec<Event> = (0..if round % 7 == 0 { 600 } else { 3 })
                .map(|n| good(round * 1000 + n))
                .collect();
            let mut tx = s.svc.begin().await.unwrap();
            outbox.push_all(&mut tx, &events).await.unwrap();
            outbox.commit(tx).await.unwrap();
            all.extend(ids(&events));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s.received_all(&all).await;
        s.outbox_empties().await;
        let published: usize = s.calls().iter().sum();
        assert_eq!(published, all.len(), "{name}: each row published once");
        assert_eq!(s.received.lock().unwrap().len(), all.len(), "{name}");
        s.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), relay).await;
        s.finish().await;
        drop_schemas(&target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_handed_over_in_memory_and_rows_written_elsewhere_are_each_published_once() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in targets(dir.path()) {
        eprintln!("running on {name}");
        let service: &'static str = match name {
            "sqlite" => "handed-sqlite",
            _ => "handed-postgres",
        };
        let s = Setup::new(&target, &[]).await;
        let outbox = Outbox::new();
        let relay = s.run_relay(service, outbox.clone());
        // Eight writers at once (on SQLite their commits share groups): most
        // rows through the relay's own handle (handed over in memory), some
        // through another handle on the same database (as the CLI writes;
        // nothing is handed over), and some rolled back (their seqs are
        // taken again on SQLite).
        let writers = (0..8).map(|w| {
            let (svc, outbox) = (s.svc.clone(), outbox.clone());
            tokio::spawn(async move {
                let other = Outbox::new();
                let (mut committed, mut undone) = (Vec::new(), Vec::new());
                for i in 0..25 {
                    let events = vec![good(w * 1000 + i), good(w * 1000 + 500 + i)];
                    let mut tx = svc.begin().await.unwrap();
                    match i % 5 {
                        0 => {
                            other.push_all(&mut tx, &events).await.unwrap();
                            other.commit(tx).await.unwrap();
                            committed.extend(ids(&events));
                        }
                        1 => {
                            outbox.push_all(&mut tx, &events).await.unwrap();
                            tx.rollback().await.unwrap();
                            undone.extend(ids(&events));
                        }
                        _ => {
                            outbox.push_all(&mut tx, &events).await.unwrap();
                            outbox.commit(tx).await.unwrap();
                            committed.extend(ids(&events));
                        }
                    }
                }
                (committed, undone)
            })
        });
        let (mut committed, mut undone) = (Vec::new(), Vec::new());
        for writer in futures::future::join_all(writers).await {
            let (c, u) = writer.unwrap();
            committed.extend(c);
            undone.extend(u);
        }
        s.received_all(&committed).await;
        s.outbox_empties().await;
        let published: usize = s.calls().iter().sum();
        assert_eq!(
            published,
            committed.len(),
            "{name}: each committed row published once"
        );
        let received = s.received.lock().unwrap().clone();
        assert_eq!(received.len(), committed.len(), "{name}");
        assert!(
            undone.iter().all(|id| !received.contains(id)),
            "{name}: nothing rolled back is published"
        );
        s.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), relay).await;
        s.finish().await;
        drop_schemas(&target).await;
    }
}
