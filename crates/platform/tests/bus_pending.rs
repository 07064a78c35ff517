//! The embedded bus hands new deliveries to the workers of its own
//! process; a delivery already pending for the same rule and event stays
//! as it is, and the batch's other deliveries go out all the same. Runs on
//! SQLite always and on PostgreSQL when `ECOM_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_model::Timestamp;
use ecom_platform::bus::embedded::EmbeddedBus;
use ecom_platform::bus::BusBackend as _;
use ecom_platform::{Bus, Event, Rule};
use ecom_runtime::config::BusSettings;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[path = "support/targets.rs"]
mod support;
use support::{clean_up, storage_targets};

#[tokio::test]
async fn a_pending_delivery_stays_and_the_rest_of_the_batch_is_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    for target in storage_targets(dir.path(), "this test") {
        let db = Db::open(&target, "platform").await.unwrap();
        let embedded = Arc::new(
            EmbeddedBus::open(db.clone(), BusSettings::default())
                .await
                .unwrap(),
        );
        let bus = Bus::new(embedded.clone());
        let seen: Arc<Mutex<Vec<Uuid>>> = Arc::default();
        let handled = seen.clone();
        bus.subscribe(
            Rule::new(
                "pending.local",
                json!({"source": ["test.pending"]}),
                move |event| {
                    let handled = handled.clone();
                    async move {
                        handled.lock().unwrap().push(event.id);
                        Ok(())
                    }
                },
            )
            .unwrap(),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let worker = bus.start(shutdown.clone()).await.unwrap();

        let events: Vec<Event> = (0..3)
            .map(|i| Event::new("test.pending", "Thing", vec![], json!({ "i": i })))
            .collect();
        // The middle event's delivery is pending already (due in an hour).
        let later = Timestamp::now().unix_micros() + 3_600_000_000;
        sqlx::query(
            "INSERT INTO bus_deliveries (rule, event_id, payload, attempts, due_at, created_at)
             VALUES ($1, $2, NULL, 0, $3, $3)",
        )
        .bind("pending.local")
        .bind(events[1].id.to_string())
        .bind(later)
        .execute(db.writer())
        .await
        .unwrap();
        embedded.publish(&events).await.unwrap();

        // Handled: the new deliveries and only them; left pending: the
        // one that was (acknowledged deliveries are deleted soon after).
        let mut want = vec![events[0].id, events[2].id];
        want.sort();
        let want_pending = vec![(events[1].id.to_string(), later)];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut got = seen.lock().unwrap().clone();
            got.sort();
            let pending: Vec<(String, i64)> = sqlx::query("SELECT event_id, due_at FROM bus_deliveries")
                .fetch_all(db.reader())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
                .collect();
            if (got == want && pending == want_pending) || tokio::time::Instant::now() > deadline {
                assert_eq!(
                    got, want,
                    "{target:?}: the new deliveries are handled, and only them"
                );
                assert_eq!(
                    pending, want_pending,
                    "{target:?}: the pending delivery is untouched"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        shutdown.cancel();
        worker.await.unwrap();
        db.close().await;
        clean_up(&target).await;
    }
}
