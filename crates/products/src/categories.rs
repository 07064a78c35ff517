//! `GET /products/categories` (public, like the catalogue): the categories
//! the catalogue has, each with how many products are in it, by name. The
//! storefront's category menu reads it through the gateway's `categories`
//! query, instead of walking the catalogue to find them.
//!
//! Its own module; the route is declared with the others in [`crate::api`]
//! (and so is in the service's OpenAPI document).

use axum::extract::State;
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};
use ecom_storage::{sqlx, Db};
use serde::Serialize;
use sqlx::Row as _;

/// Most categories listed. A shop menu with more is no menu; the cap keeps
/// a catalogue that misuses categories (one per product) from answering
/// with all of them.
pub const MAX_CATEGORIES: i64 = 1000;

/// A category and how many products it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Category {
    /// As products name it.
    pub name: String,
    /// Products in it (at least 1).
    pub count: i64,
}

/// The answer: categories by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Categories {
    /// At most [`MAX_CATEGORIES`].
    pub categories: Vec<Category>,
}

/// `GET /products/categories`.
#[utoipa::path(get, path = "/categories", tag = "catalogue",
    responses((status = 200, body = Categories, description = "The catalogue's categories by name, each with its number of products (at most 1,000)")))]
#[tracing::instrument(skip_all)]
pub(crate) async fn list(State(ctx): State<Context>) -> Result<Json<Categories>, ApiError> {
    Ok(Json(Categories {
        categories: read(&ctx.db).await?,
    }))
}

/// The categories, by name; products without one are not counted.
pub async fn read(db: &Db) -> anyhow::Result<Vec<Category>> {
    use anyhow::Context as _;
    let rows = sqlx::query(
        "SELECT category, COUNT(*) FROM products WHERE category IS NOT NULL \
         GROUP BY category ORDER BY category LIMIT $1",
    )
    .bind(MAX_CATEGORIES)
    .fetch_all(db.reader())
    .await
    .context("Failed to read the categories")?;
    rows.iter()
        .map(|r| {
            Ok(Category {
                name: r.try_get(0)?,
                count: r.try_get(1)?,
            })
        })
        .collect()
}
