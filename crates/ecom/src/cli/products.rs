//! `ecom products import FILE.json`: loads a catalogue file straight into
//! the products database named by the same flags as `ecom up` (migrating it
//! first), through the same store functions as the admin API. The events of
//! the changes wait in the outbox: a running server's relay sends them
//! within a moment, otherwise the next `ecom up` does.
//!
//! A product may carry `"stock": N`: once the products are in, each such
//! product's units on hand are set in the warehouse (as `ecom stock set`).

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
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("Failed to read {}", file.display()))?;
            let report = import_text(&target, &text).await?;
            println!("{}: {report}", file.display());
            let refused = report.refused.len();
            let stock = import_stock(&target, &text).await?;
            if stock.set > 0 || !stock.refused.is_empty() {
                println!(
                    "{}: stock set for {}, refused {}",
                    file.display(),
                    stock.set,
                    stock.refused.len()
                );
                for reason in &stock.refused {
                    println!("  refused {reason}");
                }
            }
            // The rest was loaded; the exit status still says not all was.
            anyhow::ensure!(
                refused == 0 && stock.refused.is_empty(),
                "{} of the file's products were refused (see above); fix them and import again",
                refused + stock.refused.len()
            );
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

/// What the `stock` fields of an import did.
#[derive(Debug, Default)]
pub struct StockReport {
    /// Products whose stock was set.
    pub set: usize,
    /// Refused `stock` fields: the element and the reason.
    pub refused: Vec<String>,
}

/// Sets the stock of every product of `text` that has a `stock` field.
pub async fn import_stock(target: &StorageTarget, text: &str) -> anyhow::Result<StockReport> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).context("The file must hold a JSON array of products")?;
    let mut report = StockReport::default();
    for (i, item) in items.iter().enumerate() {
        let Some(stock) = item.get("stock") else {
            continue;
        };
        let id = item
            .get("productId")
            .and_then(|v| v.as_str())
            .map(ecom_model::parse_uuid);
        let (Some(n), Some(Ok(id))) = (stock.as_i64(), id) else {
            report.refused.push(format!(
                "[{i}]: stock: needs a whole number and the product's productId, got {stock}"
            ));
            continue;
        };
        match super::stock::set(target, id, n).await {
            Ok(_) => report.set += 1,
            Err(e) => report.refused.push(format!("[{i}]: stock: {e}")),
        }
    }
    Ok(report)
}
