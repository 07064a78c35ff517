//! The command line: `ecom up`, `ecom serve`, `ecom migrate`, `ecom token`,
//! `ecom users`, `ecom events`, `ecom products`, `ecom stock`, `ecom bench`.

mod events;
pub mod products;
pub mod stock;
pub mod users;

use crate::app::{self, App};
use clap::{Parser, Subcommand};
use ecom_runtime::{Config, ConfigArgs, ServiceKey};
use ecom_storage::StorageTarget;

/// An e-commerce backend: every service of the shop in one binary.
#[derive(Debug, Parser)]
#[command(name = "ecom", version, about)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process.
    Up,
    /// Run only the named services (the others are reached at ECOM_<SERVICE>_URL).
    Serve {
        /// Services to run.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Create or upgrade the databases of the named services (all when none) and
    /// the embedded bus's tables, then exit.
    Migrate {
        /// Services to migrate.
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Load-test the HTTP routes (boots a platform in process unless --url is given).
    Bench(crate::bench::BenchArgs),
    /// Manage user accounts directly in the users database.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Print a short-lived service credential, for calling /backend/ routes by hand.
    Token {
        /// The calling service the credential names.
        #[arg(long)]
        service: String,
    },
    /// Put and watch events, list rules, inspect, redrive and purge dead letters, replay.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Manage the catalogue (`ecom products import FILE.json`).
    Products {
        #[command(subcommand)]
        command: products::ProductsCommand,
    },
    /// See and set a product's stock in the warehouse (`ecom stock set PRODUCT_ID N`).
    Stock {
        #[command(subcommand)]
        command: stock::StockCommand,
    },
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        let names = app::service_names();
        let config = Config::load(&self.config, &names)?;
        let telemetry = ecom_runtime::telemetry::init(config.log_format);
        if self.command.needs_existing_data() {
            require_existing_data(&config)?;
        }
        let outcome = self.command.run(config).await;
        // The last spans of the run leave before the process ends.
        telemetry.shutdown().await;
        outcome
    }
}

impl Command {
    async fn run(self, config: Config) -> anyhow::Result<()> {
        match self {
            Command::Up => up(config, &[]).await,
            Command::Serve { services } => up(config, &services).await,
            Command::Migrate { services } => migrate(config, &services).await,
            Command::Bench(args) => crate::bench::run(args, &config).await,
            Command::Users { command } => users::run(&config, command).await,
            Command::Events { command } => events::run(config, command).await,
            Command::Token { service } => {
                let key = ServiceKey::load_or_create(config.service_key.as_deref(), &config.data_dir)?;
                println!("{}", key.issue(&service)?);
                Ok(())
            }
            Command::Products { command } => products::run(&config, command).await,
            Command::Stock { command } => stock::run(&config, command).await,
        }
    }

    /// Commands that work on data a server made: run in the wrong directory
    /// they must not make a fresh, empty data dir and report success.
    fn needs_existing_data(&self) -> bool {
        matches!(
            self,
            Command::Users { .. }
                | Command::Token { .. }
                | Command::Events { .. }
                | Command::Products { .. }
                | Command::Stock { .. }
        )
    }
}

/// Refuses to go on when the SQLite data dir the flags name does not hold
/// a platform's data (PostgreSQL is checked by connecting). A service key
/// given by flag or environment is enough for `ecom token`.
fn require_existing_data(config: &Config) -> anyhow::Result<()> {
    if config.database_url.is_some() {
        return Ok(());
    }
    let dir = &config.data_dir;
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let has_data = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".db") || name == "service.key"
        })
    });
    anyhow::ensure!(
        has_data,
        "no ecom data in {}: run this where `ecom up` keeps its data, or point at it with --data-dir DIR \
         (or ECOM_DATA_DIR, or --database-url for PostgreSQL); `ecom up` or `ecom migrate` creates a new one",
        shown.display()
    );
    Ok(())
}

async fn up(config: Config, services: &[String]) -> anyhow::Result<()> {
    let app = App::build(config.clone(), services).await?;
    let addr = app.addr()?;
    let base = format!("http://{addr}");
    println!("ecom is running at {base}");
    for name in app.services() {
        if *name == ecom_frontend_api::NAME {
            println!("  {name:<17} {base}/graphql");
            println!("  storefront        {base}/");
            println!("  staff console     {base}/console");
        } else {
            println!("  {name:<17} {base}/{name}/");
        }
    }
    println!("  health            {base}/healthz  {base}/readyz  {base}/metrics");
    println!("  storage           {}", describe_storage(&config));
    println!("Stop with Ctrl-C.");
    tracing::info!(%addr, services = ?app.services(), "serving");
    app.run(ecom_runtime::server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

fn describe_storage(config: &Config) -> String {
    match &config.database_url {
        Some(url) => format!("PostgreSQL {}", redact(url)),
        None => format!("SQLite files in {}", config.data_dir.display()),
    }
}

/// Hides the password of a connection URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

async fn migrate(config: Config, services: &[String]) -> anyhow::Result<()> {
    let target = StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone())?;
    for line in app::migrate(&config, &target, services).await? {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_printed_urls() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn the_command_line_parses() {
        Cli::command_for_test().debug_assert();
    }

    impl Cli {
        fn command_for_test() -> clap::Command {
            <Cli as clap::CommandFactory>::command()
        }
    }
}
