//! The orders routes, all for services (the GraphQL gateway calls them with
//! the shopper's user id):
//!
//! - `POST /orders/backend/orders` with
//!   `{"userId": …, "order": {products, address, deliveryPrice, paymentToken}, "idempotencyKey"?: …}`
//!   creates an order. Answers 200 `{"success": true, "message": "Order created", "order": …}`,
//!   or 200 `{"success": false, "message": "Validation errors", "errors": [...]}` when the
//!   order is refused — whether its shape is wrong (each message names its
//!   field, e.g. `products[0].quantity: …`) or another service refuses it
//!   (`Wrong delivery price: got 10, expected 0`, `Wrong payment token`,
//!   `Failure to contact the products service`). Refusals answer 200 like the
//!   original, so callers read one body shape for every business outcome;
//!   only a malformed envelope (not JSON, no `userId`) is a 400 `{"message"}`.
//!   The same `idempotencyKey` from the same user returns the order created
//!   the first time instead of creating another.
//! - `GET /orders/backend/{orderId}` → `{"order": …}`, 404 when absent.
//! - `GET /orders/backend/users/{userId}/orders?limit=&nextToken=` →
//!   `{"orders": [...newest first], "nextToken": string | null}` (limit 1–100,
//!   default 20).

use crate::domain::{Order, OrderRequest, OrderStatus};
use crate::store;
use crate::{events, Metrics};
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use ecom_model::{Address, Money, ProductLine, Timestamp};
use ecom_platform::Context;
use ecom_runtime::{page, ApiError, ClientError, Json, Path, Query};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long each check with another service may take before the order is
/// refused with "Failure to contact the … service".
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Handler state.
#[derive(Clone)]
pub struct Api {
    ctx: Context,
    metrics: Arc<Metrics>,
}

/// The service's routes.
pub fn router(ctx: &Context, metrics: Arc<Metrics>) -> Router {
    let state = Api {
        ctx: ctx.clone(),
        metrics,
    };
    ctx.backend(
        Router::new()
            .route("/backend/orders", post(create))
            .route("/backend/{order_id}", get(get_order))
            .route("/backend/users/{user_id}/orders", get(list))
            .with_state(state),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    user_id: String,
    /// Checked field by field by [`OrderRequest::parse`], so that every
    /// problem is reported, not only the first.
    order: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn created(order: &Order) -> Json<Value> {
    Json(json!({ "success": true, "message": "Order created", "order": order }))
}

fn refused(errors: Vec<String>) -> Json<Value> {
    Json(json!({ "success": false, "message": "Validation errors", "errors": errors }))
}

async fn create(State(api): State<Api>, Json(req): Json<CreateRequest>) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let answer = create_order(&api, req).await;
    api.metrics
        .create_latency_micros_sum
        .add(started.elapsed().as_micros() as u64);
    api.metrics.create_latency_count.inc();
    answer
}

async fn create_order(api: &Api, req: CreateRequest) -> Result<Json<Value>, ApiError> {
    if req.user_id.trim().is_empty() {
        return Err(ApiError::bad_request("userId: must not be empty"));
    }
    let key = req.idempotency_key.filter(|k| !k.is_empty());
    if let Some(key) = &key {
        if let Some(order) = store::by_idempotency_key(&api.ctx.db, &req.user_id, key).await? {
            return Ok(created(&order));
        }
    }
    let request = match OrderRequest::parse(&req.order) {
        Ok(request) => request,
        Err(errors) => return Ok(refused(errors)),
    };
    let total = request
        .total()
        .ok_or_else(|| ApiError::bad_request("products: the total is too large"))?;
    let order_id = Uuid::now_v7();
    let (errors, held) = check_with_services(&api.ctx, order_id, &request, total).await;
    if !errors.is_empty() {
        api.metrics.refused.inc();
        if held {
            release_stock(&api.ctx, order_id).await;
        }
        return Ok(refused(errors));
    }

    let now = Timestamp::now();
    let order = Order {
        order_id,
        user_id: req.user_id,
        created_date: now,
        modified_date: now,
        status: OrderStatus::New,
        products: request.products,
        address: request.address,
        delivery_price: request.delivery_price,
        payment_token: request.payment_token,
        total,
    };
    let event = events::created(&order)?;
    let mut tx = api.ctx.db.begin().await?;
    match store::insert(&mut tx, &order, key.as_deref()).await {
        Ok(()) => {}
        Err(e) if ecom_storage::is_unique_violation(&e) => {
            // A concurrent request with the same key won the race: answer
            // with its order, and give back what this one held.
            tx.rollback().await.ok();
            release_stock(&api.ctx, order_id).await;
            let key = key.unwrap_or_default();
            let existing = store::by_idempotency_key(&api.ctx.db, &order.user_id, &key)
                .await?
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("idempotency key {key} vanished")))?;
            return Ok(created(&existing));
        }
        Err(e) => return Err(e.into()),
    }
    api.ctx.outbox.push(&mut tx, &event).await?;
    api.ctx.outbox.commit(tx).await?;
    api.metrics.created.inc();
    Ok(created(&order))
}

#[derive(Serialize)]
struct ProductsCheck<'a> {
    products: &'a [ProductLine],
}

#[derive(Deserialize)]
struct ProductsAnswer {
    #[serde(default)]
    message: String,
    #[serde(default)]
    products: Vec<Value>,
}

#[derive(Serialize)]
struct PricingCheck<'a> {
    products: &'a [ProductLine],
    address: &'a Address,
}

#[derive(Deserialize)]
struct PricingAnswer {
    pricing: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentCheck<'a> {
    payment_token: &'a str,
    total: Money,
}

#[derive(Deserialize)]
struct PaymentAnswer {
    ok: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StockRequest {
    order_id: Uuid,
    products: Vec<StockLine>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StockLine {
    product_id: Uuid,
    quantity: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StockAnswer {
    ok: bool,
    #[serde(default)]
    out_of_stock: Vec<String>,
}

/// Gives back the stock an order held, when the order is not stored after
/// all. Best effort: a hold that is not released here expires.
async fn release_stock(ctx: &Context, order_id: Uuid) {
    let answer: Result<Value, ()> = call(
        &ctx.clients.clone().with_timeout(CHECK_TIMEOUT),
        "warehouse",
        "/backend/reservations/release",
        &json!({ "orderId": order_id }),
    )
    .await;
    if answer.is_err() {
        tracing::warn!(%order_id, "could not release the stock a refused order held; it will expire");
    }
}

/// Asks products, delivery-pricing, payment and warehouse (stock) at once;
/// the messages of every check that failed, and whether the warehouse may
/// hold stock for the order (to be released if the order is refused).
async fn check_with_services(
    ctx: &Context,
    order_id: Uuid,
    request: &OrderRequest,
    total: Money,
) -> (Vec<String>, bool) {
    let clients = ctx.clients.clone().with_timeout(CHECK_TIMEOUT);
    let products = async {
        let answer = call(
            &clients,
            "products",
            "/backend/validate",
            &ProductsCheck {
                products: &request.products,
            },
        )
        .await;
        match answer {
            Ok(ProductsAnswer { products, .. }) if products.is_empty() => None,
            Ok(ProductsAnswer { message, .. }) => Some(message),
            Err(()) => Some("Failure to contact the products service".to_owned()),
        }
    };
    let delivery = async {
        let answer = call(
            &clients,
            "delivery-pricing",
            "/backend/pricing",
            &PricingCheck {
                products: &request.products,
                address: &request.address,
            },
        )
        .await;
        match answer {
            Ok(PricingAnswer { pricing }) if pricing == request.delivery_price.cents() => None,
            Ok(PricingAnswer { pricing }) => Some(format!(
                "Wrong delivery price: got {}, expected {pricing}",
                request.delivery_price
            )),
            Err(()) => Some("Failure to contact the delivery service".to_owned()),
        }
    };
    let payment = async {
        let answer = call(
            &clients,
            "payment",
            "/backend/validate",
            &PaymentCheck {
                payment_token: &request.payment_token,
                total,
            },
        )
        .await;
        match answer {
            Ok(PaymentAnswer { ok: true }) => None,
            Ok(PaymentAnswer { ok: false }) => Some("Wrong payment token".to_owned()),
            Err(()) => Some("Failure to contact the payment service".to_owned()),
        }
    };
    let stock = async {
        let lines = request
            .products
            .iter()
            .map(|l| StockLine {
                product_id: l.product_id,
                quantity: l.quantity.get(),
            })
            .collect();
        let answer = call(
            &clients,
            "warehouse",
            "/backend/reservations",
            &StockRequest {
                order_id,
                products: lines,
            },
        )
        .await;
        match answer {
            Ok(StockAnswer { ok: true, .. }) => (Vec::new(), true),
            Ok(StockAnswer { out_of_stock, .. }) => (
                out_of_stock
                    .iter()
                    .map(|id| format!("Out of stock: {id}"))
                    .collect(),
                false,
            ),
            // It may have held stock before the answer was lost.
            Err(()) => (vec!["Failure to contact the warehouse service".to_owned()], true),
        }
    };
    let (a, b, c, (mut d, held)) = tokio::join!(products, delivery, payment, stock);
    let mut errors: Vec<String> = [a, b, c].into_iter().flatten().collect();
    errors.append(&mut d);
    (errors, held)
}

/// One backend call; failures are logged with their cause and reported to
/// the shopper only as "could not contact".
async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
    clients: &ecom_runtime::Clients,
    service: &str,
    path: &str,
    body: &Req,
) -> Result<Resp, ()> {
    let client = clients.get(service).map_err(|e| {
        tracing::warn!(service, error = %e, "no client for a service createOrder checks with");
    })?;
    client.post(path, body).await.map_err(|e: ClientError| {
        tracing::warn!(service, error = %e, "createOrder check failed");
    })
}

async fn get_order(State(api): State<Api>, Path(order_id): Path<String>) -> Result<Json<Value>, ApiError> {
    // An id that is not a UUID names no order.
    let not_found = || ApiError::not_found(format!("Order '{order_id}' not found"));
    let id = Uuid::parse_str(&order_id).map_err(|_| not_found())?;
    let order = store::get(&api.ctx.db, id).await?.ok_or_else(not_found)?;
    Ok(Json(json!({ "order": order })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list(
    State(api): State<Api>,
    Path(user_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page::limit(q.limit)?;
    let after = match q.next_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(page::position(token)?),
    };
    let (orders, next) = store::list_by_user(&api.ctx.db, &user_id, after.as_ref(), limit).await?;
    Ok(Json(json!({
        "orders": orders,
        "nextToken": next.map(|p| page::next_token(&p)),
    })))
}
