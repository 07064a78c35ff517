//! Throughput of the products service's hot paths, over real HTTP.
//!
//! ```text
//! cargo run --release -p ecom --example products_bench
//! BENCH_SECONDS=20 BENCH_CONCURRENCY=64 cargo run --release -p ecom --example products_bench
//! ```
//!
//! Boots the whole platform on SQLite in a temporary directory on a random
//! loopback port, loads `data/catalogue.json`, then for each scenario runs
//! `BENCH_CONCURRENCY` (default 32) keep-alive clients in this same process
//! for `BENCH_SECONDS` (default 10) and prints requests per second and the
//! 50th / 99th percentile latency. Client and server share the machine's
//! cores, so the figures are a floor for the server alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom::App;
use ecom_runtime::{Config, ConfigArgs, ConfigFile, ServiceKey};
use ecom_storage::StorageTarget;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    let dir = tempfile::tempdir()?;
    let args = ConfigArgs {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let config = Config::merge(&args, ConfigFile::default(), &[], |_| None)?;
    let target = StorageTarget::Sqlite {
        dir: dir.path().to_path_buf(),
    };
    let catalogue_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/catalogue.json");
    let report = ecom::cli::products::import_file(&target, &catalogue_file).await?;
    let app = App::build_with(config, &[], target).await?;
    let base = format!("http://{}", app.addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    println!(
        "products bench: SQLite, {} products, {concurrency} clients, {seconds} s per scenario",
        report.created
    );

    let catalogue: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&catalogue_file)?)?;
    let token = ServiceKey::load_or_create(None, dir.path())?.issue("bench")?;
    let lines: Vec<Value> = catalogue
        .iter()
        .take(8)
        .map(|p| json!({"productId": p["productId"], "name": p["name"], "package": p["package"], "price": p["price"], "quantity": 1}))
        .collect();
    let validate_body = serde_json::to_vec(&json!({ "products": lines }))?;
    let one = catalogue[0]["productId"].as_str().unwrap_or_default().to_owned();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let validate_url = format!("{base}/products/backend/validate");
    let get_url = format!("{base}/products/products/{one}");

    run(
        "POST /products/backend/validate (8 products)",
        seconds,
        concurrency,
        {
            let (client, body, token) = (client.clone(), validate_body.clone(), token.clone());
            move || {
                client
                    .post(&validate_url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
            }
        },
    )
    .await;
    run("GET /products/products/{productId}", seconds, concurrency, {
        let client = client.clone();
        move || client.get(&get_url)
    })
    .await;

    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Drives `request` from `concurrency` tasks for `seconds`, then prints the figures.
async fn run<F>(name: &str, seconds: u64, concurrency: usize, request: F)
where
    F: Fn() -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    // A short warm-up fills the connection pools and statement caches.
    drive(Duration::from_secs(1), concurrency, request.clone()).await;
    let started = Instant::now();
    let (mut latencies, errors) = drive(Duration::from_secs(seconds), concurrency, request).await;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "{name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} requests, {errors} errors)",
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        latencies.len()
    );
}

async fn drive<F>(length: Duration, concurrency: usize, request: F) -> (Vec<Duration>, u64)
where
    F: Fn() -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let until = Instant::now() + length;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < until {
                    let sent = Instant::now();
                    let ok = match request().send().await {
                        Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for worker in workers {
        if let Ok((latencies, e)) = worker.await {
            all.extend(latencies);
            errors += e;
        }
    }
    (all, errors)
}
