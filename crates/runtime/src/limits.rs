//! Settings that protect the host and the accounts: the server's timeouts
//! and connection caps, which proxies may name the client, whether the bus
//! listener is served, and how hard sign-up and password hashing may be
//! pushed. Declared like the rest of [`crate::config`] (flags, then the
//! environment, then the TOML file, then defaults); kept in their own
//! module and TOML tables (`[server]`, `[users]`) so that they read as one
//! subject.

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Flags (each also an environment variable) of these settings; flattened
/// into [`crate::ConfigArgs`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// A proxy (IP or CIDR) whose X-Forwarded-For names the client;
    /// repeatable, or comma-separated in the environment [default: none]
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "ECOM_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<String>,
    /// Open connections served at once; past it a new one is answered 503
    /// and closed [default: 4096, lowered to fit the open-file limit]
    #[arg(long, env = "ECOM_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Open connections one client address may hold (trusted proxies are
    /// exempt) [default: 256]
    #[arg(long, env = "ECOM_MAX_CONNECTIONS_PER_ADDRESS", global = true)]
    pub max_connections_per_address: Option<usize>,
    /// Seconds a client has to send a request's headers [default: 10]
    #[arg(long, env = "ECOM_HEADER_TIMEOUT_SECONDS", global = true)]
    pub header_timeout_seconds: Option<u64>,
    /// Seconds a request may take until its answer starts [default: 30]
    #[arg(long, env = "ECOM_REQUEST_TIMEOUT_SECONDS", global = true)]
    pub request_timeout_seconds: Option<u64>,
    /// Serve the bus listener /platform/listener to staff (on/off) [default: on]
    #[arg(long, env = "ECOM_EVENT_LISTENER", value_name = "on|off", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub event_listener: Option<bool>,
    /// Sign-ups allowed per client address per hour (0: no limit) [default: 20]
    #[arg(long, env = "ECOM_SIGN_UPS_PER_HOUR", global = true)]
    pub sign_ups_per_hour: Option<u32>,
    /// Password hashes computed at once [default: the number of cores, at most 8]
    #[arg(long, env = "ECOM_HASH_CONCURRENCY", global = true)]
    pub hash_concurrency: Option<usize>,
    /// Password hashes waiting for a turn; past it sign-up and sign-in
    /// answer 503 with Retry-After [default: 64]
    #[arg(long, env = "ECOM_HASH_QUEUE", global = true)]
    pub hash_queue: Option<usize>,
}

/// `[server]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerFileSettings {
    /// See [`ServerSettings::trusted_proxies`].
    pub trusted_proxies: Option<Vec<String>>,
    /// See [`ServerSettings::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`ServerSettings::max_connections_per_address`].
    pub max_connections_per_address: Option<usize>,
    /// See [`ServerSettings::header_timeout`].
    pub header_timeout_seconds: Option<u64>,
    /// See [`ServerSettings::request_timeout`].
    pub request_timeout_seconds: Option<u64>,
    /// See [`ServerSettings::event_listener`].
    pub event_listener: Option<bool>,
}

/// `[users]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UsersFileSettings {
    /// See [`UsersSettings::sign_ups_per_hour`].
    pub sign_ups_per_hour: Option<u32>,
    /// See [`UsersSettings::hash_concurrency`].
    pub hash_concurrency: Option<usize>,
    /// See [`UsersSettings::hash_queue`].
    pub hash_queue: Option<usize>,
}

/// How the HTTP server protects itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Connections served at once (before the open-file limit lowers it).
    pub max_connections: usize,
    /// Connections one client address may hold.
    pub max_connections_per_address: usize,
    /// Time to receive a request's headers; the connection is closed after.
    pub header_timeout: Duration,
    /// Time from a request's headers to its answer's; 503 after.
    pub request_timeout: Duration,
    /// Whether `/platform/listener` is served (404 when not).
    pub event_listener: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            trusted_proxies: TrustedProxies::default(),
            max_connections: 4096,
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            event_listener: true,
        }
    }
}

/// How the users service limits sign-up and hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersSettings {
    /// Sign-ups per client address per hour; 0 for no limit.
    pub sign_ups_per_hour: u32,
    /// Password hashes computed at once.
    pub hash_concurrency: usize,
    /// Password hashes waiting; past it, 503.
    pub hash_queue: usize,
}

impl Default for UsersSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        UsersSettings {
            sign_ups_per_hour: 20,
            hash_concurrency: cores.clamp(1, 8),
            hash_queue: 64,
        }
    }
}

/// Resolves the server settings: `args` (flags, environment) over `file`
/// over the defaults.
pub fn server_settings(args: &LimitArgs, file: ServerFileSettings) -> anyhow::Result<ServerSettings> {
    let d = ServerSettings::default();
    let proxies = if args.trusted_proxies.is_empty() {
        file.trusted_proxies.unwrap_or_default()
    } else {
        args.trusted_proxies.clone()
    };
    let seconds = |flag: Option<u64>, file: Option<u64>, default: Duration, name: &str| match flag.or(file) {
        Some(0) => anyhow::bail!("{name}: must be at least 1 second"),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    };
    Ok(ServerSettings {
        trusted_proxies: TrustedProxies::parse(&proxies)?,
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections)
            .max(1),
        max_connections_per_address: args
            .max_connections_per_address
            .or(file.max_connections_per_address)
            .unwrap_or(d.max_connections_per_address)
            .max(1),
        header_timeout: seconds(
            args.header_timeout_seconds,
            file.header_timeout_seconds,
            d.header_timeout,
            "--header-timeout-seconds",
        )?,
        request_timeout: seconds(
            args.request_timeout_seconds,
            file.request_timeout_seconds,
            d.request_timeout,
            "--request-timeout-seconds",
        )?,
        event_listener: args
            .event_listener
            .or(file.event_listener)
            .unwrap_or(d.event_listener),
    })
}

/// Resolves the users settings like [`server_settings`].
pub fn users_settings(args: &LimitArgs, file: UsersFileSettings) -> UsersSettings {
    let d = UsersSettings::default();
    UsersSettings {
        sign_ups_per_hour: args
            .sign_ups_per_hour
            .or(file.sign_ups_per_hour)
            .unwrap_or(d.sign_ups_per_hour),
        hash_concurrency: args
            .hash_concurrency
            .or(file.hash_concurrency)
            .unwrap_or(d.hash_concurrency)
            .max(1),
        hash_queue: args.hash_queue.or(file.hash_queue).unwrap_or(d.hash_queue),
    }
}

/// The proxies whose `X-Forwarded-For` header names the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`-style ranges or single addresses.
    pub fn parse(items: &[String]) -> anyhow::Result<TrustedProxies> {
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .with_context(|| {
                        format!("--trusted-proxy: '{s}' is not an address or a range like 10.0.0.0/8")
                    })
            })
            .collect::<anyhow::Result<_>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with these
    /// `X-Forwarded-For` values: the peer itself unless it is a trusted
    /// proxy; otherwise the right-most forwarded address that is not a
    /// trusted proxy (each proxy appends the address it saw, so entries to
    /// the left of the last untrusted hop may be forged by the client).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in forwarded_for.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                // Unreadable: stop at the last address we could trust.
                return client;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                return client;
            }
        }
        client
    }

    /// The client address of a request served over a socket (`None` for
    /// in-process calls, which have no peer).
    pub fn client_of(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Some(self.client(peer, &forwarded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap();
        let cases: &[(&str, &[&str], &str)] = &[
            // Not a proxy: the header is the client's own claim.
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            // A proxy: the address it saw.
            ("10.1.2.3", &["1.2.3.4"], "1.2.3.4"),
            // The client forged an entry; the proxy appended the real one.
            ("10.1.2.3", &["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            // Two proxies in a row.
            ("192.168.1.1", &["1.2.3.4, 10.9.9.9"], "1.2.3.4"),
            // Several header lines read as one list.
            ("10.1.2.3", &["6.6.6.6", "1.2.3.4"], "1.2.3.4"),
            // Garbage: the last trusted hop.
            ("10.1.2.3", &["nonsense"], "10.1.2.3"),
            // No header.
            ("10.1.2.3", &[], "10.1.2.3"),
            // IPv4 seen through an IPv6 socket.
            ("::ffff:10.1.2.3", &["1.2.3.4"], "1.2.3.4"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(proxies.client(ip(peer), xff), ip(want), "{peer} {xff:?}");
        }
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy".into()]).is_err());
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), &["1.2.3.4"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_toml_tables_are_read_and_typos_refused() {
        let file: crate::ConfigFile = toml::from_str(
            r#"
            [server]
            trusted-proxies = ["10.0.0.0/8"]
            max-connections = 100
            event-listener = false
            [users]
            sign-ups-per-hour = 0
            hash-queue = 3
            "#,
        )
        .unwrap();
        let c = crate::Config::merge(&Default::default(), file, &[], |_| None).unwrap();
        assert_eq!(c.server.max_connections, 100);
        assert!(!c.server.event_listener);
        assert!(c.server.trusted_proxies.contains(ip("10.1.2.3")));
        assert_eq!((c.users.sign_ups_per_hour, c.users.hash_queue), (0, 3));
        assert!(toml::from_str::<crate::ConfigFile>("[server]\nmax-conections = 1").is_err());
        let defaults = crate::Config::merge(&Default::default(), Default::default(), &[], |_| None).unwrap();
        assert_eq!(defaults.server, ServerSettings::default());
        assert_eq!(defaults.users.sign_ups_per_hour, 20);
    }

    #[test]
    fn flags_beat_the_file_and_zero_timeouts_are_refused() {
        let file = ServerFileSettings {
            trusted_proxies: Some(vec!["10.0.0.1".into()]),
            max_connections: Some(100),
            header_timeout_seconds: Some(5),
            event_listener: Some(false),
            ..Default::default()
        };
        let args = LimitArgs {
            max_connections: Some(50),
            ..Default::default()
        };
        let s = server_settings(&args, file.clone()).unwrap();
        assert_eq!(s.max_connections, 50);
        assert_eq!(s.header_timeout, Duration::from_secs(5));
        assert_eq!(s.request_timeout, ServerSettings::default().request_timeout);
        assert!(!s.event_listener);
        assert!(s.trusted_proxies.contains(ip("10.0.0.1")));
        let args = LimitArgs {
            header_timeout_seconds: Some(0),
            ..Default::default()
        };
        assert!(server_settings(&args, file).is_err());
    }
}
