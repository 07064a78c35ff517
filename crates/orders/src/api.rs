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
//!   `Payment token already used`, `Failure to contact the products
//!   service`). Refusals answer 200 like the original, so callers read one
//!   body shape for every business outcome; only a malformed envelope (not
//!   JSON, no `userId`) is a 400 `{"message"}`. The same `idempotencyKey`
//!   from the same user with the same order returns the order created the
//!   first time instead of creating another; with another order it is a 409
//!   `{"message", "code": "IDEMPOTENCY_KEY_REUSED"}`.
//! - `GET /orders/backend/{orderId}` → `{"order": …}`, 404 when absent.
//! - `GET /orders/backend/users/{userId}/orders?limit=&nextToken=` →
//!   `{"orders": [...newest first], "nextToken": string | null}` (limit 1–100,
//!   default 20).
//! - `POST /orders/backend/{orderId}/cancel` `{"userId"?: …}` cancels the
//!   order (of that user, when named: another user's order is a 404, as an
//!   absent one) → `{"success": true, "order": …}`; 409 when it is past NEW
//!   or its packaging has started. Cancelling a cancelled order answers the
//!   same, so a retry converges.
//!
//! Orders read through these routes carry `history`: each status reached
//! and when (`[{status, at}]`, oldest first).
//!
//! For staff (an admin's ID token): `POST /orders/admin/orders/{orderId}/cancel`,
//! the same cancellation for any order.
//!
//! A cancellation first asks the warehouse to cancel the packaging request
//! (`POST /warehouse/backend/cancellations`): one conditional update there
//! decides between the cancellation and `startPackaging`, so exactly one
//! wins. Only then is the order CANCELLED here (with `OrderModified` and
//! `OrderCancelled`); if that write is lost, the warehouse says yes again
//! to the retry.

use crate::domain::{Order, OrderLife as _, OrderRequest, OrderStatus, StatusChange};
use crate::store;
use crate::{events, Metrics};
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::Router;
use ecom_contracts::backend::{
    Ack, CancelOrder, CreateOrder, PaymentClaim, PaymentClaimAnswer, PaymentRelease, PricingAnswer,
    PricingCheck, ProductsAnswer, ProductsCheck, Reservation, ReservationAnswer, StockLine,
};
use ecom_contracts::{Group, OrderRef, Service};
use ecom_model::{Money, Timestamp};
use ecom_platform::Context;
use ecom_runtime::auth::User;
use ecom_runtime::{page, ApiError, ClientError, Json, Path, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long each check with another service may take before the order is
/// refused with "Failure to contact the … service".
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Handler state, behind an `Arc`: every request clones it.
#[derive(Clone)]
pub struct Api(Arc<ApiState>);

/// See [`Api`].
pub struct ApiState {
    ctx: Context,
    metrics: Arc<Metrics>,
}

impl std::ops::Deref for Api {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

/// The service's routes.
pub fn router(ctx: &Context, metrics: Arc<Metrics>) -> Router {
    let state = Api(Arc::new(ApiState {
        ctx: ctx.clone(),
        metrics,
    }));
    let backend = ctx.backend(
        Router::new()
            .route("/backend/orders", post(create))
            .route("/backend/{order_id}", get(get_order))
            .route("/backend/{order_id}/cancel", post(cancel_route))
            .route("/backend/users/{user_id}/orders", get(list))
            .with_state(state.clone()),
    );
    Router::new()
        .route("/admin/orders/{order_id}/cancel", post(admin_cancel_route))
        .with_state(state)
        .merge(backend)
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/orders/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, get_order, cancel_route, admin_cancel_route, list))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The shapes of the answers the handlers write, for the
/// OpenAPI document only (nothing constructs them).
#[allow(dead_code)]
mod shapes {
    use crate::domain::{Order, StatusChange};
    use ecom_model::{Address, Money, ProductLine};

    /// An order as the routes serve it: the order's fields and its history.
    // Serialize only so that `flatten` reads as it does on `WithHistory`.
    #[derive(serde::Serialize, utoipa::ToSchema)]
    pub struct OrderWithHistory {
        #[serde(flatten)]
        order: Order,
        /// Each status reached and when, oldest first.
        history: Vec<StatusChange>,
    }

    /// What a shopper orders (checked field by field; every problem is reported).
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct NewOrder {
        /// Lines; the same product on several lines is merged.
        products: Vec<ProductLine>,
        address: Address,
        /// The delivery price the shopper was shown (`/delivery-pricing/backend/pricing`).
        delivery_price: Money,
        /// From `POST /payment-3p/preauth`; one token pays for one order.
        payment_token: String,
    }

    /// The answer of createOrder.
    #[derive(utoipa::ToSchema)]
    pub struct CreateAnswer {
        success: bool,
        /// `Order created` or `Validation errors`.
        message: String,
        /// The order, when created.
        order: Option<OrderWithHistory>,
        /// Why it was refused (each names its field or the service that refused).
        errors: Option<Vec<String>>,
    }

    /// `{"order": …}`.
    #[derive(utoipa::ToSchema)]
    pub struct OneOrder {
        order: OrderWithHistory,
    }

    /// The answer of a cancellation.
    #[derive(utoipa::ToSchema)]
    pub struct CancelAnswer {
        success: bool,
        order: OrderWithHistory,
    }

    /// A page of orders, newest first.
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct OrderPage {
        orders: Vec<OrderWithHistory>,
        /// Pass as `nextToken` for the next page; null on the last.
        next_token: Option<String>,
    }
}

/// The answer for a created order, with its history (`history`: a new
/// order's is its creation; an order found again by its key reads its own).
/// Written straight to the body (createOrder's answer is on every order:
/// a JSON tree built first and then written cost as much again).
fn created(order: &Order, history: &[StatusChange]) -> Response {
    #[derive(Serialize)]
    struct Created<'a> {
        success: bool,
        message: &'static str,
        order: WithHistory<'a>,
    }
    Json(Created {
        success: true,
        message: "Order created",
        order: WithHistory { order, history },
    })
    .into_response()
}

fn refused(errors: Vec<String>) -> Response {
    #[derive(Serialize)]
    struct Refused {
        success: bool,
        message: &'static str,
        errors: Vec<String>,
    }
    Json(Refused {
        success: false,
        message: "Validation errors",
        errors,
    })
    .into_response()
}

/// The code of a 409 for an idempotency key sent again with another request.
pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";

/// The answer to a request whose key already names `order`: the order when
/// the request is the one that created it (or the order predates request
/// hashes), a 409 otherwise.
async fn replay(
    api: &Api,
    order: &Order,
    stored_hash: Option<&str>,
    request_hash: &str,
) -> Result<Response, ApiError> {
    if stored_hash.is_none_or(|stored| stored == request_hash) {
        let histories = store::histories(&api.ctx.db, std::slice::from_ref(order)).await?;
        let history = histories
            .get(&order.order_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(created(order, history))
    } else {
        Err(ApiError::conflict(
            "Idempotency-Key already used with another request: send a new key for a new order",
        )
        .with_code(IDEMPOTENCY_KEY_REUSED))
    }
}

/// SHA-256 (hex) of the order request in a canonical form (object keys
/// sorted, no spaces), so that the same request sent again — whatever its
/// key order — has the same hash.
fn request_hash(order: &Value) -> String {
    fn canonical(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    canonical(&Value::String(key.clone()), out);
                    out.push(b':');
                    canonical(&map[key], out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    canonical(item, out);
                }
                out.push(b']');
            }
            scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
        }
    }
    let mut bytes = Vec::new();
    canonical(order, &mut bytes);
    ecom_runtime::hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref())
}

/// The id of the order a user creates with an idempotency key: derived from
/// the two, so that every attempt with the key claims the payment token for
/// the same order. A retry after a timeout or a crash, while the first
/// attempt's claim still stands, is then the claim's own order, not a
/// second order refused with "Payment token already used". A UUID shaped as
/// v4 whose 122 free bits come from SHA-256 (orders without a key keep
/// time-ordered v7 ids).
fn keyed_order_id(user_id: &str, key: &str) -> Uuid {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in ["ecom orders idempotency key", user_id, key] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let digest = ctx.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[utoipa::path(post, path = "/backend/orders", security(("serviceCredential" = [])), tag = "backend", request_body = CreateOrder<shapes::NewOrder>,
    responses((status = 200, body = shapes::CreateAnswer, description = "Created (`success: true`, `OrderCreated` is emitted), or refused with the reasons (`success: false`)"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "The idempotency key was used with another order (`code: IDEMPOTENCY_KEY_REUSED`)")))]
async fn create(State(api): State<Api>, Json(req): Json<CreateOrder>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let answer = create_order(&api, req).await;
    api.metrics
        .create_latency_micros_sum
        .add(started.elapsed().as_micros() as u64);
    api.metrics.create_latency_count.inc();
    answer
}

async fn create_order(api: &Api, req: CreateOrder) -> Result<Response, ApiError> {
    if req.user_id.trim().is_empty() {
        return Err(ApiError::bad_request("userId: must not be empty"));
    }
    let key = req.idempotency_key.filter(|k| !k.is_empty());
    let hash = key.as_ref().map(|_| request_hash(&req.order));
    if let (Some(key), Some(hash)) = (&key, &hash) {
        if let Some((order, stored)) = store::by_idempotency_key(&api.ctx.db, &req.user_id, key).await? {
            return replay(api, &order, stored.as_deref(), hash).await;
        }
    }
    let request = match OrderRequest::parse(&req.order) {
        Ok(request) => request,
        Err(errors) => return Ok(refused(errors)),
    };
    let total = request
        .total()
        .ok_or_else(|| ApiError::bad_request("products: the total is too large"))?;
    let order_id = match &key {
        Some(key) => keyed_order_id(&req.user_id, key),
        None => Uuid::now_v7(),
    };
    let checked = check_with_services(&api.ctx, &request, total, order_id).await;
    if !checked.errors.is_empty() {
        api.metrics.refused.inc();
        if checked.claimed {
            release(&api.ctx, &request.payment_token, order_id).await;
        }
        if checked.held {
            release_stock(&api.ctx, order_id).await;
        }
        return Ok(refused(checked.errors));
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
        tracking_id: None,
        refunded: Money::ZERO,
    };
    let event = events::created(&order)?;
    let mut tx = api.ctx.db.begin().await?;
    let keyed = key
        .as_deref()
        .zip(hash.as_deref())
        .map(|(key, request_hash)| store::Keyed { key, request_hash });
    match store::insert(&mut tx, &order, keyed).await {
        Ok(()) => {}
        Err(e) if ecom_storage::is_unique_violation(&e) && keyed.is_some() => {
            // A concurrent request with the same key (so the same order id,
            // whose stock hold both share) won the race: answer with its
            // order, or refuse when it was another request.
            tx.rollback().await.ok();
            let (key, hash) = (key.unwrap_or_default(), hash.unwrap_or_default());
            let (existing, stored) = store::by_idempotency_key(&api.ctx.db, &order.user_id, &key)
                .await?
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("idempotency key {key} vanished")))?;
            if existing.payment_token != order.payment_token {
                // Our claim on another token is of no use now.
                release(&api.ctx, &order.payment_token, order.order_id).await;
            }
            return replay(api, &existing, stored.as_deref(), &hash).await;
        }
        Err(e) => {
            release(&api.ctx, &order.payment_token, order.order_id).await;
            release_stock(&api.ctx, order.order_id).await;
            return Err(e.into());
        }
    }
    store::record_status(&mut tx, &order).await?;
    api.ctx.outbox.push(&mut tx, &event).await?;
    api.ctx.outbox.commit(tx).await?;
    api.metrics.created.inc();
    Ok(created(&order, &order.assumed_history()))
}

/// Gives back the stock an order held, when the order is not stored after
/// all. Best effort: a hold that is not released here expires.
async fn release_stock(ctx: &Context, order_id: Uuid) {
    let answer: Result<Ack, ()> = call(
        &ctx.clients.clone().with_timeout(CHECK_TIMEOUT),
        Service::Warehouse,
        "/backend/reservations/release",
        &OrderRef { order_id },
    )
    .await;
    if answer.is_err() {
        tracing::warn!(%order_id, "could not release the stock a refused order held; it will expire");
    }
}

/// What the checks with other services found.
struct Checked {
    /// The message of every check that failed.
    errors: Vec<String>,
    /// Whether payment may hold a claim on the token for the order: it
    /// accepted it, or gave no clear answer.
    claimed: bool,
    /// Whether the warehouse may hold stock for the order, likewise.
    held: bool,
}

/// Drops the order's claim on its payment token after a refusal, so the
/// shopper can retry with the same token at once. Best effort: a claim that
/// stays expires after payment's claim TTL.
async fn release(ctx: &Context, token: &str, order_id: Uuid) {
    let clients = ctx.clients.clone().with_timeout(CHECK_TIMEOUT);
    let body = PaymentRelease {
        order_id,
        payment_token: token.to_owned(),
    };
    let answer: Result<Ack, ()> = call(&clients, Service::Payment, "/backend/release", &body).await;
    if answer.is_err() {
        tracing::warn!(%order_id, "could not release the payment token claim of a refused order");
    }
}

/// Asks products, delivery-pricing, payment and warehouse at once (payment
/// claims the token for `order_id` as it checks it; the warehouse reserves
/// the stock of tracked products for it).
async fn check_with_services(ctx: &Context, request: &OrderRequest, total: Money, order_id: Uuid) -> Checked {
    let clients = ctx.clients.clone().with_timeout(CHECK_TIMEOUT);
    let products = async {
        let answer = call(
            &clients,
            Service::Products,
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
            Service::DeliveryPricing,
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
            Service::Payment,
            "/backend/validate",
            &PaymentClaim {
                payment_token: request.payment_token.clone(),
                total,
                order_id,
            },
        )
        .await;
        match answer {
            Ok(PaymentClaimAnswer { ok: true, .. }) => (None, true),
            Ok(PaymentClaimAnswer { ok: false, reason }) => (
                Some(reason.unwrap_or_else(|| "Wrong payment token".to_owned())),
                false,
            ),
            Err(()) => (Some("Failure to contact the payment service".to_owned()), true),
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
            Service::Warehouse,
            "/backend/reservations",
            &Reservation {
                order_id,
                products: lines,
            },
        )
        .await;
        match answer {
            Ok(ReservationAnswer { ok: true, .. }) => (Vec::new(), true),
            Ok(ReservationAnswer { out_of_stock, .. }) => (
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
    let (a, b, (c, claimed), (mut d, held)) = tokio::join!(products, delivery, payment, stock);
    let mut errors: Vec<String> = [a, b, c].into_iter().flatten().collect();
    errors.append(&mut d);
    Checked {
        errors,
        claimed,
        held,
    }
}

/// One backend call; failures are logged with their cause and reported to
/// the shopper only as "could not contact".
async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
    clients: &ecom_runtime::Clients,
    service: Service,
    path: &str,
    body: &Req,
) -> Result<Resp, ()> {
    let client = clients.get(service).map_err(|e| {
        tracing::warn!(%service, error = %e, "no client for a service createOrder checks with");
    })?;
    client.post(path, body).await.map_err(|e: ClientError| {
        tracing::warn!(%service, error = %e, "createOrder check failed");
    })
}

/// An order as the routes serve it: the order and its history.
#[derive(Serialize)]
struct WithHistory<'a> {
    #[serde(flatten)]
    order: &'a Order,
    history: &'a [StatusChange],
}

/// The histories of `orders` (one read for all of them), for [`paired`].
async fn histories(api: &Api, orders: &[Order]) -> Result<Histories, ApiError> {
    Ok(store::histories(&api.ctx.db, orders).await?)
}

type Histories = std::collections::HashMap<Uuid, Vec<StatusChange>>;

/// Each of `orders` with its history, to be written straight to a body.
fn paired<'a>(orders: &'a [Order], histories: &'a Histories) -> Vec<WithHistory<'a>> {
    orders
        .iter()
        .map(|order| with_history(order, histories))
        .collect()
}

fn with_history<'a>(order: &'a Order, histories: &'a Histories) -> WithHistory<'a> {
    let history = histories
        .get(&order.order_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    WithHistory { order, history }
}

/// `{"order": …}` (with `"success": true` for a cancellation's answer).
fn one_order(order: &Order, histories: &Histories, success: Option<bool>) -> Response {
    #[derive(Serialize)]
    struct One<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        success: Option<bool>,
        order: WithHistory<'a>,
    }
    Json(One {
        success,
        order: with_history(order, histories),
    })
    .into_response()
}

fn order_not_found(order_id: &str) -> ApiError {
    ApiError::not_found(format!("Order '{order_id}' not found"))
}

#[utoipa::path(get, path = "/backend/{order_id}", security(("serviceCredential" = [])), tag = "backend", params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    responses((status = 200, body = shapes::OneOrder, description = "The order with its history"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such order")))]
async fn get_order(State(api): State<Api>, Path(order_id): Path<String>) -> Result<Response, ApiError> {
    // An id that is not a UUID names no order.
    let id = Uuid::parse_str(&order_id).map_err(|_| order_not_found(&order_id))?;
    let order = store::get(&api.ctx.db, id)
        .await?
        .ok_or_else(|| order_not_found(&order_id))?;
    let histories = histories(&api, std::slice::from_ref(&order)).await?;
    Ok(one_order(&order, &histories, None))
}

#[utoipa::path(post, path = "/backend/{order_id}/cancel", security(("serviceCredential" = [])), tag = "backend", params(("order_id" = String, Path, description = "The order's id (a UUID)")), request_body = CancelOrder,
    responses((status = 200, body = shapes::CancelAnswer, description = "Cancelled (also when it already was)"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such order (or another user's)"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "Past NEW, or its packaging has started"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "The warehouse did not answer: retry")))]
async fn cancel_route(
    State(api): State<Api>,
    Path(order_id): Path<String>,
    Json(req): Json<CancelOrder>,
) -> Result<Response, ApiError> {
    let owner = req.user_id.as_deref().filter(|u| !u.is_empty());
    cancel(&api, &order_id, owner).await
}

#[utoipa::path(post, path = "/admin/orders/{order_id}/cancel", security(("idToken" = [])), tag = "admin", params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    responses((status = 200, body = shapes::CancelAnswer, description = "Cancelled (also when it already was); `OrderCancelled` is emitted"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such order"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "Past NEW, or its packaging has started"),
        (status = 503, body = ecom_runtime::openapi::Error, description = "The warehouse did not answer: retry")))]
async fn admin_cancel_route(
    State(api): State<Api>,
    User(caller): User,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_group(Group::ADMINS)?;
    cancel(&api, &order_id, None).await
}

/// Cancels an order (of `owner`, when given) while it is NEW and its
/// packaging has not started; see the module's documentation.
async fn cancel(api: &Api, order_id: &str, owner: Option<&str>) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(order_id).map_err(|_| order_not_found(order_id))?;
    let order = store::get(&api.ctx.db, id)
        .await?
        // Another user's order reads as absent: a shopper learns nothing
        // about orders that are not theirs.
        .filter(|o| owner.is_none_or(|owner| o.user_id == owner))
        .ok_or_else(|| order_not_found(order_id))?;
    let refused = |status: OrderStatus| {
        ApiError::conflict(format!(
            "order {id} is {}: only a NEW order can be cancelled",
            status.as_str()
        ))
    };
    match order.status {
        OrderStatus::Cancelled => return cancelled_answer(api, &order).await,
        OrderStatus::New => {}
        other => return Err(refused(other)),
    }
    // The warehouse decides between this cancellation and startPackaging.
    // The warehouse's answer is idempotent (a cancelled request answers yes
    // again), so a call that got no clear answer — a timeout, or a request
    // that changed under it while its OrderCreated was being applied — is
    // asked again, a few times, before the shopper is told to retry.
    let client = api
        .ctx
        .clients
        .get(Service::Warehouse)
        .map_err(ApiError::internal)?;
    let mut answer: Result<Ack, ClientError> = Err(ClientError::Unreachable {
        service: Service::Warehouse,
        reason: "not asked".to_owned(),
    });
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
        }
        answer = client
            .post("/backend/cancellations", &OrderRef { order_id: id })
            .await;
        match &answer {
            Ok(_) => break,
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 409) => break,
            Err(e) => {
                tracing::warn!(order_id = %id, error = %e, attempt, "asking the warehouse to cancel again")
            }
        }
    }
    match answer {
        Ok(_) => {}
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 409) => {
            return Err(ApiError::conflict(format!(
                "order {id} cannot be cancelled: packaging has started"
            )))
        }
        Err(e) => {
            tracing::warn!(order_id = %id, error = %e, "the warehouse did not answer a cancellation");
            return Err(ApiError::unavailable(
                "the warehouse service does not answer: the order is not cancelled, try again",
            ));
        }
    }
    let mut tx = api.ctx.db.begin().await?;
    let current = store::get_in(&mut tx, id)
        .await?
        .ok_or_else(|| order_not_found(order_id))?;
    let Some(new) = current.cancelled(Timestamp::now()) else {
        tx.rollback().await.ok();
        return match current.status {
            // A concurrent cancellation wrote it first.
            OrderStatus::Cancelled => cancelled_answer(api, &current).await,
            // Its payment failed meanwhile: it is over all the same.
            other => Err(refused(other)),
        };
    };
    store::update(&mut tx, &new).await?;
    store::record_status(&mut tx, &new).await?;
    if let Some(event) = events::modified(&current, &new)? {
        api.ctx.outbox.push(&mut tx, &event).await?;
    }
    api.ctx.outbox.push(&mut tx, &events::cancelled(&new)?).await?;
    api.ctx.outbox.commit(tx).await?;
    api.metrics.cancelled.inc();
    tracing::info!(order_id = %id, "order cancelled");
    cancelled_answer(api, &new).await
}

async fn cancelled_answer(api: &Api, order: &Order) -> Result<Response, ApiError> {
    let histories = histories(api, std::slice::from_ref(order)).await?;
    Ok(one_order(order, &histories, Some(true)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/backend/users/{user_id}/orders", security(("serviceCredential" = [])), tag = "backend",
    params(("user_id" = String, Path, description = "Whose orders"), ListQuery),
    responses((status = 200, body = shapes::OrderPage, description = "The user's orders, newest first")))]
async fn list(
    State(api): State<Api>,
    Path(user_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page::limit(q.limit)?;
    let after = match q.next_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(page::position(token)?),
    };
    let (orders, next) = store::list_by_user(&api.ctx.db, &user_id, after.as_ref(), limit).await?;
    let histories = histories(&api, &orders).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed<'a> {
        orders: Vec<WithHistory<'a>>,
        next_token: Option<String>,
    }
    Ok(Json(Listed {
        orders: paired(&orders, &histories),
        next_token: next.map(|p| page::next_token(&p)),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_hash_ignores_key_order_and_sees_every_value() {
        let a =
            json!({"products": [{"productId": "p", "quantity": 1}], "deliveryPrice": 0, "paymentToken": "t"});
        let b =
            json!({"paymentToken": "t", "deliveryPrice": 0, "products": [{"quantity": 1, "productId": "p"}]});
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_eq!(request_hash(&a).len(), 64);
        let mut c = a.clone();
        c["products"][0]["quantity"] = json!(2);
        assert_ne!(request_hash(&a), request_hash(&c));
        let mut d = a.clone();
        d["paymentToken"] = json!("u");
        assert_ne!(request_hash(&a), request_hash(&d));
    }

    #[test]
    fn a_keyed_order_id_depends_on_the_user_and_the_key_only() {
        let id = keyed_order_id("user-1", "checkout-1");
        assert_eq!(id, keyed_order_id("user-1", "checkout-1"));
        assert_ne!(id, keyed_order_id("user-2", "checkout-1"));
        assert_ne!(id, keyed_order_id("user-1", "checkout-2"));
        // No ambiguity between where the user id ends and the key begins.
        assert_ne!(keyed_order_id("ab", "c"), keyed_order_id("a", "bc"));
    }
}
