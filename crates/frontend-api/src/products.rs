//! Catalogue queries, open to anyone: the products service's public routes
//! (`GET /products/products`, `GET /products/products/{productId}`,
//! `GET /products/categories`).

use crate::error::{self, error};
use crate::page::{self, Position, PAGE_SIZE};
use crate::types::Product;
use async_graphql::{Context, Object, SimpleObject, ID};
use ecom_contracts::Service;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A page of products.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedProducts {
    /// At most 20 products.
    pub products: Vec<Product>,
    /// Pass to `getProducts(nextToken:)` for the next page; null on the last.
    pub next_token: Option<String>,
}

/// A category of the catalogue (the storefront's menu).
#[derive(Debug, Clone, SimpleObject, Deserialize)]
pub struct Category {
    /// As products name it; `getProductsByCategory(category:)` takes it.
    pub name: String,
    /// How many products it holds.
    pub count: i32,
}

#[derive(Deserialize)]
struct Categories {
    categories: Vec<Category>,
}

/// The catalogue's part of `Query`.
#[derive(Default)]
pub struct ProductsQuery;

const LIST: &str = "products";

#[Object]
impl ProductsQuery {
    /// The catalogue, a page at a time. Also continues a
    /// `getProductsByCategory` listing when given its `nextToken`.
    async fn get_products(
        &self,
        ctx: &Context<'_>,
        next_token: Option<String>,
    ) -> async_graphql::Result<PaginatedProducts> {
        let gw = crate::gateway(ctx)?;
        let (category, inner) = match next_token.as_deref().filter(|t| !t.is_empty()) {
            None => (None, None),
            Some(token) => {
                let position = page::unwrap(&gw.key, token)?;
                if position.list != LIST {
                    return Err(error(
                        error::BAD_USER_INPUT,
                        "nextToken: this token belongs to another list",
                    ));
                }
                (
                    Some(position.extra).filter(|c| !c.is_empty()),
                    Some(position.inner),
                )
            }
        };
        list(ctx, category, inner).await
    }

    /// The catalogue's categories by name, each with its number of
    /// products (at most 1000 categories). Public, like the catalogue.
    async fn categories(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Category>> {
        let client = crate::client(ctx, Service::Products)?.anonymous();
        let answer: Categories = client.get("/categories").await.map_err(error::from_client)?;
        Ok(answer.categories)
    }

    /// One product; null when the catalogue has no such product.
    async fn get_product(&self, ctx: &Context<'_>, product_id: ID) -> async_graphql::Result<Option<Product>> {
        let gw = crate::gateway(ctx)?;
        let path = format!("/products/{}", page::id_segment("productId", &product_id)?);
        if let Some(found) = gw.catalogue.product(&path) {
            return Ok(found);
        }
        let client = crate::client(ctx, Service::Products)?.anonymous();
        let found = match client.get::<Product>(&path).await {
            Ok(product) => Some(product),
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => None,
            Err(e) => return Err(error::from_client(e)),
        };
        gw.catalogue.keep_product(path, found.clone());
        Ok(found)
    }

    /// The products of one category, a page at a time; follow `nextToken`
    /// with `getProducts(nextToken:)` (this query takes no token, as in the
    /// original schema; the token remembers the category).
    async fn get_products_by_category(
        &self,
        ctx: &Context<'_>,
        category: String,
    ) -> async_graphql::Result<PaginatedProducts> {
        if category.contains('\0') {
            return Err(error(error::BAD_USER_INPUT, "category: must not contain NUL"));
        }
        list(ctx, Some(category), None).await
    }
}

async fn list(
    ctx: &Context<'_>,
    category: Option<String>,
    inner: Option<String>,
) -> async_graphql::Result<PaginatedProducts> {
    let gw = crate::gateway(ctx)?;
    let mut path = format!("/products?limit={PAGE_SIZE}");
    if let Some(category) = &category {
        path.push_str(&format!("&category={}", page::encode(category)));
    }
    if let Some(inner) = &inner {
        path.push_str(&format!("&nextToken={}", page::encode(inner)));
    }
    let mut found = match gw.catalogue.page(&path) {
        Some(found) => found,
        None => {
            let client = crate::client(ctx, Service::Products)?.anonymous();
            let found: PaginatedProducts = client.get(&path).await.map_err(error::from_client)?;
            gw.catalogue.keep_page(path, found.clone());
            found
        }
    };
    found.next_token = found.next_token.map(|inner| {
        page::wrap(
            &gw.key,
            &Position {
                list: LIST.to_owned(),
                extra: category.unwrap_or_default(),
                inner,
            },
        )
    });
    Ok(found)
}

/// Catalogue answers kept for a moment. The catalogue is public and
/// changes rarely while shoppers read it constantly, so the gateway keeps
/// each answer (a product, or absent; a page) for [`Catalogue::TTL`]: a
/// change shows within that time. Orders are checked against the catalogue
/// itself, never against this copy.
#[derive(Default)]
pub struct Catalogue {
    products: Mutex<HashMap<String, (Instant, Option<Product>)>>,
    pages: Mutex<HashMap<String, (Instant, PaginatedProducts)>>,
}

impl Catalogue {
    /// How long an answer is kept.
    pub const TTL: Duration = Duration::from_secs(1);
    /// Most answers of each kind kept (the map is emptied when full).
    const MAX_ENTRIES: usize = 10_000;

    fn product(&self, path: &str) -> Option<Option<Product>> {
        fresh(&self.products, path)
    }

    fn keep_product(&self, path: String, found: Option<Product>) {
        keep(&self.products, path, found)
    }

    fn page(&self, path: &str) -> Option<PaginatedProducts> {
        fresh(&self.pages, path)
    }

    fn keep_page(&self, path: String, found: PaginatedProducts) {
        keep(&self.pages, path, found)
    }
}

// A std mutex: held only to copy a value out or in, never across an await.
fn fresh<T: Clone>(map: &Mutex<HashMap<String, (Instant, T)>>, key: &str) -> Option<T> {
    let map = map.lock().ok()?;
    map.get(key)
        .filter(|(at, _)| at.elapsed() < Catalogue::TTL)
        .map(|(_, value)| value.clone())
}

fn keep<T>(map: &Mutex<HashMap<String, (Instant, T)>>, key: String, value: T) {
    if let Ok(mut map) = map.lock() {
        if map.len() >= Catalogue::MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }
}
