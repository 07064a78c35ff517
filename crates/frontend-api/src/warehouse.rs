//! Packaging requests, for staff of groups `admin` and `warehouse`: the
//! warehouse service's staff routes, called with the staff member's own
//! token (the warehouse checks the groups too).

use crate::page::{self, ServicePage, PAGE_SIZE};
use crate::types::Response;
use async_graphql::{Context, InputObject, Object, SimpleObject};
use ecom_contracts::{Group, Service};
use serde::{Deserialize, Serialize};

/// A request to pack an order.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackagingRequest {
    /// The order to pack.
    pub order_id: String,
    /// `NEW`, `IN_PROGRESS` or `COMPLETED`.
    pub status: String,
    /// Lines to pack.
    pub products: Vec<PackagingRequestProduct>,
}

/// One line to pack.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackagingRequestProduct {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
}

/// A page of ids (order ids) of new packaging requests, oldest first.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedPackagingRequestIds {
    /// At most 20 ids.
    pub packaging_request_ids: Vec<String>,
    /// Pass to `getNewPackagingRequestIds(nextToken:)`; null on the last page.
    pub next_token: Option<String>,
}

impl ServicePage for PaginatedPackagingRequestIds {
    fn next_token(&mut self) -> &mut Option<String> {
        &mut self.next_token
    }
}

/// Names a packaging request.
#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackagingInput {
    /// The order id.
    pub order_id: String,
}

/// Sets how many of a product will be packed.
#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePackagingProductInput {
    /// The order id.
    pub order_id: String,
    /// The product.
    pub product_id: String,
    /// How many (0 removes the line; at most what was ordered).
    pub quantity: i64,
}

/// The warehouse's part of `Query`.
#[derive(Default)]
pub struct WarehouseQuery;

/// The warehouse's part of `Mutation`.
#[derive(Default)]
pub struct WarehouseMutation;

const LIST: &str = "packaging-requests";

#[Object]
impl WarehouseQuery {
    /// Ids of packaging requests waiting to be started.
    async fn get_new_packaging_request_ids(
        &self,
        ctx: &Context<'_>,
        next_token: Option<String>,
    ) -> async_graphql::Result<PaginatedPackagingRequestIds> {
        let user = crate::auth::staff(ctx, Group::WAREHOUSE_STAFF).await?;
        let gw = crate::gateway(ctx)?;
        let client = crate::client(ctx, Service::Warehouse)?.as_user(user.token);
        let path = format!("/packaging-requests?limit={PAGE_SIZE}");
        page::fetch(&gw.key, client, LIST, path, next_token.as_deref()).await
    }

    /// One packaging request; null when there is none for the order.
    async fn get_packaging_request(
        &self,
        ctx: &Context<'_>,
        input: PackagingInput,
    ) -> async_graphql::Result<Option<PackagingRequest>> {
        let user = crate::auth::staff(ctx, Group::WAREHOUSE_STAFF).await?;
        let path = format!(
            "/packaging-requests/{}",
            page::id_segment("input.orderId", &input.order_id)?
        );
        crate::read_one(crate::client(ctx, Service::Warehouse)?.as_user(user.token), &path).await
    }
}

#[Object]
impl WarehouseMutation {
    /// NEW → IN_PROGRESS.
    async fn start_packaging(
        &self,
        ctx: &Context<'_>,
        input: PackagingInput,
    ) -> async_graphql::Result<Response> {
        crate::staff_action(
            ctx,
            Service::Warehouse,
            Group::WAREHOUSE_STAFF,
            "/startPackaging",
            &input,
        )
        .await
    }

    /// Sets a line's quantity while IN_PROGRESS (0 removes it).
    async fn update_packaging_product(
        &self,
        ctx: &Context<'_>,
        input: UpdatePackagingProductInput,
    ) -> async_graphql::Result<Response> {
        crate::staff_action(
            ctx,
            Service::Warehouse,
            Group::WAREHOUSE_STAFF,
            "/updatePackagingProduct",
            &input,
        )
        .await
    }

    /// IN_PROGRESS → COMPLETED: the order becomes PACKAGED, or
    /// PACKAGING_FAILED when no line is left.
    async fn complete_packaging(
        &self,
        ctx: &Context<'_>,
        input: PackagingInput,
    ) -> async_graphql::Result<Response> {
        crate::staff_action(
            ctx,
            Service::Warehouse,
            Group::WAREHOUSE_STAFF,
            "/completePackaging",
            &input,
        )
        .await
    }
}
