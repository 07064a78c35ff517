//! The `products` table, and the writes to it. Every write commits its
//! event to the outbox in the same transaction, so the bus hears of every
//! change exactly when it happens, whoever makes it (the admin API or
//! `ecom products import`).

use crate::domain::{content_differs, encode_token, Page, PageRequest, ProductInput};
use crate::events;
use anyhow::Context as _;
use ecom_model::{Money, NonNegative, Package, Product, Timestamp};
use ecom_platform::Outbox;
use ecom_runtime::ApiError;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Backend, Db, Row, Tx};
use std::collections::HashMap;
use uuid::Uuid;

const COLUMNS: &str =
    "product_id, name, category, price, width, length, height, weight, tags, pictures, created_date, modified_date";

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No product has this id.
    #[error("product '{0}' not found")]
    NotFound(Uuid),
    /// Create with an id that is taken.
    #[error("product '{0}' already exists")]
    Exists(Uuid),
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Internal(e.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            StoreError::Exists(_) => ApiError::conflict(e.to_string()),
            StoreError::Internal(e) => ApiError::internal(e),
        }
    }
}

fn from_row(row: &Row) -> anyhow::Result<Product> {
    let id: String = row.try_get(0)?;
    let dim = |i: usize| -> anyhow::Result<NonNegative> {
        NonNegative::try_from(row.try_get::<i64, _>(i)?).map_err(anyhow::Error::msg)
    };
    let list = |i: usize| -> anyhow::Result<Vec<String>> {
        Ok(serde_json::from_str(&row.try_get::<String, _>(i)?)?)
    };
    let date = |i: usize| -> anyhow::Result<Option<Timestamp>> {
        Ok(Some(
            Timestamp::parse(&row.try_get::<String, _>(i)?).map_err(anyhow::Error::msg)?,
        ))
    };
    let product = Product {
        product_id: Uuid::parse_str(&id)?,
        name: row.try_get(1)?,
        category: row.try_get(2)?,
        price: Money::try_from(row.try_get::<i64, _>(3)?).map_err(anyhow::Error::msg)?,
        package: Package {
            width: dim(4)?,
            length: dim(5)?,
            height: dim(6)?,
            weight: dim(7)?,
        },
        tags: list(8)?,
        pictures: list(9)?,
        created_date: date(10)?,
        modified_date: date(11)?,
    };
    Ok(product)
}

fn decode(rows: &[Row]) -> anyhow::Result<Vec<Product>> {
    rows.iter()
        .map(|r| from_row(r).context("Failed to read a stored product"))
        .collect()
}

/// One product.
pub async fn get(db: &Db, id: Uuid) -> anyhow::Result<Option<Product>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM products WHERE product_id = $1"))
        .bind(id.to_string())
        .fetch_optional(db.reader())
        .await
        .context("Failed to read a product")?;
    row.as_ref().map(from_row).transpose()
}

/// The stored products among `ids` (absent ids are simply missing).
pub async fn get_many(db: &Db, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, Product>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        let rows = select_in(db, COLUMNS, chunk).await?;
        found.extend(decode(&rows)?.into_iter().map(|p| (p.product_id, p)));
    }
    Ok(found)
}

/// What validation compares: the fields of a product an order copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Name.
    pub name: String,
    /// Shipping box.
    pub package: Package,
    /// Unit price.
    pub price: Money,
}

impl From<&Product> for Facts {
    fn from(p: &Product) -> Facts {
        Facts {
            name: p.name.clone(),
            package: p.package,
            price: p.price,
        }
    }
}

/// The [`Facts`] of the stored products among `ids`. Validation's hot path:
/// five columns and no JSON or date decoding, where [`get_many`] reads all.
pub async fn facts(db: &Db, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, Facts>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ecom_storage::ROWS_PER_STATEMENT) {
        let rows = select_in(
            db,
            "product_id, name, price, width, length, height, weight",
            chunk,
        )
        .await?;
        for row in &rows {
            let read = || -> anyhow::Result<(Uuid, Facts)> {
                let int = |i: usize| row.try_get::<i64, _>(i);
                let dim = |i: usize| -> anyhow::Result<NonNegative> {
                    NonNegative::try_from(int(i)?).map_err(anyhow::Error::msg)
                };
                let id = Uuid::parse_str(&row.try_get::<String, _>(0)?)?;
                let facts = Facts {
                    name: row.try_get(1)?,
                    price: Money::try_from(int(2)?).map_err(anyhow::Error::msg)?,
                    package: Package {
                        width: dim(3)?,
                        length: dim(4)?,
                        height: dim(5)?,
                        weight: dim(6)?,
                    },
                };
                Ok((id, facts))
            };
            let (id, facts) = read().context("Failed to read a stored product")?;
            found.insert(id, facts);
        }
    }
    Ok(found)
}

/// `SELECT columns FROM products WHERE product_id IN (ids)` (as
/// [`Backend::lookup_sql`] writes it).
async fn select_in(db: &Db, columns: &str, ids: &[Uuid]) -> anyhow::Result<Vec<Row>> {
    let sql = db.backend().lookup_sql(
        &format!("SELECT {columns} FROM products"),
        "product_id",
        ids.len(),
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id.to_string());
    }
    query
        .fetch_all(db.reader())
        .await
        .context("Failed to read products")
}

/// One page of the catalogue (or of one category), in product id order.
pub async fn page(db: &Db, req: &PageRequest) -> anyhow::Result<Page> {
    let mut sql = format!("SELECT {COLUMNS} FROM products WHERE 1 = 1");
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if req.category.is_some() {
        sql += &format!(" AND category = {}", param());
    }
    if req.after.is_some() {
        sql += &format!(" AND product_id > {}", param());
    }
    // One more than asked says whether another page follows.
    sql += &format!(" ORDER BY product_id LIMIT {}", param());
    let mut query = sqlx::query(&sql);
    if let Some(category) = &req.category {
        query = query.bind(category.clone());
    }
    if let Some(after) = req.after {
        query = query.bind(after.to_string());
    }
    let rows = query
        .bind(req.limit + 1)
        .fetch_all(db.reader())
        .await
        .context("Failed to list products")?;
    let mut products = decode(&rows)?;
    let next_token = if products.len() as i64 > req.limit {
        products.truncate(req.limit as usize);
        products.last().map(|p| encode_token(p.product_id))
    } else {
        None
    };
    Ok(Page { products, next_token })
}

/// The product, locked until `tx` ends so that concurrent writers of the
/// same product take turns (SQLite's `BEGIN IMMEDIATE` already serialises
/// every writer; PostgreSQL needs the row lock).
async fn get_for_update(tx: &mut Tx, backend: Backend, id: Uuid) -> anyhow::Result<Option<Product>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_id = $1{}",
        backend.for_update()
    ))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await
    .context("Failed to read a product")?;
    row.as_ref().map(from_row).transpose()
}

fn dates(p: &Product) -> (String, String) {
    let text = |t: Option<Timestamp>| t.unwrap_or_else(Timestamp::now).to_string();
    (text(p.created_date), text(p.modified_date))
}

async fn insert(tx: &mut Tx, p: &Product) -> Result<(), sqlx::Error> {
    let (created, modified) = dates(p);
    sqlx::query(
        "INSERT INTO products (product_id, name, category, price, width, length, height, weight,
                               tags, pictures, created_date, modified_date)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(p.product_id.to_string())
    .bind(p.name.clone())
    .bind(p.category.clone())
    .bind(p.price.cents())
    .bind(p.package.width.get())
    .bind(p.package.length.get())
    .bind(p.package.height.get())
    .bind(p.package.weight.get())
    .bind(json_list(&p.tags))
    .bind(json_list(&p.pictures))
    .bind(created)
    .bind(modified)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

async fn update_row(tx: &mut Tx, p: &Product) -> anyhow::Result<()> {
    let (_, modified) = dates(p);
    sqlx::query(
        "UPDATE products SET name = $2, category = $3, price = $4, width = $5, length = $6, height = $7,
                             weight = $8, tags = $9, pictures = $10, modified_date = $11
         WHERE product_id = $1",
    )
    .bind(p.product_id.to_string())
    .bind(p.name.clone())
    .bind(p.category.clone())
    .bind(p.price.cents())
    .bind(p.package.width.get())
    .bind(p.package.length.get())
    .bind(p.package.height.get())
    .bind(p.package.weight.get())
    .bind(json_list(&p.tags))
    .bind(json_list(&p.pictures))
    .bind(modified)
    .execute(&mut **tx)
    .await
    .context("Failed to update a product")?;
    Ok(())
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// Stores a new product (id generated when the input has none) and emits
/// `ProductCreated`. A taken id is [`StoreError::Exists`].
pub async fn create(db: &Db, outbox: &Outbox, input: ProductInput) -> Result<Product, StoreError> {
    let tx = db.begin().await?;
    add(tx, outbox, input).await
}

async fn add(mut tx: Tx, outbox: &Outbox, input: ProductInput) -> Result<Product, StoreError> {
    let id = input.product_id.unwrap_or_else(Uuid::new_v4);
    let now = Timestamp::now();
    let product = input.into_product(id, now, now);
    match insert(&mut tx, &product).await {
        Err(e) if ecom_storage::is_unique_violation(&e) => return Err(StoreError::Exists(id)),
        other => other.context("Failed to store a product")?,
    }
    outbox.push(&mut tx, &events::created(&product)?).await?;
    outbox.commit(tx).await?;
    Ok(product)
}

/// Replaces the content of product `id` (its creation date stays) and emits
/// `ProductModified`. Sending what is stored changes nothing and emits
/// nothing.
pub async fn update(db: &Db, outbox: &Outbox, id: Uuid, input: ProductInput) -> Result<Product, StoreError> {
    let mut tx = db.begin().await?;
    let old = get_for_update(&mut tx, db.backend(), id)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    replace(tx, outbox, old, input).await
}

async fn replace(
    mut tx: Tx,
    outbox: &Outbox,
    old: Product,
    input: ProductInput,
) -> Result<Product, StoreError> {
    let now = Timestamp::now();
    let new = input.into_product(old.product_id, old.created_date.unwrap_or(now), now);
    if !content_differs(&old, &new) {
        return Ok(old);
    }
    update_row(&mut tx, &new).await?;
    if let Some(event) = events::modified(&old, &new)? {
        outbox.push(&mut tx, &event).await?;
    }
    outbox.commit(tx).await?;
    Ok(new)
}

/// Removes product `id` and emits `ProductDeleted`; returns it as it was.
pub async fn delete(db: &Db, outbox: &Outbox, id: Uuid) -> Result<Product, StoreError> {
    let mut tx = db.begin().await?;
    let old = get_for_update(&mut tx, db.backend(), id)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    sqlx::query("DELETE FROM products WHERE product_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .context("Failed to delete a product")?;
    outbox.push(&mut tx, &events::deleted(&old)?).await?;
    outbox.commit(tx).await?;
    Ok(old)
}

/// What [`upsert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    /// The id was new.
    Created(Product),
    /// The stored product differed and was replaced.
    Updated(Product),
    /// The stored product was already the same.
    Unchanged(Product),
}

/// Creates the product, or replaces the stored one with the same id (for
/// imports: running the same file twice changes nothing the second time).
pub async fn upsert(db: &Db, outbox: &Outbox, input: ProductInput) -> Result<Upserted, StoreError> {
    let mut tx = db.begin().await?;
    let old = match input.product_id {
        Some(id) => get_for_update(&mut tx, db.backend(), id).await?,
        None => None,
    };
    match old {
        None => add(tx, outbox, input).await.map(Upserted::Created),
        Some(old) => {
            let new = replace(tx, outbox, old.clone(), input).await?;
            Ok(if new == old {
                Upserted::Unchanged(new)
            } else {
                Upserted::Updated(new)
            })
        }
    }
}
