//! `ecom products import FILE.json`: loads a catalogue file straight into
//! the products database named by the same flags as `ecom up` (migrating it
//! first), through the same store functions as the admin API. The events of
//! the changes wait in the outbox: a running server's relay sends them
//! within a moment, otherwise the next `ecom up` does.

use anyhow::Context as _;
use clap::Subcommand;
use ecom_platform::Outbox;
use ecom_products::import::{self, ImportReport};
use ecom_runtime::Config;
use ecom_storage::{Db, StorageTarget};
use std::path::{Path, PathBuf};

/// `ecom products …`
#[derive(Debug, Subcommand)]
pub enum ProductsCommand {
    /// Create or update the products of a JSON file (an array of products).
    Import {
        /// The file, e.g. data/catalogue.json.
        file: PathBuf,
    },
}

/// Runs a products command on the storage `config` names.
pub async fn run(config: &Config, command: ProductsCommand) -> anyhow::Result<()> {
    let target = StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone())?;
    match command {
        ProductsCommand::Import { file } => {
            let report = import_file(&target, &file).await?;
            println!("{}: {report}", file.display());
            Ok(())
        }
    }
}

/// Imports `file` into the products database of `target`.
pub async fn import_file(target: &StorageTarget, file: &Path) -> anyhow::Result<ImportReport> {
    let text = std::fs::read_to_string(file).with_context(|| format!("Failed to read {}", file.display()))?;
    import_text(target, &text).await
}

/// Imports `text` (a JSON array of products) into the products database of `target`.
pub async fn import_text(target: &StorageTarget, text: &str) -> anyhow::Result<ImportReport> {
    let db = open(target).await?;
    let report = import::import(&db, &Outbox::new(), text).await;
    db.close().await;
    report
}

async fn open(target: &StorageTarget) -> anyhow::Result<Db> {
    let name = ecom_products::NAME;
    let db = Db::open(target, name).await?;
    db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
        .await
        .context("Failed to add the outbox to the products database")?;
    db.migrate(name, ecom_products::MIGRATIONS)
        .await
        .context("Failed to migrate the products database")?;
    Ok(db)
}
