//! `ecom bench`: a load generator for the platform's HTTP routes.
//!
//! By default it boots the platform in this process (SQLite in a fresh
//! temporary data dir and the embedded bus, port 0) and drives it over
//! loopback, so one command measures the real HTTP stack — JSON,
//! credentials, storage — with the load generator sharing the machine, as
//! it would on a two-core box. With `--database-url` and `--bus-url` the
//! platform it boots uses PostgreSQL (schemas of its own, dropped
//! afterwards) and NATS JetStream (streams of its own, deleted afterwards).
//! `--url` aims it at a platform that is already running instead.
//!
//! Closed loop: each connection sends its next request when the previous
//! answer arrives. `--rate` switches to an open loop at a fixed request
//! rate, which is what a latency target "at N req/s" means. The `journey`
//! scenario is a closed loop of whole journeys instead (see `bench/journey.rs`).

mod graphql;
mod journey;

use crate::app::App;
use anyhow::Context as _;
use axum::body::Bytes;
use clap::{Args, ValueEnum};
use ecom_platform::bus::nats::NatsBus;
use ecom_runtime::{Config, ConfigArgs, ConfigFile, ServiceKey};
use ecom_storage::StorageTarget;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `POST /delivery-pricing/backend/pricing` with 3 products and a service credential.
    Pricing,
    /// `POST /payment-3p/preauth` (one durable insert per request).
    Preauth,
    /// `GET /healthz` (the floor: routing and HTTP only).
    Health,
    /// `POST /products/backend/validate` with 8 catalogue products and a service credential.
    Validate,
    /// `GET /products/products/{productId}` (one catalogue read).
    Product,
    /// `POST /graphql` `getProducts`: a page of 20 products, anonymous.
    GraphqlProducts,
    /// `POST /graphql` `getProduct` of one id, anonymous.
    GraphqlProduct,
    /// `POST /orders/backend/orders` with 3 catalogue products and a service
    /// credential: checks with products, delivery-pricing and payment (in
    /// parallel; payment claims the token for the order), stores the order
    /// and its `OrderCreated`, which payment then records. A payment token
    /// pays for one order, so before the run it pre-authorises a token per
    /// request it may send (in the platform it booted, or through the
    /// `--url` deployment's `/payment-3p/preauth`; with `--url`, the
    /// catalogue must hold the sample products).
    CreateOrder,
    /// `POST /graphql` `createOrder`: the order of `create-order`, as a
    /// signed-in shopper, through the gateway (which calls orders with the
    /// caller's id).
    GraphqlCreateOrder,
    /// The whole journey, one order at a time per connection: pre-authorise
    /// the order's total at payment-3p, `create-order`'s request, then the
    /// warehouse staff start and complete its packaging and the delivery
    /// staff start and complete its delivery over the REST routes, until
    /// the order is `FULFILLED` and payment-3p shows its total captured.
    /// Reports journeys/s and createOrder latency within journeys. With
    /// `--url`, its staff users are added to the deployment's database (the
    /// same `--database-url` / `--data-dir` as `ecom users add`).
    Journey,
}

/// The sample catalogue: loaded into an in-process platform for the products
/// scenarios (a running one needs `ecom products import data/catalogue.json`).
const CATALOGUE: &str = include_str!("../../../data/catalogue.json");

/// `ecom bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to load.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Seconds to measure (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Fixed total request rate per second (open loop); unset = as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Base URL of a running platform (e.g. http://127.0.0.1:8080); unset = boot one in process.
    #[arg(long)]
    pub url: Option<String>,
    /// `journey` only: milliseconds to sleep between two polls of a state
    /// that follows events (the packaging request, the delivery, the
    /// order's status, the payment).
    #[arg(long, default_value_t = 2)]
    pub poll_ms: u64,
    /// A platform booted in process tracks the stock of every catalogue
    /// product (a billion units each), so each order reserves and packing
    /// decrements; unset = untracked (unlimited) stock.
    #[arg(long)]
    pub tracked: bool,
}

struct Target {
    method: Method,
    path: String,
    token: Option<String>,
    body: Bytes,
    /// For the create-order scenarios: a fresh payment token per request,
    /// put in place of [`TOKEN_PLACEHOLDER`] in `body`.
    payment_tokens: Option<TokenPool>,
}

/// Stands for the payment token in a create-order body until a request
/// takes a token from the pool (a string no token can be).
const TOKEN_PLACEHOLDER: &str = "{{payment-token}}";

/// Payment tokens pre-authorised before a create-order run, handed out one
/// per request, and the request body split around the token.
struct TokenPool {
    tokens: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    before: Bytes,
    after: Bytes,
}

impl TokenPool {
    fn new(tokens: Vec<String>, body: &Bytes) -> anyhow::Result<TokenPool> {
        let text = std::str::from_utf8(body)?;
        let (before, after) = text
            .split_once(TOKEN_PLACEHOLDER)
            .context("the create-order body holds no payment token placeholder")?;
        anyhow::ensure!(!tokens.is_empty(), "no payment tokens were pre-authorised");
        Ok(TokenPool {
            tokens,
            next: Default::default(),
            before: Bytes::copy_from_slice(before.as_bytes()),
            after: Bytes::copy_from_slice(after.as_bytes()),
        })
    }

    /// The next request's body. Past the end of the pool tokens are used
    /// again, and those orders are refused ("Payment token already used").
    fn body(&self) -> Bytes {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = &self.tokens[n % self.tokens.len()];
        let mut body = Vec::with_capacity(self.before.len() + token.len() + self.after.len());
        body.extend_from_slice(&self.before);
        body.extend_from_slice(token.as_bytes());
        body.extend_from_slice(&self.after);
        body.into()
    }

    /// Whether more requests were sent than there were tokens.
    fn exhausted(&self) -> bool {
        self.next.load(std::sync::atomic::Ordering::Relaxed) > self.tokens.len()
    }
}

fn target(
    scenario: Scenario,
    key: &ServiceKey,
    payment_tokens: Vec<String>,
    product_id: &str,
    user_token: Option<&str>,
) -> anyhow::Result<Target> {
    let product = |w: i64, weight: i64, q: i64| {
        serde_json::json!({
            "productId": "f380305b-99fe-45ba-b1ab-ba6349d141a2", "name": "Item", "price": 1299,
            "package": {"width": w, "length": 300, "height": 200, "weight": weight}, "quantity": q
        })
    };
    Ok(match scenario {
        Scenario::Pricing => Target {
            method: Method::POST,
            path: "/delivery-pricing/backend/pricing".into(),
            token: Some(key.issue("bench")?),
            payment_tokens: None,
            body: serde_json::to_vec(&serde_json::json!({
                "products": [product(100, 500, 1), product(400, 3000, 2), product(250, 800, 3)],
                "address": {"name": "Ada", "streetAddress": "1 Main St", "city": "Town",
                            "country": "DE", "phoneNumber": "+49 1"}
            }))?
            .into(),
        },
        Scenario::Preauth => Target {
            method: Method::POST,
            path: "/payment-3p/preauth".into(),
            token: None,
            payment_tokens: None,
            body: Bytes::from_static(br#"{"cardNumber":"4242424242424242","amount":12345}"#),
        },
        Scenario::Health => Target {
            method: Method::GET,
            path: "/healthz".into(),
            token: None,
            payment_tokens: None,
            body: Bytes::new(),
        },
        Scenario::Validate => {
            let catalogue: Vec<serde_json::Value> = serde_json::from_str(CATALOGUE)?;
            let lines: Vec<serde_json::Value> = catalogue
                .iter()
                .take(8)
                .map(|p| {
                    serde_json::json!({"productId": p["productId"], "name": p["name"],
                                       "package": p["package"], "price": p["price"], "quantity": 1})
                })
                .collect();
            Target {
                method: Method::POST,
                path: "/products/backend/validate".into(),
                token: Some(key.issue("bench")?),
                payment_tokens: None,
                body: serde_json::to_vec(&serde_json::json!({ "products": lines }))?.into(),
            }
        }
        Scenario::CreateOrder => {
            let body: Bytes = serde_json::to_vec(&serde_json::json!({
                "userId": "bench-shopper",
                "order": order_request(TOKEN_PLACEHOLDER)?,
            }))?
            .into();
            Target {
                method: Method::POST,
                path: "/orders/backend/orders".into(),
                token: Some(key.issue("bench")?),
                payment_tokens: Some(TokenPool::new(payment_tokens, &body)?),
                body,
            }
        }
        Scenario::GraphqlCreateOrder => {
            let body = graphql::create_order_body(&order_request(TOKEN_PLACEHOLDER)?);
            Target {
                method: Method::POST,
                path: "/graphql".into(),
                token: Some(
                    user_token
                        .context("graphql-create-order needs a signed-in shopper")?
                        .to_owned(),
                ),
                payment_tokens: Some(TokenPool::new(payment_tokens, &body)?),
                body,
            }
        }
        Scenario::Product => {
            let catalogue: Vec<serde_json::Value> = serde_json::from_str(CATALOGUE)?;
            let id = catalogue
                .first()
                .and_then(|p| p["productId"].as_str())
                .context("the sample catalogue is empty")?;
            Target {
                method: Method::GET,
                path: format!("/products/products/{id}"),
                token: None,
                payment_tokens: None,
                body: Bytes::new(),
            }
        }
        Scenario::GraphqlProducts => Target {
            method: Method::POST,
            path: "/graphql".into(),
            token: None,
            payment_tokens: None,
            body: graphql::products_body(),
        },
        Scenario::GraphqlProduct => Target {
            method: Method::POST,
            path: "/graphql".into(),
            token: None,
            payment_tokens: None,
            body: graphql::product_body(product_id),
        },
        Scenario::Journey => anyhow::bail!("journey is a sequence of requests, not one target"),
    })
}

/// The order both create-order scenarios place: three catalogue products,
/// delivered in Sweden (free delivery), paid by `payment_token`.
fn order_request(payment_token: &str) -> anyhow::Result<serde_json::Value> {
    let catalogue: Vec<serde_json::Value> = serde_json::from_str(CATALOGUE)?;
    let lines: Vec<serde_json::Value> = catalogue
        .iter()
        .take(3)
        .zip(1..)
        .map(|(p, quantity): (&serde_json::Value, i64)| {
            serde_json::json!({"productId": p["productId"], "name": p["name"],
                               "package": p["package"], "price": p["price"], "quantity": quantity})
        })
        .collect();
    Ok(serde_json::json!({
        "products": lines,
        "address": {"name": "Ada", "streetAddress": "Storgatan 1", "city": "Umeå",
                    "country": "SE", "phoneNumber": "+46 1"},
        "deliveryPrice": 0,
        "paymentToken": payment_token,
    }))
}

/// Runs the benchmark and prints its figures; `config` says which storage
/// and bus a platform booted in process uses.
pub async fn run(args: BenchArgs, config: &Config) -> anyhow::Result<()> {
    if args.scenario == Scenario::Journey {
        anyhow::ensure!(
            args.rate.is_none(),
            "journey is a closed loop of whole journeys: drop --rate"
        );
    }
    let (base, key, guard, stop) = match &args.url {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("http://"),
                "--url: '{url}' is not http://host:port (the load generator speaks plain HTTP)"
            );
            // The deployment's key, as every CLI command finds it.
            let key = ServiceKey::load_or_create(config.service_key.as_deref(), &config.data_dir).context(
                "set ECOM_SERVICE_KEY (or --data-dir) to sign credentials for the running platform",
            )?;
            (url.trim_end_matches('/').to_owned(), key, None, None)
        }
        None => {
            let dir = tempfile::tempdir().context("Failed to create a temporary data dir")?;
            let run_id = uuid::Uuid::new_v4().simple().to_string();
            let target = match &config.database_url {
                Some(url) => StorageTarget::Postgres {
                    url: url.clone(),
                    schema_prefix: format!("bench_{}_", &run_id[..10]),
                    max_connections: 10,
                },
                None => StorageTarget::Sqlite {
                    dir: dir.path().to_path_buf(),
                },
            };
            let config_args = ConfigArgs {
                listen: Some("127.0.0.1:0".into()),
                data_dir: Some(dir.path().to_path_buf()),
                bus_url: config.bus_url.clone(),
                bus_prefix: config.bus_url.as_ref().map(|_| format!("BENCH{}", &run_id[..10])),
                ..Default::default()
            };
            let mut platform_config = Config::merge(&config_args, ConfigFile::default(), &[], |_| None)?;
            // All the load comes from one address: lift the per-address
            // limits that would refuse it (docs/decisions.md).
            platform_config.users.sign_ups_per_hour = 0;
            platform_config.server.max_connections_per_address = platform_config.server.max_connections;
            println!(
                "storage: {}; bus: {}",
                describe(&target),
                match &config.bus_url {
                    Some(url) => format!("NATS JetStream at {url}"),
                    None => "embedded".to_owned(),
                }
            );
            if matches!(
                args.scenario,
                Scenario::Validate
                    | Scenario::Product
                    | Scenario::CreateOrder
                    | Scenario::GraphqlCreateOrder
                    | Scenario::GraphqlProducts
                    | Scenario::GraphqlProduct
                    | Scenario::Journey
            ) {
                crate::cli::products::import_text(&target, CATALOGUE).await?;
                if args.tracked {
                    let catalogue: Vec<serde_json::Value> = serde_json::from_str(CATALOGUE)?;
                    for id in catalogue.iter().filter_map(|p| p["productId"].as_str()) {
                        let id = ecom_model::parse_uuid(id).map_err(anyhow::Error::msg)?;
                        crate::cli::stock::set(&target, id, ecom_warehouse::stock::MAX_ON_HAND).await?;
                    }
                    println!("stock: every catalogue product tracked");
                }
            }
            let app = App::build_with(platform_config.clone(), &[], target.clone()).await?;
            let base = format!("http://{}", app.addr()?);
            let key = ServiceKey::load_or_create(None, dir.path())?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(app.run(async move {
                let _ = rx.await;
            }));
            let booted = Booted {
                _dir: dir,
                target,
                config: platform_config,
            };
            (base, key, Some(booted), Some((tx, handle)))
        }
    };
    let authority = base.trim_start_matches("http://").to_owned();
    let outcome = match (args.scenario, &guard) {
        (Scenario::Journey, Some(booted)) => journey::run(&args, &authority, &key, &booted.target).await,
        // A running deployment: its staff users are added to its database,
        // as `ecom users add` does beside it (same flags and environment).
        (Scenario::Journey, None) => {
            match StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone()) {
                Ok(target) => journey::run(&args, &authority, &key, &target).await,
                Err(e) => Err(e),
            }
        }
        _ => requests(&args, &base, &authority, &key, guard.as_ref().map(|b| &b.target)).await,
    };
    if let Some((tx, handle)) = stop {
        let _ = tx.send(());
        handle.await.context("the platform task panicked")??;
    }
    if let Some(booted) = guard {
        booted.clean_up().await;
    }
    outcome
}

/// The platform `run` booted: its data dir, and where it kept its data.
struct Booted {
    _dir: tempfile::TempDir,
    target: StorageTarget,
    config: Config,
}

impl Booted {
    /// Drops what the run left on shared servers: its PostgreSQL schemas
    /// and NATS streams (the data dir goes with `_dir`).
    async fn clean_up(self) {
        if let StorageTarget::Postgres {
            url, schema_prefix, ..
        } = &self.target
        {
            if let Err(e) = ecom_storage::drop_schemas(url, schema_prefix).await {
                eprintln!("warning: the benchmark's schemas ({schema_prefix}*) were not dropped: {e:#}");
            }
        }
        if let Some(url) = &self.config.bus_url {
            let deleted = match NatsBus::connect(url, self.config.bus.clone(), &self.config.bus_prefix).await
            {
                Ok(bus) => bus.delete_streams().await,
                Err(e) => Err(e),
            };
            if let Err(e) = deleted {
                eprintln!(
                    "warning: the benchmark's NATS streams ({}*) were not deleted: {e:#}",
                    self.config.bus_prefix
                );
            }
        }
    }
}

fn describe(target: &StorageTarget) -> String {
    match target {
        StorageTarget::Sqlite { dir } => format!("SQLite files in {}", dir.display()),
        StorageTarget::Postgres { schema_prefix, .. } => {
            format!("PostgreSQL, schemas {schema_prefix}* (dropped afterwards)")
        }
    }
}

/// The request scenarios: one target, loaded by every connection.
async fn requests(
    args: &BenchArgs,
    base: &str,
    authority: &str,
    key: &ServiceKey,
    booted: Option<&StorageTarget>,
) -> anyhow::Result<()> {
    let payment_tokens = match (args.scenario, booted) {
        (Scenario::CreateOrder | Scenario::GraphqlCreateOrder, Some(target)) => {
            // More than the fastest run seen sends (6,214 req/s), warm-up included.
            let per_second = args.rate.unwrap_or(10_000);
            let count = per_second.saturating_mul(args.duration + 1) as usize + args.connections;
            let started = Instant::now();
            let tokens = preauthorise(target, count).await?;
            println!(
                "pre-authorised {count} payment tokens (one per order) in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            tokens
        }
        (Scenario::CreateOrder | Scenario::GraphqlCreateOrder, None) => {
            let per_second = args.rate.unwrap_or(10_000);
            let count = per_second.saturating_mul(args.duration + 1) as usize + args.connections;
            let started = Instant::now();
            let tokens = preauthorise_over_http(authority, count).await?;
            println!(
                "pre-authorised {count} payment tokens through /payment-3p/preauth in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            tokens
        }
        _ => Vec::new(),
    };
    let product_id = match args.scenario {
        Scenario::GraphqlProducts | Scenario::GraphqlProduct => graphql::product_id(authority).await?,
        _ => String::new(),
    };
    let user_token = match args.scenario {
        Scenario::GraphqlCreateOrder => Some(graphql::shopper_token(authority).await?),
        _ => None,
    };
    let target = Arc::new(target(
        args.scenario,
        key,
        payment_tokens,
        &product_id,
        user_token.as_deref(),
    )?);
    println!(
        "ecom bench {:?}: {} connections, {} s{} against {base}",
        args.scenario,
        args.connections,
        args.duration,
        args.rate.map(|r| format!(", {r} req/s")).unwrap_or_default()
    );

    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(args.duration);
    let per_conn_interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r.max(1) as f64));
    let mut tasks = Vec::new();
    for i in 0..args.connections {
        let target = target.clone();
        let authority = authority.to_owned();
        let connections = args.connections;
        tasks.push(tokio::spawn(async move {
            let offset = per_conn_interval.map(|iv| iv.mul_f64(i as f64 / connections as f64));
            connection(target, authority, measure_from, end, per_conn_interval, offset).await
        }));
    }
    let mut latencies: Vec<u32> = Vec::new();
    let mut errors = 0u64;
    for t in tasks {
        let (lat, err) = t.await.context("a load connection panicked")??;
        latencies.extend(lat);
        errors += err;
    }
    latencies.sort_unstable();
    let seconds = args.duration as f64;
    let pct = |p: f64| percentile_ms(&latencies, p);
    println!(
        "requests: {}  errors: {}  throughput: {:.0} req/s  latency p50: {:.2} ms  p99: {:.2} ms  max: {:.2} ms",
        latencies.len(),
        errors,
        latencies.len() as f64 / seconds,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    if matches!(
        args.scenario,
        Scenario::CreateOrder | Scenario::GraphqlCreateOrder
    ) {
        // A refused order is a 200 too: count what was really stored.
        let created = ecom_runtime::metrics::counter("ecom_orders_created_total", "Orders created.", &[]);
        println!("orders stored (warm-up included): {}", created.get());
        if target.payment_tokens.as_ref().is_some_and(TokenPool::exhausted) {
            println!(
                "warning: the run sent more orders than it pre-authorised tokens for; \
                 the orders past them were refused (Payment token already used): use --rate"
            );
        }
    }
    Ok(())
}

/// The `p` quantile (0 to 1; 1 is the maximum) of latencies in µs sorted
/// ascending, in ms; 0 when there are none.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    let index = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().saturating_sub(1));
    sorted_us.get(index).map_or(0.0, |us| f64::from(*us) / 1000.0)
}

/// Pre-authorises a large amount `count` times at the payment-3p of the
/// platform whose data is at `target` (already migrated), as its own token
/// writer does (many tokens per statement); the tokens.
async fn preauthorise(target: &StorageTarget, count: usize) -> anyhow::Result<Vec<String>> {
    let db = ecom_storage::Db::open(target, ecom_payment_3p::NAME).await?;
    let amount = ecom_model::Money::try_from(i64::MAX / 2).map_err(anyhow::Error::msg)?;
    let writer = ecom_payment_3p::store::TokenWriter::start(db.clone());
    let mut tokens = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        // Enough at once to fill the writer's groups, few enough to bound memory.
        let batch = left.min(4096);
        let made = futures::future::join_all((0..batch).map(|_| writer.create(amount, "4242"))).await;
        for token in made {
            tokens.push(token?.to_string());
        }
        left -= batch;
    }
    drop(writer);
    db.close().await;
    Ok(tokens)
}

/// Pre-authorises the create-order scenarios' order total `count` times
/// through `POST /payment-3p/preauth` of the platform at `authority`, as
/// shoppers would (16 connections at once); the tokens.
async fn preauthorise_over_http(authority: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let total = journey::order_total(&order_request("-")?)?;
    let body: Bytes = serde_json::json!({ "cardNumber": "4242424242424242", "amount": total })
        .to_string()
        .into();
    let lanes = 16;
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (authority, body) = (authority.to_owned(), body.clone());
        let share = count / lanes + usize::from(lane < count % lanes);
        tasks.push(tokio::spawn(async move {
            let mut client = JsonClient::connect(&authority).await?;
            let mut tokens = Vec::with_capacity(share);
            for _ in 0..share {
                let (status, answer) = client
                    .send(Method::POST, "/payment-3p/preauth", None, body.clone())
                    .await?;
                let token = answer["paymentToken"].as_str().with_context(|| {
                    format!("pre-authorising through /payment-3p/preauth failed: {status} {answer}")
                })?;
                tokens.push(token.to_owned());
            }
            anyhow::Ok(tokens)
        }));
    }
    let mut tokens = Vec::with_capacity(count);
    for task in tasks {
        tokens.extend(task.await.context("a pre-authorising connection panicked")??);
    }
    Ok(tokens)
}

/// One keep-alive HTTP/1.1 connection for JSON calls: the setup steps of
/// the scenarios and the requests of a journey.
struct JsonClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl JsonClient {
    async fn connect(authority: &str) -> anyhow::Result<JsonClient> {
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("Failed to connect to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(JsonClient {
            sender,
            authority: authority.to_owned(),
        })
    }

    /// Sends `body` (JSON, or empty for a GET) with `token` as bearer
    /// credential; the status and the decoded answer (`Value::Null` when it
    /// is not JSON).
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        self.sender.ready().await?;
        let resp = self.sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

async fn connection(
    target: Arc<Target>,
    authority: String,
    measure_from: Instant,
    end: Instant,
    interval: Option<Duration>,
    offset: Option<Duration>,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let stream = TcpStream::connect(&authority)
        .await
        .with_context(|| format!("Failed to connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut next = Instant::now() + offset.unwrap_or_default();
    loop {
        if interval.is_some() {
            tokio::time::sleep_until(next.into()).await;
        }
        // In open-loop mode latency counts from when the request was due,
        // so a slow server cannot hide queueing (coordinated omission).
        let sent = if interval.is_some() { next } else { Instant::now() };
        if sent >= end {
            break;
        }
        let mut req = Request::builder()
            .method(target.method.clone())
            .uri(&target.path)
            .header(HOST, &authority)
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = &target.token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match &target.payment_tokens {
            Some(pool) => pool.body(),
            None => target.body.clone(),
        };
        let req = req.body(Full::new(body))?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        let done = Instant::now();
        if sent >= measure_from {
            if ok {
                latencies.push(done.duration_since(sent).as_micros().min(u32::MAX as u128) as u32);
            } else {
                errors += 1;
            }
        }
        if let Some(iv) = interval {
            next += iv;
        }
    }
    Ok((latencies, errors))
}

#[cfg(test)]
mod tests {
    use super::percentile_ms;

    #[test]
    fn percentiles_pick_from_the_sorted_latencies() {
        let us: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 0.50), 51.0);
        assert_eq!(percentile_ms(&us, 0.99), 100.0);
        assert_eq!(percentile_ms(&us, 1.0), 100.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }
}
