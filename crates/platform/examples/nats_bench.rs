//! Throughput of the NATS JetStream bus backend: publishes N events and
//! counts handler completions for one rule.
//!
//! `cargo run --release -p ecom-platform --example nats_bench -- [N]`
//! (N defaults to 100000; the server is `ECOM_BUS_URL` or
//! `nats://127.0.0.1:4222`). Uses streams of its own and deletes them.

use ecom_platform::bus::nats::NatsBus;
use ecom_platform::{Bus, Event, Rule};
use ecom_runtime::config::BusSettings;
use futures::StreamExt as _;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Events per `publish` call, as the outbox relay sends them.
const BATCH: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let url = std::env::var("ECOM_BUS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let prefix = format!("bench{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let nats = Arc::new(NatsBus::connect(&url, BusSettings::default(), &prefix).await?);
    let bus = Bus::new(nats.clone());
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    bus.subscribe(Rule::new(
        "bench.count",
        json!({"source": ["ecommerce.orders"], "detail-type": ["OrderCreated"]}),
        move |_| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        },
    )?)?;
    let shutdown = CancellationToken::new();
    let running = bus.start(shutdown.clone()).await?;

    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new(
                "ecommerce.orders",
                "OrderCreated",
                vec![format!("order-{i}")],
                json!({"n": i, "total": 1200}),
            )
        })
        .collect();
    let started = Instant::now();
    // A few relays' worth of batches in flight at once.
    let publishing = events.chunks(BATCH).map(|chunk| bus.publish(chunk));
    let results = futures::stream::iter(publishing)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let published = started.elapsed();
    while handled.load(Ordering::Relaxed) < n as u64 {
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!(
                "only {} of {n} handled after 300 s",
                handled.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = started.elapsed();
    shutdown.cancel();
    running.await?;
    nats.delete_streams().await?;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("events:    {n}");
    println!(
        "published: {:.2} s ({:.0} events/s, durable: acked by the server)",
        published.as_secs_f64(),
        rate(published)
    );
    println!(
        "handled:   {:.2} s ({:.0} events/s end to end, publish to handler done)",
        done.as_secs_f64(),
        rate(done)
    );
    Ok(())
}
