//! Pruning the embedded bus's archive: events past the retention go, in
//! slices, except those a delivery still waits for. Runs on SQLite always
//! and on PostgreSQL when `ECOM_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_model::Timestamp;
use ecom_platform::bus::embedded::EmbeddedBus;
use ecom_platform::bus::BusBackend as _;
use ecom_platform::{Bus, Event, Rule};
use ecom_runtime::config::BusSettings;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[path = "support/targets.rs"]
mod support;
use support::{clean_up, storage_targets};

fn event_at(source: &str, time: Timestamp) -> Event {
    let mut event = Event::new(source, "Thing", vec![], json!({}));
    event.time = time;
    event
}

async fn archived(db: &Db) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM bus_events")
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test]
async fn pruning_removes_old_events_in_slices_but_keeps_those_awaiting_delivery() {
    let dir = tempfile::tempdir().unwrap();
    for target in storage_targets(dir.path(), "pruning") {
        let db = Db::open(&target, "platform").await.unwrap();
        let settings = BusSettings {
            retention: Duration::from_secs(3600),
            ..BusSettings::default()
        };
        let embedded = Arc::new(EmbeddedBus::open(db.clone(), settings).await.unwrap());
        // A rule registered by a process that has stopped: deliveries to it
        // wait, reading their payload from the archive. (Its start also ran
        // the maintenance task's first pruning, which must not race ours.)
        let bus = Bus::new(embedded.clone());
        bus.subscribe(
            Rule::new("prune.stopped", json!({"source": ["test.awaited"]}), |_| async {
                Ok(())
            })
            .unwrap(),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let worker = bus.start(shutdown.clone()).await.unwrap();
        shutdown.cancel();
        worker.await.unwrap();

        let old = Timestamp::from_unix_micros(Timestamp::now().unix_micros() - 2 * 3600 * 1_000_000).unwrap();
        // More than two slices of old events nobody waits for.
        let expired: Vec<Event> = (0..4_500).map(|_| event_at("test.old", old)).collect();
        for chunk in expired.chunks(500) {
            embedded.publish(chunk).await.unwrap();
        }
        embedded.publish(&[event_at("test.awaited", old)]).await.unwrap();
        let recent: Vec<Event> = (0..10).map(|_| event_at("test.old", Timestamp::now())).collect();
        embedded.publish(&recent).await.unwrap();
        assert_eq!(archived(&db).await, 4_511);

        assert_eq!(embedded.prune().await.unwrap(), 4_500, "{target:?}");
        assert_eq!(archived(&db).await, 11, "recent events and the awaited one stay");
        assert_eq!(embedded.prune().await.unwrap(), 0);
        db.close().await;
        clean_up(&target).await;
    }
}
