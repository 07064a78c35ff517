//! Deliveries, for staff: the delivery service's staff routes, called with
//! the staff member's own token (the delivery service checks the groups
//! too). Listing and reading: `admin`, `delivery`; starting, completing and
//! failing: also `warehouse`, as in the original.

use crate::page::{self, ServicePage, PAGE_SIZE};
use crate::types::{Address, Response};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use ecom_contracts::{Group, Service};
use serde::{Deserialize, Serialize};

/// A delivery of a packed order.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The order delivered.
    pub order_id: String,
    /// Where to.
    pub address: Address,
}

/// A page of new deliveries, oldest first.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedDeliveries {
    /// At most 20 deliveries.
    pub deliveries: Vec<Delivery>,
    /// Pass to `getNewDeliveries(nextToken:)`; null on the last page.
    pub next_token: Option<String>,
}

impl ServicePage for PaginatedDeliveries {
    fn next_token(&mut self) -> &mut Option<String> {
        &mut self.next_token
    }
}

/// Names a delivery.
#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryInput {
    /// The order id.
    pub order_id: String,
}

/// Delivery's part of `Query`.
#[derive(Default)]
pub struct DeliveryQuery;

/// Delivery's part of `Mutation`.
#[derive(Default)]
pub struct DeliveryMutation;

const LIST: &str = "deliveries";

#[Object]
impl DeliveryQuery {
    /// Deliveries waiting to be started.
    async fn get_new_deliveries(
        &self,
        ctx: &Context<'_>,
        next_token: Option<String>,
    ) -> async_graphql::Result<PaginatedDeliveries> {
        let user = crate::auth::staff(ctx, Group::DELIVERY_STAFF).await?;
        let gw = crate::gateway(ctx)?;
        let client = crate::client(ctx, Service::Delivery)?.as_user(user.token);
        let path = format!("/deliveries?limit={PAGE_SIZE}");
        page::fetch(&gw.key, client, LIST, path, next_token.as_deref()).await
    }

    /// One delivery; null when there is none for the order.
    async fn get_delivery(
        &self,
        ctx: &Context<'_>,
        input: DeliveryInput,
    ) -> async_graphql::Result<Option<Delivery>> {
        let user = crate::auth::staff(ctx, Group::DELIVERY_STAFF).await?;
        let path = format!(
            "/deliveries/{}",
            page::id_segment("input.orderId", &input.order_id)?
        );
        crate::read_one(crate::client(ctx, Service::Delivery)?.as_user(user.token), &path).await
    }
}

#[Object]
impl DeliveryMutation {
    /// NEW → IN_PROGRESS.
    async fn start_delivery(
        &self,
        ctx: &Context<'_>,
        input: DeliveryInput,
    ) -> async_graphql::Result<Response> {
        crate::staff_action(ctx, Service::Delivery, Group::DRIVERS, "/startDelivery", &input).await
    }

    /// IN_PROGRESS → FAILED: the order becomes DELIVERY_FAILED and the
    /// payment is cancelled.
    async fn fail_delivery(
        &self,
        ctx: &Context<'_>,
        input: DeliveryInput,
    ) -> async_graphql::Result<Response> {
        crate::staff_action(ctx, Service::Delivery, Group::DRIVERS, "/failDelivery", &input).await
    }

    /// IN_PROGRESS → COMPLETED: the order becomes FULFILLED and the payment
    /// is processed.
    async fn complete_delivery(
        &self,
        ctx: &Context<'_>,
        input: DeliveryInput,
    ) -> async_graphql::Result<Response> {
        crate::staff_action(
            ctx,
            Service::Delivery,
            Group::DRIVERS,
            "/completeDelivery",
            &input,
        )
        .await
    }
}
