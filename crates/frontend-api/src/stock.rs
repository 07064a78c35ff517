//! Stock, for staff of groups `admin` and `warehouse` (`getStock`,
//! `setStock`: the warehouse's `/warehouse/stock/{productId}` routes with the
//! staff member's own token), and `Product.available` for everyone (the
//! warehouse's `/backend/availability`, batched across the products of one
//! answer).

use crate::error::{self, error};
use crate::page;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Object, SimpleObject, ID};
use ecom_contracts::backend::{Availability as Available, AvailabilityQuery};
use ecom_contracts::{Group, Service};
use ecom_runtime::Clients;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A tracked product's stock.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stock {
    /// The product.
    pub product_id: ID,
    /// Units in the warehouse, including those held for orders.
    pub on_hand: i64,
    /// Units held for orders not yet packed.
    pub reserved: i64,
    /// `onHand - reserved`: what new orders may still take.
    pub available: i64,
}

/// The stock part of `Query`.
#[derive(Default)]
pub struct StockQuery;

/// The stock part of `Mutation`.
#[derive(Default)]
pub struct StockMutation;

#[Object]
impl StockQuery {
    /// A product's stock; null when the product is untracked (unlimited).
    async fn get_stock(&self, ctx: &Context<'_>, product_id: ID) -> async_graphql::Result<Option<Stock>> {
        let user = crate::auth::staff(ctx, Group::WAREHOUSE_STAFF).await?;
        let path = format!("/stock/{}", page::encode(&product_id));
        crate::read_one(crate::client(ctx, Service::Warehouse)?.as_user(user.token), &path).await
    }
}

#[Object]
impl StockMutation {
    /// Sets a product's units on hand (the product becomes tracked). Refused
    /// (`BAD_USER_INPUT`) when negative, below what orders hold, or for a
    /// product the catalogue does not have.
    async fn set_stock(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        on_hand: i64,
    ) -> async_graphql::Result<Stock> {
        let user = crate::auth::staff(ctx, Group::WAREHOUSE_STAFF).await?;
        if on_hand < 0 {
            return Err(error(
                error::BAD_USER_INPUT,
                format!("onHand: must be 0 or more, got {on_hand}"),
            ));
        }
        let path = format!("/stock/{}", page::encode(&product_id));
        crate::client(ctx, Service::Warehouse)?
            .as_user(user.token)
            .put(&path, &json!({ "onHand": on_hand }))
            .await
            .map_err(error::from_client)
    }
}

/// Loads available units by product id in one warehouse call per batch.
pub struct Availability {
    clients: Clients,
}

/// The batching loader resolvers share (one per gateway).
pub type AvailabilityLoader = DataLoader<Availability>;

/// A loader calling the warehouse through `clients`.
pub fn loader(clients: Clients) -> Arc<AvailabilityLoader> {
    Arc::new(DataLoader::new(Availability { clients }, tokio::spawn))
}

impl Loader<String> for Availability {
    type Value = i64;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, i64>, Self::Error> {
        // Ids that are not UUIDs name no tracked product.
        let asked: Vec<(&String, Uuid)> = keys
            .iter()
            .filter_map(|k| Uuid::parse_str(k).ok().map(|id| (k, id)))
            .collect();
        if asked.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self
            .clients
            .get(Service::Warehouse)
            .map_err(|e| Arc::new(error::internal(e)))?;
        let query = AvailabilityQuery {
            product_ids: asked.iter().map(|(_, id)| *id).collect(),
        };
        let answer: Available = client
            .post("/backend/availability", &query)
            .await
            .map_err(|e| Arc::new(error::from_client(e)))?;
        // Answered by id: each key gets its product's count (a key spelt
        // otherwise than the canonical form still finds it).
        Ok(asked
            .into_iter()
            .filter_map(|(key, id)| answer.available.get(&id).map(|n| (key.clone(), *n)))
            .collect())
    }
}

/// Available units of a product; `None` when untracked.
pub async fn available(ctx: &Context<'_>, product_id: &str) -> async_graphql::Result<Option<i64>> {
    let loader = ctx
        .data::<Arc<AvailabilityLoader>>()
        .map_err(|_| error::internal("the schema was built without services"))?;
    loader
        .load_one(product_id.to_owned())
        .await
        .map_err(|e| (*e).clone())
}
