//! Configuration: defaults < TOML file < environment < flags, in one typed
//! struct.
//!
//! Flags and environment variables are read by clap (`--listen` /
//! `ECOM_LISTEN` …, the flag winning); the TOML file named by `--config` /
//! `ECOM_CONFIG` fills what neither gave; defaults fill the rest.

use crate::limits::{self, LimitArgs, ServerFileSettings, ServerSettings, UsersFileSettings, UsersSettings};
use anyhow::Context as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The flags shared by `ecom up`, `ecom serve` and the CLI commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "ECOM_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Directory for SQLite files, keys and the embedded bus [default: ./ecom-data]
    #[arg(long, env = "ECOM_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "ECOM_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// postgres://… to use PostgreSQL [default: SQLite files in the data dir]
    #[arg(long, env = "ECOM_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// nats://… to use NATS JetStream, or several servers of one cluster
    /// separated by commas (nats://a:4222,nats://b:4222) [default: the embedded bus]
    #[arg(long, env = "ECOM_BUS_URL", global = true)]
    pub bus_url: Option<String>,
    /// Replicas of the NATS streams when this process creates them (3 in a
    /// 3-node cluster); a start never lowers a stream's replicas [default: 1]
    #[arg(long, env = "ECOM_BUS_REPLICAS", global = true)]
    pub bus_replicas: Option<usize>,
    /// Connections in each local service's PostgreSQL pool [default: 5]
    #[arg(long, env = "ECOM_DATABASE_POOL_SIZE", global = true)]
    pub database_pool_size: Option<u32>,
    /// Prefix of the NATS stream and subject names, so several environments
    /// (or test runs) can share one NATS server [default: none]
    #[arg(long, env = "ECOM_BUS_PREFIX", global = true)]
    pub bus_prefix: Option<String>,
    /// Log format
    #[arg(long, env = "ECOM_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Secret that signs service credentials (hex); needed when services run
    /// as separate processes [default: generated into the data dir]
    #[arg(long, env = "ECOM_SERVICE_KEY", global = true, hide_env_values = true)]
    pub service_key: Option<String>,
    /// Base URL of another service, as NAME=URL (repeatable); several
    /// replicas as NAME=URL1,URL2; also ECOM_<SERVICE>_URL, e.g.
    /// ECOM_ORDERS_URL=http://10.0.0.5:8080,http://10.0.0.6:8080
    #[arg(long = "service-url", value_name = "NAME=URL", global = true)]
    pub service_urls: Vec<String>,
    /// Timeouts, connection caps, trusted proxies, sign-up and hashing limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The TOML file. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// See [`Config::listen`].
    pub listen: Option<String>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::database_url`].
    pub database_url: Option<String>,
    /// See [`Config::database_pool_size`].
    pub database_pool_size: Option<u32>,
    /// See [`Config::bus_url`].
    pub bus_url: Option<String>,
    /// See [`Config::bus_prefix`].
    pub bus_prefix: Option<String>,
    /// See [`Config::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Config::service_key`].
    pub service_key: Option<String>,
    /// Base URLs of services by name.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// Bus delivery settings.
    #[serde(default)]
    pub bus: BusFileSettings,
    /// Warehouse settings.
    #[serde(default)]
    pub warehouse: WarehouseFileSettings,
    /// Server protection settings (see `crate::limits`).
    #[serde(default)]
    pub server: ServerFileSettings,
    /// Sign-up and password hashing limits.
    #[serde(default)]
    pub users: UsersFileSettings,
}

/// `[warehouse]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WarehouseFileSettings {
    /// See [`Config::reservation_ttl`].
    pub reservation_ttl_seconds: Option<u64>,
}

/// How long a stock reservation waits for its order by default.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(10 * 60);

/// `[bus]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BusFileSettings {
    /// Delivery attempts before dead-lettering.
    pub max_attempts: Option<u32>,
    /// Oldest age (seconds) at which an event is still retried.
    pub max_age_seconds: Option<u64>,
    /// First retry delay in milliseconds (doubles each attempt).
    pub initial_backoff_ms: Option<u64>,
    /// Longest retry delay in milliseconds.
    pub max_backoff_ms: Option<u64>,
    /// Days the archive keeps events.
    pub retention_days: Option<u64>,
    /// Replicas of the NATS streams.
    pub replicas: Option<usize>,
}

/// How the bus retries and archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSettings {
    /// Delivery attempts before an event goes to the rule's dead-letter queue.
    pub max_attempts: u32,
    /// An event older than this is dead-lettered instead of retried.
    pub max_age: Duration,
    /// Delay before the first retry; doubled each attempt, with jitter.
    pub initial_backoff: Duration,
    /// Cap on the retry delay.
    pub max_backoff: Duration,
    /// How long the archive keeps events for replay.
    pub retention: Duration,
    /// Replicas of the NATS streams when created; never lowered on start.
    pub replicas: usize,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 3600),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 24 * 3600),
            replicas: 1,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Data directory (SQLite files, service key, embedded bus).
    pub data_dir: PathBuf,
    /// PostgreSQL URL, or `None` for SQLite files in the data dir.
    pub database_url: Option<String>,
    /// Connections in each service's PostgreSQL pool.
    pub database_pool_size: u32,
    /// NATS URL, or `None` for the embedded bus.
    pub bus_url: Option<String>,
    /// Prefix of NATS stream and subject names ("" by default).
    pub bus_prefix: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Hex secret for service credentials, if given.
    pub service_key: Option<String>,
    /// Base URLs of services that run elsewhere, by service name.
    pub service_urls: BTreeMap<String, String>,
    /// Bus retry and archive settings.
    pub bus: BusSettings,
    /// How long a stock reservation made by createOrder's checks waits for
    /// the order's `OrderCreated` before it is released (the caller crashed
    /// or the order was refused without a release reaching the warehouse).
    pub reservation_ttl: Duration,
    /// Timeouts, connection caps, trusted proxies, the listener switch.
    pub server: ServerSettings,
    /// Sign-up and password hashing limits.
    pub users: UsersSettings,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./ecom-data";
/// Default connections per service pool on PostgreSQL: 18 processes (every
/// service twice) stay under PostgreSQL's default `max_connections` of 100.
pub const DEFAULT_DATABASE_POOL_SIZE: u32 = 5;

impl Config {
    /// Resolves flags and environment (`args`), the TOML file they name, the
    /// `ECOM_<SERVICE>_URL` variables of `services`, and defaults.
    pub fn load(args: &ConfigArgs, services: &[&str]) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        Config::merge(args, file, services, |name| std::env::var(name).ok())
    }

    /// The merge itself, with the environment as a function so that tests
    /// can check the precedence without touching the process environment.
    pub fn merge(
        args: &ConfigArgs,
        file: ConfigFile,
        services: &[&str],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text
            .parse()
            .with_context(|| format!("--listen: '{listen_text}' is not an address like 127.0.0.1:8080"))?;
        let mut service_urls = file.services;
        for name in services {
            let var = format!("ECOM_{}_URL", name.to_uppercase().replace('-', "_"));
            if let Some(url) = env(&var).filter(|u| !u.is_empty()) {
                service_urls.insert((*name).to_owned(), url);
            }
        }
        for pair in &args.service_urls {
            let (name, url) = pair
                .split_once('=')
                .with_context(|| format!("--service-url: '{pair}' is not NAME=URL"))?;
            service_urls.insert(name.to_owned(), url.to_owned());
        }
        for url in service_urls.values_mut() {
            while url.ends_with('/') {
                url.pop();
            }
        }
        let defaults = BusSettings::default();
        let b = file.bus;
        let bus = BusSettings {
            max_attempts: b.max_attempts.unwrap_or(defaults.max_attempts).max(1),
            max_age: b
                .max_age_seconds
                .map(Duration::from_secs)
                .unwrap_or(defaults.max_age),
            initial_backoff: b
                .initial_backoff_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.initial_backoff),
            max_backoff: b
                .max_backoff_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.max_backoff),
            retention: b
                .retention_days
                .map(|d| Duration::from_secs(d * 24 * 3600))
                .unwrap_or(defaults.retention),
            replicas: args.bus_replicas.or(b.replicas).unwrap_or(defaults.replicas),
        };
        anyhow::ensure!(
            (1..=5).contains(&bus.replicas),
            "--bus-replicas: {} is not between 1 and 5 (what JetStream allows)",
            bus.replicas
        );
        let database_pool_size = args
            .database_pool_size
            .or(file.database_pool_size)
            .unwrap_or(DEFAULT_DATABASE_POOL_SIZE);
        anyhow::ensure!(
            database_pool_size >= 1,
            "--database-pool-size: a pool needs at least 1 connection"
        );
        Ok(Config {
            listen,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            database_url: args
                .database_url
                .clone()
                .or(file.database_url)
                .filter(|s| !s.is_empty()),
            database_pool_size,
            bus_url: args.bus_url.clone().or(file.bus_url).filter(|s| !s.is_empty()),
            bus_prefix: args.bus_prefix.clone().or(file.bus_prefix).unwrap_or_default(),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            service_key: args.service_key.clone().or(file.service_key),
            service_urls,
            bus,
            reservation_ttl: file
                .warehouse
                .reservation_ttl_seconds
                .map(|s| Duration::from_secs(s.max(1)))
                .unwrap_or(DEFAULT_RESERVATION_TTL),
            server: limits::server_settings(&args.limits, file.server)?,
            users: limits::users_settings(&args.limits, file.users),
        })
    }
}

impl ConfigFile {
    /// Reads and parses a TOML file; unknown keys are refused so typos show.
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("Invalid config file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap_or_else(|e| panic!("bad test TOML: {e}"))
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let c = Config::merge(&ConfigArgs::default(), ConfigFile::default(), &[], |_| None);
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.database_url, None);
        assert_eq!(c.bus, BusSettings::default());
    }

    #[test]
    fn file_beats_defaults_and_flags_or_environment_beat_the_file() {
        let f = file(
            r#"
            listen = "127.0.0.1:9000"
            data-dir = "/from/file"
            bus-url = "nats://file:4222"
            [services]
            orders = "http://file-orders/"
            [bus]
            max-attempts = 3
            "#,
        );
        let args = ConfigArgs {
            listen: Some("127.0.0.1:9100".into()),
            service_urls: vec!["payment=http://flag-payment".into()],
            ..Default::default()
        };
        let env = |name: &str| (name == "ECOM_ORDERS_URL").then(|| "http://env-orders".to_owned());
        let c = Config::merge(&args, f, &["orders", "payment"], env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.bus_url.as_deref(), Some("nats://file:4222"));
        assert_eq!(
            c.service_urls.get("orders").map(String::as_str),
            Some("http://env-orders")
        );
        assert_eq!(
            c.service_urls.get("payment").map(String::as_str),
            Some("http://flag-payment")
        );
        assert_eq!(c.bus.max_attempts, 3);
    }

    #[test]
    fn stream_replicas_and_pool_size_come_from_the_file_or_the_flags() {
        let c = Config::merge(&ConfigArgs::default(), ConfigFile::default(), &[], |_| None);
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.bus.replicas, c.database_pool_size),
            (1, DEFAULT_DATABASE_POOL_SIZE)
        );
        let f = || file("database-pool-size = 8\n[bus]\nreplicas = 3\n");
        let c = Config::merge(&ConfigArgs::default(), f(), &[], |_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.bus.replicas, c.database_pool_size), (3, 8));
        let args = ConfigArgs {
            bus_replicas: Some(5),
            database_pool_size: Some(2),
            ..Default::default()
        };
        let c = Config::merge(&args, f(), &[], |_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.bus.replicas, c.database_pool_size), (5, 2));
        for (replicas, pool) in [(Some(0), None), (Some(6), None), (None, Some(0))] {
            let args = ConfigArgs {
                bus_replicas: replicas,
                database_pool_size: pool,
                ..Default::default()
            };
            assert!(Config::merge(&args, ConfigFile::default(), &[], |_| None).is_err());
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let args = ConfigArgs {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let err = Config::merge(&args, ConfigFile::default(), &[], |_| None).err();
        assert!(err.is_some_and(|e| e.to_string().contains("--listen")));
        assert!(toml::from_str::<ConfigFile>("lisen = \"x\"").is_err());
    }
}
