//! `ecom stock set PRODUCT_ID N` and `ecom stock get PRODUCT_ID`: a
//! product's stock, straight in the warehouse database named by the same
//! flags as `ecom up` (migrating it first). The `StockChanged` event waits
//! in the outbox: a running server's relay sends it within a moment,
//! otherwise the next `ecom up` does. Also used by `ecom products import`
//! for the `stock` field of a catalogue file.

use anyhow::Context as _;
use clap::Subcommand;
use ecom_platform::Outbox;
use ecom_runtime::Config;
use ecom_storage::{Db, StorageTarget};
use ecom_warehouse::stock::{self, SetRefused, Stock};
use uuid::Uuid;

/// `ecom stock …`
#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Set a product's units on hand (the product becomes tracked).
    Set {
        /// The product's id.
        product_id: String,
        /// Units on hand (0 or more; not below what orders hold).
        on_hand: i64,
    },
    /// Show a product's stock.
    Get {
        /// The product's id.
        product_id: String,
    },
}

/// Runs a stock command on the storage `config` names.
pub async fn run(config: &Config, command: StockCommand) -> anyhow::Result<()> {
    let target = StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone())?;
    match command {
        StockCommand::Set { product_id, on_hand } => {
            let id = parse_id(&product_id)?;
            let stock = set(&target, id, on_hand).await?;
            println!("{}", show(&stock));
        }
        StockCommand::Get { product_id } => {
            let id = parse_id(&product_id)?;
            let db = open(&target, ecom_warehouse::NAME, ecom_warehouse::MIGRATIONS).await?;
            let found = stock::get(&db, id).await;
            db.close().await;
            match found? {
                Some(stock) => println!("{}", show(&stock)),
                None => println!("{id}: untracked (unlimited)"),
            }
        }
    }
    Ok(())
}

fn parse_id(text: &str) -> anyhow::Result<Uuid> {
    ecom_model::parse_uuid(text).map_err(|e| anyhow::anyhow!("PRODUCT_ID: {e}"))
}

fn show(s: &Stock) -> String {
    format!(
        "{}: onHand {}, reserved {}, available {}",
        s.product_id, s.on_hand, s.reserved, s.available
    )
}

/// Sets the stock of a product the catalogue has; refused (nothing changed)
/// when `on_hand` is negative or below what orders hold, or the product is
/// unknown.
pub async fn set(target: &StorageTarget, product_id: Uuid, on_hand: i64) -> anyhow::Result<Stock> {
    if !(0..=stock::MAX_ON_HAND).contains(&on_hand) {
        anyhow::bail!("N: must be between 0 and {}, got {on_hand}", stock::MAX_ON_HAND);
    }
    let products = open(target, ecom_products::NAME, ecom_products::MIGRATIONS).await?;
    let known = ecom_products::store::get(&products, product_id).await;
    products.close().await;
    if known?.is_none() {
        anyhow::bail!("PRODUCT_ID: the catalogue has no product {product_id} (import or create it first)");
    }
    let db = open(target, ecom_warehouse::NAME, ecom_warehouse::MIGRATIONS).await?;
    let result = stock::set(&db, &Outbox::new(), product_id, on_hand).await;
    db.close().await;
    match result? {
        Ok(stock) => Ok(stock),
        Err(SetRefused::BelowReserved { reserved }) => anyhow::bail!(
            "N: {reserved} units of product {product_id} are reserved for orders, so onHand cannot go below {reserved} (got {on_hand})"
        ),
    }
}

async fn open(
    target: &StorageTarget,
    name: &str,
    migrations: &'static [ecom_storage::Migration],
) -> anyhow::Result<Db> {
    let db = Db::open(target, name).await?;
    db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
        .await
        .with_context(|| format!("Failed to add the outbox to the {name} database"))?;
    db.migrate(name, migrations)
        .await
        .with_context(|| format!("Failed to migrate the {name} database"))?;
    Ok(db)
}
