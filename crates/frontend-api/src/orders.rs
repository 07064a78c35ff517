//! A shopper's orders: the orders service's backend routes, called with the
//! service credential and the signed-in user's id. A shopper only ever
//! sees (and cancels) their own orders; admins refund fulfilled ones
//! through the payment service.

use crate::error::{self, error};
use crate::page::{self, ServicePage, PAGE_SIZE};
use crate::types::{Address, AddressInput, Product, ProductInput, Response};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use ecom_contracts::backend::{CancelOrder, CreateOrder, Refund, RefundAnswer};
use ecom_contracts::{Group, Service};
use serde::{Deserialize, Serialize};

/// An order.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Identifier (UUID).
    pub order_id: ID,
    /// Who ordered.
    pub user_id: String,
    /// When it was created (RFC 3339).
    pub created_date: String,
    /// When it last changed (RFC 3339).
    pub modified_date: String,
    /// `NEW`, `PACKAGED`, `PACKAGING_FAILED`, `FULFILLED` (delivered and
    /// paid), `DELIVERY_FAILED`, `PAYMENT_FAILED` or `CANCELLED`.
    pub status: String,
    /// The lines, as they were when ordered (or packed).
    pub products: Vec<Product>,
    /// Where it goes.
    pub address: Address,
    /// Delivery fee agreed at creation.
    pub delivery_price: i64,
    /// Σ price × quantity + delivery price.
    pub total: i64,
    /// Every status the order reached, with when, oldest first.
    #[serde(default)]
    pub history: Vec<OrderStatusChange>,
    /// The delivery's tracking id, once it is on its way.
    pub tracking_id: Option<String>,
    /// The sum refunded so far (smallest currency unit).
    #[serde(default)]
    pub refunded: i64,
}

/// A status an order reached, and when.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
pub struct OrderStatusChange {
    /// The status (as `Order.status`).
    pub status: String,
    /// When it was reached (RFC 3339).
    pub at: String,
}

/// A page of the caller's orders, newest first.
#[derive(Debug, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedOrders {
    /// At most 20 orders.
    pub orders: Vec<Order>,
    /// Pass to `getOrders(nextToken:)` for the next page; null on the last.
    pub next_token: Option<String>,
}

impl ServicePage for PaginatedOrders {
    fn next_token(&mut self) -> &mut Option<String> {
        &mut self.next_token
    }
}

/// What a shopper orders.
#[derive(Debug, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    /// The products, as the shopper saw them, with quantities.
    pub products: Vec<ProductInput>,
    /// Where to deliver.
    pub address: AddressInput,
    /// The fee `getDeliveryPricing` gave.
    pub delivery_price: i64,
    /// The pre-authorisation from the card processor.
    pub payment_token: String,
}

/// The outcome of `createOrder`: the order, or why it was refused.
#[derive(Debug, SimpleObject, Deserialize)]
pub struct CreateOrderResponse {
    /// True when the order was created.
    pub success: bool,
    /// "Order created" or "Validation errors".
    pub message: String,
    /// Every reason for a refusal.
    pub errors: Option<Vec<String>>,
    /// The order created.
    pub order: Option<Order>,
}

/// The `Idempotency-Key` header of the request, if the client sent one.
pub struct IdempotencyKey(pub String);

/// Orders' part of `Query`.
#[derive(Default)]
pub struct OrdersQuery;

/// Orders' part of `Mutation`.
#[derive(Default)]
pub struct OrdersMutation;

#[derive(Deserialize)]
pub(crate) struct OneOrder {
    pub(crate) order: Order,
}

#[Object]
impl OrdersQuery {
    /// The caller's orders, newest first, a page at a time. Signed-in users.
    async fn get_orders(
        &self,
        ctx: &Context<'_>,
        next_token: Option<String>,
    ) -> async_graphql::Result<PaginatedOrders> {
        let user = crate::auth::user(ctx).await?;
        let gw = crate::gateway(ctx)?;
        // The list is the caller's: a token from another user's list is refused.
        let list = format!("orders:{}", user.claims.sub);
        let path = format!(
            "/backend/users/{}/orders?limit={PAGE_SIZE}",
            page::encode(&user.claims.sub)
        );
        page::fetch(
            &gw.key,
            crate::client(ctx, Service::Orders)?,
            &list,
            path,
            next_token.as_deref(),
        )
        .await
    }

    /// One of the caller's orders; null when it does not exist or belongs
    /// to someone else (the two are not told apart). Signed-in users.
    async fn get_order(&self, ctx: &Context<'_>, order_id: ID) -> async_graphql::Result<Option<Order>> {
        let user = crate::auth::user(ctx).await?;
        let answer = crate::client(ctx, Service::Orders)?
            .get::<OneOrder>(&format!("/backend/{}", page::id_segment("orderId", &order_id)?))
            .await;
        match answer {
            Ok(OneOrder { order }) if order.user_id == user.claims.sub => Ok(Some(order)),
            Ok(_) => Ok(None),
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => Ok(None),
            Err(e) => Err(error::from_client(e)),
        }
    }
}

#[Object]
impl OrdersMutation {
    /// Places an order for the caller. A refusal (wrong price, product or
    /// payment token) is `success: false` with every reason in `errors`.
    /// Send an `Idempotency-Key` header to make retries safe: the same key
    /// with the same order returns the order created the first time; with
    /// another order it is an error `IDEMPOTENCY_KEY_REUSED`. Signed-in users.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        order: CreateOrderRequest,
    ) -> async_graphql::Result<CreateOrderResponse> {
        let user = crate::auth::user(ctx).await?;
        let key = ctx.data_opt::<IdempotencyKey>().map(|k| k.0.as_str());
        if key.is_some_and(|k| k.len() > 200) {
            return Err(error(
                error::BAD_USER_INPUT,
                "Idempotency-Key: at most 200 characters",
            ));
        }
        let call = CreateOrder {
            user_id: user.claims.sub.clone(),
            order,
            idempotency_key: key.map(str::to_owned),
        };
        crate::client(ctx, Service::Orders)?
            .post("/backend/orders", &call)
            .await
            .map_err(error::from_client)
    }
}

/// Cancellations and refunds: orders' second part of `Mutation`.
#[derive(Default)]
pub struct AfterOrderMutation;

#[Object]
impl AfterOrderMutation {
    /// Cancels one of the caller's orders while it is `NEW` and its
    /// packaging has not started: the order becomes `CANCELLED`, its payment
    /// is cancelled at the card processor and its stock released. Refused
    /// with `CONFLICT` once packaging started (or the order moved on), with
    /// `NOT_FOUND` for an order that does not exist or is someone else's
    /// (the two are not told apart). Cancelling a cancelled order succeeds
    /// again. Signed-in users, on their own orders.
    async fn cancel_order(&self, ctx: &Context<'_>, order_id: ID) -> async_graphql::Result<Response> {
        let user = crate::auth::user(ctx).await?;
        let path = format!("/backend/{}/cancel", page::id_segment("orderId", &order_id)?);
        let answer = crate::client(ctx, Service::Orders)?
            .post::<_, serde_json::Value>(
                &path,
                &CancelOrder {
                    user_id: Some(user.claims.sub.clone()),
                },
            )
            .await;
        crate::outcome(ctx, answer)
    }

    /// Refunds `amount` (smallest currency unit, more than 0) of a
    /// `FULFILLED` order's payment, wholly or in part; several refunds may
    /// follow one another up to what was captured. Refused with
    /// `BAD_USER_INPUT` for an amount of 0 or less or above what is left to
    /// refund, `CONFLICT` for an order not `FULFILLED`, `NOT_FOUND` for an
    /// unknown order. An `Idempotency-Key` header makes a retry safe: the
    /// same key for the same order never refunds twice. Admins.
    async fn refund_order(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        amount: i64,
    ) -> async_graphql::Result<Response> {
        crate::auth::staff(ctx, Group::ADMINS).await?;
        let segment = page::id_segment("orderId", &order_id)?;
        if amount <= 0 {
            return refused(
                ctx,
                error(
                    error::BAD_USER_INPUT,
                    format!("amount: must be more than 0, got {amount}"),
                ),
            );
        }
        let key = ctx.data_opt::<IdempotencyKey>().map(|k| k.0.as_str());
        if key.is_some_and(|k| k.len() > 200) {
            return Err(error(
                error::BAD_USER_INPUT,
                "Idempotency-Key: at most 200 characters",
            ));
        }
        let order = match crate::client(ctx, Service::Orders)?
            .get::<OneOrder>(&format!("/backend/{segment}"))
            .await
        {
            Ok(OneOrder { order }) => order,
            Err(e) => return crate::outcome::<serde_json::Value>(ctx, Err(e)),
        };
        if order.status != "FULFILLED" {
            return refused(
                ctx,
                error(
                    error::CONFLICT,
                    format!(
                        "order {} is {}: only a FULFILLED order can be refunded",
                        order.order_id.as_str(),
                        order.status
                    ),
                ),
            );
        }
        let refund_id = match key {
            Some(key) => refund_id_for(order.order_id.as_str(), key),
            None => uuid::Uuid::new_v4().to_string(),
        };
        // Orders gives its ids as UUIDs; anything else is its fault, not
        // the admin's.
        let refund = Refund {
            amount,
            order_id: uuid::Uuid::parse_str(order.order_id.as_str()).map_err(error::internal)?,
            refund_id,
        };
        let answer = crate::client(ctx, Service::Payment)?
            .post::<_, RefundAnswer>("/backend/refunds", &refund)
            .await;
        crate::outcome(ctx, answer)
    }
}

/// A refusal for the state of things: `success: false`, the reason in the
/// response's errors.
fn refused(ctx: &Context<'_>, reason: async_graphql::Error) -> async_graphql::Result<Response> {
    let reason = reason.into_server_error(ctx.item.pos);
    ctx.add_error(ctx.set_error_path(reason));
    Ok(Response { success: false })
}

/// The refund id of a refund asked with an idempotency key: the same key
/// for the same order names the same refund (SHA-256 of the two, hex), so
/// payment and the card processor recognise a retry.
fn refund_id_for(order_id: &str, key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in ["ecom refund", order_id, key] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    ecom_runtime::hex::encode(ctx.finish().as_ref())
}
