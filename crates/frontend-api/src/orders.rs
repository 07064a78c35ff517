//! A shopper's orders: the orders service's backend routes, called with the
//! service credential and the signed-in user's id. A shopper only ever
//! sees their own orders.

use crate::error::{self, error};
use crate::page::{self, Position, PAGE_SIZE};
use crate::types::{Address, AddressInput, Product, ProductInput};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
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
    /// paid), `DELIVERY_FAILED` or `PAYMENT_FAILED`.
    pub status: String,
    /// The lines, as they were when ordered (or packed).
    pub products: Vec<Product>,
    /// Where it goes.
    pub address: Address,
    /// Delivery fee agreed at creation.
    pub delivery_price: i64,
    /// Σ price × quantity + delivery price.
    pub total: i64,
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
struct OneOrder {
    order: Order,
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
        let inner = page::inner_for(&gw.key, &list, next_token.as_deref())?;
        let mut path = format!(
            "/backend/users/{}/orders?limit={PAGE_SIZE}",
            page::encode(&user.claims.sub)
        );
        if let Some(inner) = &inner {
            path.push_str(&format!("&nextToken={}", page::encode(inner)));
        }
        let mut found: PaginatedOrders = crate::client(ctx, "orders")?
            .get(&path)
            .await
            .map_err(error::from_client)?;
        found.next_token = found.next_token.map(|inner| {
            page::wrap(
                &gw.key,
                &Position {
                    list,
                    extra: String::new(),
                    inner,
                },
            )
        });
        Ok(found)
    }

    /// One of the caller's orders; null when it does not exist or belongs
    /// to someone else (the two are not told apart). Signed-in users.
    async fn get_order(&self, ctx: &Context<'_>, order_id: ID) -> async_graphql::Result<Option<Order>> {
        let user = crate::auth::user(ctx).await?;
        let answer = crate::client(ctx, "orders")?
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateCall<'a> {
    user_id: &'a str,
    order: &'a CreateOrderRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
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
        let call = CreateCall {
            user_id: &user.claims.sub,
            order: &order,
            idempotency_key: key,
        };
        crate::client(ctx, "orders")?
            .post("/backend/orders", &call)
            .await
            .map_err(error::from_client)
    }
}
