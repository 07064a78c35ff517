//! Catalogue queries, open to anyone: the products service's public routes
//! (`GET /products/products`, `GET /products/products/{productId}`).

use crate::error::{self, error};
use crate::page::{self, Position, PAGE_SIZE};
use crate::types::Product;
use async_graphql::{Context, Object, SimpleObject, ID};
use serde::Deserialize;

/// A page of products.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedProducts {
    /// At most 20 products.
    pub products: Vec<Product>,
    /// Pass to `getProducts(nextToken:)` for the next page; null on the last.
    pub next_token: Option<String>,
}

/// The catalogue's part of `Query`.
#[derive(Default)]
pub struct ProductsQuery;

const LIST: &str = "products";

#[Object]
impl ProductsQuery {
    /// The catalogue, a page at a time. Also continues a
    /// `getProductsByCategory` listing when given its `nextToken`.
    async fn get_products(&self, ctx: &Context<'_>, next_token: Option<String>) -> async_graphql::Result<PaginatedProducts> {
        let gw = crate::gateway(ctx)?;
        let (category, inner) = match next_token.as_deref().filter(|t| !t.is_empty()) {
            None => (None, None),
            Some(token) => {
                let position = page::unwrap(&gw.key, token)?;
                if position.list != LIST {
                    return Err(error(error::BAD_USER_INPUT, "nextToken: this token belongs to another list"));
                }
                (Some(position.extra).filter(|c| !c.is_empty()), Some(position.inner))
            }
        };
        list(ctx, category, inner).await
    }

    /// One product; null when the catalogue has no such product.
    async fn get_product(&self, ctx: &Context<'_>, product_id: ID) -> async_graphql::Result<Option<Product>> {
        let client = crate::client(ctx, "products")?.anonymous();
        match client.get::<Product>(&format!("/products/{}", page::encode(&product_id))).await {
            Ok(product) => Ok(Some(product)),
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => Ok(None),
            Err(e) => Err(error::from_client(e)),
        }
    }

    /// The products of one category, a page at a time; follow `nextToken`
    /// with `getProducts(nextToken:)` (this query takes no token, as in the
    /// original schema; the token remembers the category).
    async fn get_products_by_category(&self, ctx: &Context<'_>, category: String) -> async_graphql::Result<PaginatedProducts> {
        if category.contains('\0') {
            return Err(error(error::BAD_USER_INPUT, "category: must not contain NUL"));
        }
        list(ctx, Some(category), None).await
    }
}

async fn list(ctx: &Context<'_>, category: Option<String>, inner: Option<String>) -> async_graphql::Result<PaginatedProducts> {
    let gw = crate::gateway(ctx)?;
    let mut path = format!("/products?limit={PAGE_SIZE}");
    if let Some(category) = &category {
        path.push_str(&format!("&category={}", page::encode(category)));
    }
    if let Some(inner) = &inner {
        path.push_str(&format!("&nextToken={}", page::encode(inner)));
    }
    let client = crate::client(ctx, "products")?.anonymous();
    let mut found: PaginatedProducts = client.get(&path).await.map_err(error::from_client)?;
    found.next_token = found.next_token.map(|inner| {
        page::wrap(&gw.key, &Position {
            list: LIST.to_owned(),
            extra: category.unwrap_or_default(),
            inner,
        })
    });
    Ok(found)
}
