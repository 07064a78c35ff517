//! Building and running the platform: one database per service, one router
//! with every service under `/<service>/`, health and metrics routes.

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ecom_contracts::Service;
use ecom_platform::bus::embedded::{self, EmbeddedBus};
use ecom_platform::bus::nats::NatsBus;
use ecom_platform::bus::BusBackend;
use ecom_platform::{Bus, Context, Outbox, ServiceDef};
use ecom_runtime::client::LocalRouter;
use ecom_runtime::{Clients, Config, ServiceKey};
use ecom_storage::{Db, StorageTarget};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every service this binary knows, in start order.
pub const SERVICES: &[ServiceDef] = &[
    ecom_users::SERVICE,
    ecom_payment_3p::SERVICE,
    ecom_delivery_pricing::SERVICE,
    ecom_products::SERVICE,
    ecom_orders::SERVICE,
    ecom_payment::SERVICE,
    ecom_warehouse::SERVICE,
    ecom_delivery::SERVICE,
    ecom_frontend_api::SERVICE,
];

/// Services whose routes are mounted at the root of the listener instead of
/// under `/<name>`: the GraphQL gateway answers at `/graphql`, as the
/// public interface says (it keeps anything else under `/frontend-api/`).
const AT_ROOT: &[&str] = &[ecom_frontend_api::NAME];

/// The services each service cannot work without calling: running one
/// without the others (here or at a URL) is refused at start rather than
/// failing every request later.
const CALLS: &[(&str, &[&str])] = &[
    (
        ecom_orders::NAME,
        &[
            ecom_products::NAME,
            ecom_delivery_pricing::NAME,
            ecom_payment::NAME,
            ecom_warehouse::NAME,
        ],
    ),
    // payment also reads orders when it settles, but validation (what
    // createOrder waits for) needs only the processor; a settlement without
    // orders is retried by the bus.
    (ecom_payment::NAME, &[ecom_payment_3p::NAME]),
    (ecom_delivery::NAME, &[ecom_orders::NAME]),
    (
        ecom_frontend_api::NAME,
        &[
            ecom_users::NAME,
            ecom_products::NAME,
            ecom_orders::NAME,
            ecom_delivery_pricing::NAME,
            ecom_warehouse::NAME,
            ecom_delivery::NAME,
            // refundOrder
            ecom_payment::NAME,
        ],
    ),
];

/// Refuses to start `defs` when a service they call neither runs here nor
/// has a URL, naming the variables to set.
fn check_reachable(defs: &[&ServiceDef], config: &Config) -> anyhow::Result<()> {
    let here: BTreeSet<&str> = defs.iter().map(|d| d.name).collect();
    let mut missing: BTreeSet<&str> = BTreeSet::new();
    for (caller, callees) in CALLS {
        if here.contains(caller) {
            missing.extend(
                callees
                    .iter()
                    .filter(|c| !here.contains(*c) && !config.service_urls.contains_key(**c)),
            );
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let vars: Vec<String> = missing
        .iter()
        .map(|m| format!("ECOM_{}_URL", m.to_uppercase().replace('-', "_")))
        .collect();
    anyhow::bail!(
        "the services started here call {} but they neither run here nor have a URL: set {} (or --service-url NAME=URL), or run them in this process",
        missing.into_iter().collect::<Vec<_>>().join(", "),
        vars.join(", ")
    )
}

/// The names of every service.
pub fn service_names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

/// Finds services by name, refusing unknown names with the list of known ones.
pub fn select(names: &[String]) -> anyhow::Result<Vec<&'static ServiceDef>> {
    if names.is_empty() {
        return Ok(SERVICES.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            SERVICES.iter().find(|s| s.name == n).with_context(|| {
                format!(
                    "unknown service '{n}'; the services are: {}",
                    service_names().join(", ")
                )
            })
        })
        .collect()
}

/// Creates or upgrades the databases of the named services (all when
/// none) on `target`, with their outbox tables, and the embedded bus's
/// tables in the platform database when the bus is embedded (NATS creates
/// its streams itself). Returns one line per database, for the operator.
pub async fn migrate(
    config: &Config,
    target: &StorageTarget,
    services: &[String],
) -> anyhow::Result<Vec<String>> {
    let defs = select(services)?;
    let mut report = Vec::new();
    if config.bus_url.is_none() {
        let db = Db::open(target, "platform")
            .await
            .context("Failed to open the platform database")?;
        let result = db
            .migrate(embedded::SCOPE, embedded::MIGRATIONS)
            .await
            .context("Failed to create the tables of the embedded bus");
        db.close().await;
        result?;
        report.push(format!(
            "platform: up to date (embedded bus, {} migrations)",
            embedded::MIGRATIONS.len()
        ));
    }
    for def in defs {
        let db = Db::open(target, def.name)
            .await
            .with_context(|| format!("Failed to open the database of {}", def.name))?;
        let result = async {
            db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
                .await
                .with_context(|| format!("Failed to add the outbox to the database of {}", def.name))?;
            db.migrate(def.name, def.migrations)
                .await
                .with_context(|| format!("Failed to migrate {}", def.name))
        }
        .await;
        db.close().await;
        result?;
        report.push(format!(
            "{}: up to date ({} migrations)",
            def.name,
            def.migrations.len()
        ));
    }
    Ok(report)
}

/// The bus `--bus-url` names: the embedded one (tables in the platform
/// database, `<data-dir>/platform.db` or the `platform` schema) when unset,
/// NATS JetStream for `nats://…`. Also returns the platform database, to
/// close on the way out, when the embedded bus uses one.
pub async fn open_bus(config: &Config, target: &StorageTarget) -> anyhow::Result<(Bus, Option<Db>)> {
    match config.bus_url.as_deref() {
        None => {
            let db = Db::open(target, "platform")
                .await
                .context("Failed to open the platform database")?;
            let backend = EmbeddedBus::open(db.clone(), config.bus.clone()).await?;
            Ok((Bus::new(Arc::new(backend) as Arc<dyn BusBackend>), Some(db)))
        }
        // One server, or several of one cluster separated by commas.
        Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
            let backend = NatsBus::connect(url, config.bus.clone(), &config.bus_prefix).await?;
            Ok((Bus::new(Arc::new(backend) as Arc<dyn BusBackend>), None))
        }
        Some(url) => anyhow::bail!(
            "unsupported bus URL '{url}': use nats://host:4222 (or nats://a:4222,nats://b:4222 for a cluster), or leave --bus-url unset for the embedded bus"
        ),
    }
}

/// A built platform, bound to its listener but not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    dbs: Vec<Db>,
    services: Vec<&'static str>,
    bus: Bus,
    relays: Vec<(&'static str, Db, Outbox)>,
    config: Arc<Config>,
    verifier: ecom_runtime::auth::Verifier,
    /// Cancelled once serving stops (see [`Context::shutdown`]).
    stop: CancellationToken,
}

impl App {
    /// Builds the named services (all when empty) with the storage the
    /// configuration names.
    pub async fn build(config: Config, names: &[String]) -> anyhow::Result<App> {
        let target = StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone())?
            .with_pool_size(config.database_pool_size);
        App::build_with(config, names, target).await
    }

    /// Builds with an explicit storage target (tests use a schema prefix).
    pub async fn build_with(config: Config, names: &[String], target: StorageTarget) -> anyhow::Result<App> {
        let defs = select(names)?;
        check_reachable(&defs, &config)?;
        let key = ServiceKey::load_or_create(config.service_key.as_deref(), &config.data_dir)?;
        let config = Arc::new(config);
        let local: BTreeSet<String> = defs.iter().map(|d| d.name.to_owned()).collect();
        let local_router: LocalRouter = Arc::new(OnceLock::new());
        let clients = Clients::new(
            key.clone(),
            "ecom",
            local,
            local_router.clone(),
            config.service_urls.clone(),
        );

        // One verifier for every service: it fetches the users service's
        // public keys (in process or over HTTP) and caches them.
        let verifier =
            ecom_runtime::auth::Verifier::from_users(clients.for_caller("ecom").get(Service::Users));

        let (bus, platform_db) = open_bus(&config, &target).await?;
        let stop = CancellationToken::new();
        let mut router = Router::new();
        let mut dbs: Vec<(&'static str, Db)> = platform_db.into_iter().map(|db| ("platform", db)).collect();
        let mut relays = Vec::new();
        for def in &defs {
            let db = Db::open(&target, def.name)
                .await
                .with_context(|| format!("Failed to open the database of {}", def.name))?;
            db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
                .await
                .with_context(|| format!("Failed to add the outbox to the database of {}", def.name))?;
            db.migrate(def.name, def.migrations)
                .await
                .with_context(|| format!("Failed to migrate the database of {}", def.name))?;
            let outbox = Outbox::new();
            relays.push((def.name, db.clone(), outbox.clone()));
            let ctx = Context {
                name: def.name,
                db: db.clone(),
                config: config.clone(),
                key: key.clone(),
                clients: clients.for_caller(def.name),
                outbox,
                bus: bus.clone(),
                verifier: verifier.clone(),
                shutdown: stop.clone(),
            };
            let service_router = (def.build)(ctx)
                .await
                .with_context(|| format!("Failed to start {}", def.name))?;
            router = if AT_ROOT.contains(&def.name) {
                router.merge(service_router)
            } else {
                router.nest(&format!("/{}", def.name), service_router)
            };
            dbs.push((def.name, db));
        }
        // The storefront and console go where `/graphql` is: they call it by relative URL.
        let pages = if defs.iter().any(|d| d.name == ecom_frontend_api::NAME) {
            ecom_web::router()
        } else {
            Router::new()
        };
        let health = crate::health::Health::new(dbs.clone(), bus.clone(), clients.clone());
        let router = router
            .route("/healthz", get(crate::health::healthz))
            .route("/readyz", get(crate::health::readyz).with_state(health))
            .route("/metrics", get(metrics));
        // Admins only: the console's bus page (rules, dead letters).
        let router = router.merge(ecom_platform::admin::router(bus.clone()));
        // Staff only, and left out (404) when the operator turned it off.
        let router = if config.server.event_listener {
            router.merge(ecom_platform::listener::router(bus.clone(), key.clone()))
        } else {
            router
        };
        // Lets any handler take `ecom_runtime::auth::User`.
        let router = router.merge(pages).layer(axum::Extension(verifier.clone()));
        let router = ecom_runtime::server::finish(router);
        // Set before serving, so in-process calls never find it missing.
        let _ = local_router.set(router.clone());

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", config.listen))?;
        Ok(App {
            listener,
            router,
            dbs: dbs.into_iter().map(|(_, db)| db).collect(),
            services: defs.iter().map(|d| d.name).collect(),
            bus,
            relays,
            config,
            verifier,
            stop,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("Failed to read the bound address")
    }

    /// The router, for in-process tests and benchmarks.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The bus (tests watch its feed).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The services this app runs.
    pub fn services(&self) -> &[&'static str] {
        &self.services
    }

    /// Serves until `shutdown` completes, then finishes requests in flight
    /// and closes the databases.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = self.stop;
        let delivery = self
            .bus
            .start(stop.clone())
            .await
            .context("Failed to start event delivery")?;
        let relays: Vec<_> = self
            .relays
            .into_iter()
            .map(|(name, db, outbox)| {
                tokio::spawn(ecom_platform::relay::run(
                    name,
                    db,
                    outbox,
                    self.bus.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // Revocations made by the users service of other processes.
        let revocations = tokio::spawn(self.verifier.poll_revocations(stop.clone().cancelled_owned()));
        let served =
            ecom_runtime::server::serve(self.listener, self.router, &self.config.server, shutdown).await;
        // Requests are finished; end subscriptions, stop relaying and
        // delivering, then close.
        stop.cancel();
        for relay in relays {
            let _ = relay.await;
        }
        let _ = delivery.await;
        let _ = revocations.await;
        served.context("HTTP server failed")?;
        for db in &self.dbs {
            db.close().await;
        }
        Ok(())
    }
}

async fn metrics() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ecom_runtime::metrics::render(),
    )
}
