//! Benchmark of the embedded bus on SQLite, end to end: a service commits
//! events through its outbox, the relay publishes them, a rule's handler
//! completes them.
//!
//! ```text
//! cargo run --release -p ecom-platform --example bus_bench -- [EVENTS] [RATE] [SECONDS]
//! ```
//!
//! 1. Throughput: EVENTS (default 100000) committed as fast as possible,
//!    100 per transaction; reports events/s from first commit to last
//!    handler completion.
//! 2. Latency: RATE events/s (default 5000) for SECONDS (default 10), one
//!    transaction per event as a service writes them; reports percentiles
//!    of the time from the event's creation (just before its commit) to its
//!    handler starting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_platform::bus::embedded::EmbeddedBus;
use ecom_platform::{Bus, Event, Outbox, Rule};
use ecom_runtime::config::BusSettings;
use ecom_storage::{Db, StorageTarget};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    latencies_us: Mutex<Vec<i64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let events = args.first().copied().unwrap_or(100_000) as usize;
    let rate = args.get(1).copied().unwrap_or(5_000);
    let seconds = args.get(2).copied().unwrap_or(10);

    let dir = tempfile::tempdir()?;
    let target = StorageTarget::Sqlite {
        dir: dir.path().to_path_buf(),
    };
    let svc = Db::open(&target, "svc").await?;
    svc.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
        .await?;
    let platform = Db::open(&target, "platform").await?;
    let bus = Bus::new(Arc::new(
        EmbeddedBus::open(platform, BusSettings::default()).await?,
    ));
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    bus.subscribe(Rule::new(
        "bench.count",
        json!({"source": ["bench"]}),
        move |e: Event| {
            let s = s.clone();
            async move {
                let latency = ecom_model::Timestamp::now().unix_micros() - e.time.unix_micros();
                s.latencies_us.lock().unwrap().push(latency);
                s.count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        },
    )?)?;
    let stop = CancellationToken::new();
    let delivery = bus.start(stop.clone()).await?;
    let outbox = Outbox::new();
    let relay = tokio::spawn(ecom_platform::relay::run(
        "bench",
        svc.clone(),
        outbox.clone(),
        bus.clone(),
        stop.clone(),
    ));

    // 1. Sustained throughput.
    let started = Instant::now();
    let mut written = 0;
    while written < events {
        let batch: Vec<Event> = (written..events.min(written + 100))
            .map(|n| Event::new("bench", "Tick", vec![], json!({"n": n})))
            .collect();
        let mut tx = svc.begin().await?;
        outbox.push_all(&mut tx, &batch).await?;
        outbox.commit(tx).await?;
        written += batch.len();
    }
    let committed = started.elapsed();
    while seen.count.load(Ordering::Relaxed) < events {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "throughput: {events} events in {:.2} s = {:.0} events/s (commits alone took {:.2} s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        committed.as_secs_f64()
    );

    // 2. Latency at a steady rate.
    seen.latencies_us.lock().unwrap().clear();
    let base = seen.count.load(Ordering::Relaxed);
    let total = (rate * seconds) as usize;
    let per_tick = (rate / 1000).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(per_tick as f64 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        for _ in 0..per_tick.min(total - sent) {
            let mut tx = svc.begin().await?;
            outbox
                .push(&mut tx, &Event::new("bench", "Tick", vec![], json!({"n": sent})))
                .await?;
            outbox.commit(tx).await?;
            sent += 1;
        }
    }
    while seen.count.load(Ordering::Relaxed) < base + total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut lat = seen.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "latency at {rate} events/s for {seconds} s ({} events): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        lat.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );

    stop.cancel();
    relay.await?;
    delivery.await?;
    Ok(())
}
