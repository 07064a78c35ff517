//! Staff operations on packaging requests, as plain functions (the GraphQL
//! gateway and tests call them) and as REST routes guarded by JWT groups
//! `admin` or `warehouse`. Shapes follow the GraphQL schema:
//!
//! - `GET  /packaging-requests?nextToken=&limit=` → `{packagingRequestIds, nextToken}`
//! - `GET  /packaging-requests/{orderId}` → `{orderId, status, products}` (404 when absent)
//! - `POST /startPackaging` `{orderId}` → `{success: true}`
//! - `POST /updatePackagingProduct` `{orderId, productId, quantity}` → `{success: true}`
//! - `POST /completePackaging` `{orderId}` → `{success: true}`
//!
//! - `GET  /stock/{productId}` → `{productId, onHand, reserved, available}` (404 when untracked)
//! - `PUT  /stock/{productId}` `{onHand}` → the new stock
//!
//! A transition from the wrong state is a 409 saying what the state is.
//!
//! For services (createOrder's checks, the gateway), with a service credential:
//!
//! - `POST /backend/reservations` `{orderId, products: [{productId, quantity}]}` →
//!   `{ok: true}` or `{ok: false, outOfStock: [productId…]}` ([`crate::stock::reserve`])
//! - `POST /backend/reservations/release` `{orderId}` → `{ok: true}`
//! - `POST /backend/cancellations` `{orderId}` → `{ok: true}` when the
//!   order's packaging is cancelled (now or before; a request not created
//!   yet is cancelled in advance), its stock released; 409 when packaging
//!   has started ([`cancel_packaging`])
//! - `POST /backend/availability` `{productIds: […]}` → `{available: {productId: n}}`
//!   (untracked products absent)

use crate::domain::{Action, PackagingRequest, Status};
use crate::stock::{self, Reserved, SetRefused, Stock};
use crate::{events, store};
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use ecom_contracts::backend::{Ack, Availability, AvailabilityQuery, Reservation, ReservationAnswer};
use ecom_contracts::{Group, OrderRef, Service};
use ecom_model::Timestamp;
use ecom_platform::{Context, Outbox};
use ecom_runtime::auth::User;
use ecom_runtime::metrics::{counter, gauge, Counter, Gauge};
use ecom_runtime::staff::{success, OrderInput};
use ecom_runtime::{page, ApiError, Clients, Json, Path, Query};
use ecom_storage::Db;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// What the staff operations need: [`WarehouseState`] behind an `Arc`, so
/// that the clone every request makes of it is one count.
#[derive(Clone)]
pub struct Warehouse(Arc<WarehouseState>);

impl std::ops::Deref for Warehouse {
    type Target = WarehouseState;

    fn deref(&self) -> &WarehouseState {
        &self.0
    }
}

/// See [`Warehouse`].
pub struct WarehouseState {
    /// The warehouse's database.
    pub db: Db,
    /// Its outbox (packaging outcomes and stock changes leave through it).
    pub outbox: Outbox,
    /// For asking the catalogue whether a product exists; `None` in tests
    /// that build the warehouse alone (every product then exists).
    clients: Option<Clients>,
    /// How long a reservation waits for its order's `OrderCreated`.
    pub reservation_ttl: Duration,
    packages_created: Arc<Counter>,
    packaging_failed: Arc<Counter>,
    /// Reservation and stock figures.
    pub metrics: Arc<StockMetrics>,
    /// Products seen tracked (a hint for reservations).
    pub(crate) seen_tracked: stock::SeenTracked,
}

/// Inventory figures on `/metrics`.
pub struct StockMetrics {
    /// Reservations made (orders that held tracked stock).
    pub made: Arc<Counter>,
    /// Reservations refused for stock.
    pub refused: Arc<Counter>,
    /// Reservations released (order refused, deleted, cancelled, packaging failed).
    pub released: Arc<Counter>,
    /// Reservations expired (their order never arrived).
    pub expired: Arc<Counter>,
    /// Tracked products with nothing available (refreshed every few seconds).
    pub out_of_stock: Arc<Gauge>,
}

impl StockMetrics {
    fn new() -> StockMetrics {
        let outcome = |o: &str| {
            counter(
                "ecom_stock_reservations_total",
                "Stock reservations by outcome: made, refused (out of stock), released, expired",
                &[("outcome", o)],
            )
        };
        StockMetrics {
            made: outcome("made"),
            refused: outcome("refused"),
            released: outcome("released"),
            expired: outcome("expired"),
            out_of_stock: gauge(
                "ecom_stock_products_out_of_stock",
                "Tracked products with nothing available",
                &[],
            ),
        }
    }
}

impl Warehouse {
    /// The state of the warehouse built from its context.
    pub fn new(ctx: &Context) -> Warehouse {
        Warehouse::of(
            ctx.db.clone(),
            ctx.outbox.clone(),
            Some(ctx.clients.clone()),
            ctx.config.reservation_ttl,
        )
    }

    /// The state from its parts (tests build it without a whole platform).
    pub fn with(db: Db, outbox: Outbox) -> Warehouse {
        Warehouse::of(db, outbox, None, ecom_runtime::config::DEFAULT_RESERVATION_TTL)
    }

    fn of(db: Db, outbox: Outbox, clients: Option<Clients>, reservation_ttl: Duration) -> Warehouse {
        let outcome = |o: &str| {
            counter(
                "ecom_warehouse_packages_total",
                "Packaging requests completed, by outcome (created or failed)",
                &[("outcome", o)],
            )
        };
        Warehouse(Arc::new(WarehouseState {
            db,
            outbox,
            clients,
            reservation_ttl,
            packages_created: outcome("created"),
            packaging_failed: outcome("failed"),
            metrics: Arc::new(StockMetrics::new()),
            seen_tracked: stock::SeenTracked::default(),
        }))
    }
}

/// The service's routes (`backend` wraps the service-only ones).
pub fn router(state: Warehouse, backend: impl FnOnce(Router) -> Router) -> Router {
    let services = backend(
        Router::new()
            .route("/backend/reservations", post(reserve_route))
            .route("/backend/reservations/release", post(release_route))
            .route("/backend/cancellations", post(cancel_route))
            .route("/backend/availability", post(availability_route))
            .with_state(state.clone()),
    );
    Router::new()
        .route("/packaging-requests", get(list_route))
        .route("/packaging-requests/{order_id}", get(read_route))
        .route("/startPackaging", post(start_route))
        .route("/updatePackagingProduct", post(update_route))
        .route("/completePackaging", post(complete_route))
        .route("/stock/{product_id}", get(get_stock_route).put(set_stock_route))
        .with_state(state)
        .merge(services)
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/warehouse/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_route,
    read_route,
    start_route,
    update_route,
    complete_route,
    get_stock_route,
    set_stock_route,
    reserve_route,
    release_route,
    cancel_route,
    availability_route
))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The shapes of bodies the handlers read or build as JSON values, for the
/// OpenAPI document only (nothing constructs them).
#[allow(dead_code)]
mod shapes {
    /// `PUT /stock/{productId}`.
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct OnHand {
        /// Units in the warehouse (at least what is reserved).
        on_hand: i64,
    }
}

/// A page of ids of NEW requests (`PaginatedPackagingRequestIds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestIds {
    /// Order ids, oldest request first.
    pub packaging_request_ids: Vec<Uuid>,
    /// Token of the next page; `null` on the last one.
    pub next_token: Option<String>,
}

/// Ids of NEW requests, a page at a time.
pub async fn new_request_ids(
    w: &Warehouse,
    next_token: Option<&str>,
    limit: Option<i64>,
) -> Result<RequestIds, ApiError> {
    let (after, limit) = page::request(next_token, limit)?;
    let (ids, next) = store::list_new(&w.db, after, limit).await?;
    Ok(RequestIds {
        packaging_request_ids: ids,
        next_token: next.as_ref().map(page::next_token),
    })
}

/// One request; 404 when there is none for the order.
pub async fn packaging_request(w: &Warehouse, order_id: Uuid) -> Result<PackagingRequest, ApiError> {
    store::get(&w.db, order_id)
        .await?
        .ok_or_else(|| not_found(order_id))
}

/// 404 when there is no request for the order, or it was dropped.
fn not_found(order_id: Uuid) -> ApiError {
    ApiError::not_found(format!("no packaging request for order {order_id}"))
}

/// Checks that `action` may be done to the request inside `tx`
/// ([`crate::domain::next`]: 404 when absent, 409 from another state) and
/// returns the status it moves to.
async fn require(tx: &mut ecom_storage::Tx, order_id: Uuid, action: Action) -> Result<Status, ApiError> {
    let status = store::header(tx, order_id).await?.map(|h| h.status);
    crate::domain::next(order_id, status, action)
}

/// NEW → IN_PROGRESS: the request stops following its order.
///
/// The move is one conditional update (`… WHERE status = 'NEW'`), the same
/// row a cancellation moves NEW → CANCELLED: on PostgreSQL the second of
/// two concurrent transactions waits for the first and then finds the row
/// no longer NEW, on SQLite they run one after the other, so of a
/// cancellation and a start exactly one wins.
pub async fn start_packaging(w: &Warehouse, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = w.db.begin().await?;
    let to = require(&mut tx, order_id, Action::Start).await?;
    if !store::transition(&mut tx, order_id, Status::New, to).await? {
        // Read as NEW, moved on before our update (a concurrent cancellation).
        tx.rollback().await.ok();
        return Err(ApiError::conflict(format!(
            "cannot start the packaging request of order {order_id}: it changed meanwhile (cancelled)"
        )));
    }
    tx.commit().await?;
    Ok(())
}

/// Cancels the packaging of an order whose shopper (or staff) cancels it:
/// NEW → CANCELLED in one conditional update (see [`start_packaging`] for
/// why only one of the two wins), or a CANCELLED tombstone when the request
/// does not exist yet (its `OrderCreated` is still on its way, and will
/// then change nothing). A request cancelled or dropped before answers yes
/// again, so a cancellation retried after a crash converges. In the same
/// transaction the order's stock hold is released (with `StockChanged`).
/// 409 when packaging has started.
pub async fn cancel_packaging(w: &Warehouse, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = w.db.begin().await?;
    // Twice at most: a request may appear between the update and the
    // tombstone (a concurrent OrderCreated on PostgreSQL).
    let mut cancelled = false;
    for _ in 0..2 {
        if store::transition(&mut tx, order_id, Status::New, Status::Cancelled).await? {
            cancelled = true;
            break;
        }
        match store::header(&mut tx, order_id).await? {
            None => {
                if store::cancelled_tombstone(&mut tx, order_id).await? {
                    cancelled = true;
                    break;
                }
            }
            Some(h) => match crate::domain::already_cancelled(order_id, h.status) {
                Ok(true) => {
                    cancelled = true;
                    break;
                }
                // NEW again (PostgreSQL: it appeared after our update): once more.
                Ok(false) => {}
                Err(refused) => {
                    tx.rollback().await.ok();
                    return Err(refused);
                }
            },
        }
    }
    if !cancelled {
        tx.rollback().await.ok();
        return Err(ApiError::unavailable(format!(
            "the packaging request of order {order_id} kept changing: try again"
        )));
    }
    let moved = stock::release(&mut tx, order_id, None).await?;
    w.outbox.push_all(&mut tx, &moved).await?;
    w.outbox.commit(tx).await?;
    if !moved.is_empty() {
        w.metrics.released.inc();
    }
    Ok(())
}

/// Sets how many of a product will be packed, while IN_PROGRESS. 0 removes
/// the line; more than the order asked for is refused (the shopper's
/// payment covers only what was ordered).
pub async fn update_packaging_product(
    w: &Warehouse,
    order_id: Uuid,
    product_id: Uuid,
    quantity: i64,
) -> Result<(), ApiError> {
    if quantity < 0 {
        return Err(ApiError::bad_request(format!(
            "quantity: must be 0 or more, got {quantity}"
        )));
    }
    let mut tx = w.db.begin().await?;
    require(&mut tx, order_id, Action::Update).await?;
    let ordered = store::ordered(&mut tx, order_id).await?;
    match ordered.get(&product_id) {
        None => {
            return Err(ApiError::not_found(format!(
                "product {product_id} is not in the packaging request of order {order_id}"
            )))
        }
        Some(&max) if quantity > max => {
            return Err(ApiError::bad_request(format!(
                "quantity: the order asked for {max} of product {product_id}, got {quantity}"
            )))
        }
        Some(_) => store::set_quantity(&mut tx, order_id, product_id, quantity).await?,
    }
    tx.commit().await?;
    Ok(())
}

/// IN_PROGRESS → COMPLETED, emitting `PackageCreated` with the remaining
/// lines, or `PackagingFailed` when none remain, in the same transaction.
pub async fn complete_packaging(w: &Warehouse, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = w.db.begin().await?;
    let to = require(&mut tx, order_id, Action::Complete).await?;
    if !store::transition(&mut tx, order_id, Status::InProgress, to).await? {
        // A concurrent completion won (PostgreSQL): one outcome only.
        tx.rollback().await.ok();
        return Err(ApiError::conflict(format!(
            "cannot complete the packaging request of order {order_id}: it was completed meanwhile"
        )));
    }
    let lines = store::lines(&mut *tx, order_id).await?;
    let packed: BTreeMap<Uuid, i64> = lines.iter().map(|l| (l.product_id, l.quantity)).collect();
    let moved = stock::ship(&mut tx, order_id, &packed).await?;
    w.outbox
        .push(&mut tx, &events::packaging_outcome(order_id, &lines)?)
        .await?;
    w.outbox.push_all(&mut tx, &moved).await?;
    w.outbox.commit(tx).await?;
    if lines.is_empty() {
        w.packaging_failed.inc();
    } else {
        w.packages_created.inc();
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct UpdatePackagingProductInput {
    order_id: Uuid,
    product_id: Uuid,
    quantity: i64,
}

#[utoipa::path(get, path = "/packaging-requests", security(("idToken" = [])), tag = "staff (admin, warehouse)", params(page::Params),
    responses((status = 200, body = RequestIds, description = "Ids of NEW packaging requests, oldest first"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse")))]
async fn list_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Query(params): Query<page::Params>,
) -> Result<Json<RequestIds>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    Ok(Json(
        new_request_ids(&w, params.next_token.as_deref(), params.limit).await?,
    ))
}

#[utoipa::path(get, path = "/packaging-requests/{order_id}", security(("idToken" = [])), tag = "staff (admin, warehouse)", params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    responses((status = 200, body = PackagingRequest, description = "The request"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such packaging request")))]
async fn read_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Path(order_id): Path<Uuid>,
) -> Result<Json<PackagingRequest>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    Ok(Json(packaging_request(&w, order_id).await?))
}

#[utoipa::path(post, path = "/startPackaging", security(("idToken" = [])), tag = "staff (admin, warehouse)", request_body = OrderInput,
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "NEW → IN_PROGRESS"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such packaging request"), (status = 409, body = ecom_runtime::openapi::Error, description = "The request is not in the state this step starts from")))]
async fn start_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Json(input): Json<OrderInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    start_packaging(&w, input.order_id).await?;
    Ok(success())
}

#[utoipa::path(post, path = "/updatePackagingProduct", security(("idToken" = [])), tag = "staff (admin, warehouse)", request_body = UpdatePackagingProductInput,
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "The line's quantity is set (0 removes it) while IN_PROGRESS"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such packaging request"), (status = 409, body = ecom_runtime::openapi::Error, description = "The request is not in the state this step starts from")))]
async fn update_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Json(input): Json<UpdatePackagingProductInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    update_packaging_product(&w, input.order_id, input.product_id, input.quantity).await?;
    Ok(success())
}

#[utoipa::path(post, path = "/completePackaging", security(("idToken" = [])), tag = "staff (admin, warehouse)", request_body = OrderInput,
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "IN_PROGRESS → COMPLETED; `PackageCreated`, or `PackagingFailed` when no line is left"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such packaging request"), (status = 409, body = ecom_runtime::openapi::Error, description = "The request is not in the state this step starts from")))]
async fn complete_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Json(input): Json<OrderInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    complete_packaging(&w, input.order_id).await?;
    Ok(success())
}

/// A product's stock; 404 when the product is untracked.
pub async fn get_stock(w: &Warehouse, product_id: Uuid) -> Result<Option<Stock>, ApiError> {
    Ok(stock::get(&w.db, product_id).await?)
}

/// Sets a product's `onHand`: 400 (naming the field) when negative, too
/// large, below what orders hold, or for a product the catalogue does not
/// have; nothing changes then.
pub async fn set_stock(w: &Warehouse, product_id: Uuid, on_hand: i64) -> Result<Stock, ApiError> {
    if !(0..=stock::MAX_ON_HAND).contains(&on_hand) {
        return Err(ApiError::bad_request(format!(
            "onHand: must be between 0 and {}, got {on_hand}",
            stock::MAX_ON_HAND
        )));
    }
    if let Some(clients) = &w.clients {
        let answer: Result<Value, _> = clients
            .get(Service::Products)
            .map_err(ApiError::internal)?
            .get(&format!("/products/{product_id}"))
            .await;
        match answer {
            Ok(_) => {}
            Err(e) if e.status() == Some(axum::http::StatusCode::NOT_FOUND) => {
                return Err(ApiError::bad_request(format!(
                    "productId: the catalogue has no product {product_id}"
                )))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask products whether a product exists");
                return Err(ApiError::unavailable("the products service does not answer"));
            }
        }
    }
    match stock::set(&w.db, &w.outbox, product_id, on_hand).await? {
        Ok(stock) => Ok(stock),
        Err(SetRefused::BelowReserved { reserved }) => Err(ApiError::bad_request(format!(
            "onHand: {reserved} units of product {product_id} are reserved for orders, so onHand cannot go below {reserved} (got {on_hand})"
        ))),
    }
}

fn product_id(text: &str) -> Result<Uuid, ApiError> {
    ecom_model::parse_uuid(text).map_err(|e| ApiError::bad_request(format!("productId: {e}")))
}

#[utoipa::path(get, path = "/stock/{product_id}", security(("idToken" = [])), tag = "staff (admin, warehouse)", params(("product_id" = String, Path, description = "The product's id (a UUID)")),
    responses((status = 200, body = Stock, description = "The product's stock"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "The product's stock is not tracked (it never runs out)")))]
async fn get_stock_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Path(id): Path<String>,
) -> Result<Json<Stock>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    let id = product_id(&id)?;
    get_stock(&w, id).await?.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "product {id} has no stock record: it is untracked (unlimited)"
        ))
    })
}

/// `{"onHand": n}`, checked by hand so that every mistake names the field.
fn on_hand(body: &Value) -> Result<i64, ApiError> {
    match body.get("onHand") {
        None | Some(Value::Null) => Err(ApiError::bad_request("onHand: missing field")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request(format!("onHand: must be a whole number, got {v}"))),
    }
}

#[utoipa::path(put, path = "/stock/{product_id}", security(("idToken" = [])), tag = "staff (admin, warehouse)", params(("product_id" = String, Path, description = "The product's id (a UUID)")), request_body(content = shapes::OnHand),
    responses((status = 200, body = Stock, description = "The new stock; `StockChanged` is emitted"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or warehouse"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "Below what is reserved")))]
async fn set_stock_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Stock>, ApiError> {
    caller.require_group(Group::WAREHOUSE_STAFF)?;
    let id = product_id(&id)?;
    Ok(Json(set_stock(&w, id, on_hand(&body)?).await?))
}

#[utoipa::path(post, path = "/backend/reservations", security(("serviceCredential" = [])), tag = "backend", request_body = Reservation,
    responses((status = 200, body = ReservationAnswer, description = "Held (`ok: true`) or refused for stock")))]
async fn reserve_route(
    State(w): State<Warehouse>,
    Json(input): Json<Reservation>,
) -> Result<Json<ReservationAnswer>, ApiError> {
    if let Some(bad) = input.products.iter().find(|l| l.quantity < 1) {
        return Err(ApiError::bad_request(format!(
            "products: quantity of {} must be at least 1, got {}",
            bad.product_id, bad.quantity
        )));
    }
    let expires =
        Timestamp::now().unix_micros() + i64::try_from(w.reservation_ttl.as_micros()).unwrap_or(i64::MAX / 2);
    match stock::reserve(
        &w.db,
        &w.outbox,
        &w.seen_tracked,
        input.order_id,
        &input.products,
        expires,
    )
    .await?
    {
        Reserved::Held { tracked } => {
            if tracked {
                w.metrics.made.inc();
            }
            Ok(Json(ReservationAnswer {
                ok: true,
                out_of_stock: Vec::new(),
            }))
        }
        Reserved::OutOfStock(ids) => {
            w.metrics.refused.inc();
            Ok(Json(ReservationAnswer {
                ok: false,
                out_of_stock: ids,
            }))
        }
    }
}

/// Releases what an order holds (its order was refused elsewhere).
pub async fn release(w: &Warehouse, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = w.db.begin().await?;
    let moved = stock::release(&mut tx, order_id, None).await?;
    if moved.is_empty() {
        tx.rollback().await.ok();
        return Ok(());
    }
    w.outbox.push_all(&mut tx, &moved).await?;
    w.outbox.commit(tx).await?;
    w.metrics.released.inc();
    Ok(())
}

#[utoipa::path(post, path = "/backend/reservations/release", security(("serviceCredential" = [])), tag = "backend", request_body = OrderRef,
    responses((status = 200, body = Ack, description = "What the order held is released (`ok: true`)")))]
async fn release_route(
    State(w): State<Warehouse>,
    Json(input): Json<OrderRef>,
) -> Result<Json<Ack>, ApiError> {
    release(&w, input.order_id).await?;
    Ok(Json(Ack { ok: true }))
}

#[utoipa::path(post, path = "/backend/cancellations", security(("serviceCredential" = [])), tag = "backend", request_body = OrderRef,
    responses((status = 200, body = Ack, description = "The order's packaging is cancelled (now, before, or in advance) and its stock released (`ok: true`)"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "Packaging has started")))]
async fn cancel_route(
    State(w): State<Warehouse>,
    Json(input): Json<OrderRef>,
) -> Result<Json<Ack>, ApiError> {
    cancel_packaging(&w, input.order_id).await?;
    Ok(Json(Ack { ok: true }))
}

#[utoipa::path(post, path = "/backend/availability", security(("serviceCredential" = [])), tag = "backend", request_body = AvailabilityQuery,
    responses((status = 200, body = Availability, description = "Units available per tracked product (untracked ones absent)")))]
async fn availability_route(
    State(w): State<Warehouse>,
    Json(input): Json<AvailabilityQuery>,
) -> Result<Json<Availability>, ApiError> {
    if input.product_ids.len() > 1000 {
        return Err(ApiError::bad_request("productIds: at most 1000 at a time"));
    }
    let available = stock::available(&w.db, &input.product_ids).await?;
    Ok(Json(Availability { available }))
}

/// Releases reservations whose order never arrived, and refreshes the
/// out-of-stock gauge, every `every` until the database closes. Several
/// replicas may sweep at once: a hold is deleted by exactly one of them.
pub fn spawn_sweeper(w: Warehouse, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if w.db.writer().is_closed() {
                return;
            }
            if let Err(e) = sweep(&w).await {
                tracing::warn!(error = format!("{e:#}"), "stock sweep failed; next one retries");
            }
        }
    });
}

/// One sweep: expired holds released (each with its `StockChanged`), the
/// gauge refreshed. How many orders' holds expired.
pub async fn sweep(w: &Warehouse) -> anyhow::Result<usize> {
    let now = Timestamp::now().unix_micros();
    let mut expired = 0;
    for order_id in stock::expired_orders(&w.db, now, 500).await? {
        let mut tx = w.db.begin().await?;
        let moved = stock::release(&mut tx, order_id, Some(now)).await?;
        if moved.is_empty() {
            tx.rollback().await.ok();
            continue;
        }
        w.outbox.push_all(&mut tx, &moved).await?;
        w.outbox.commit(tx).await?;
        tracing::info!(%order_id, "stock reservation expired: its order never arrived");
        w.metrics.expired.inc();
        expired += 1;
    }
    w.metrics.out_of_stock.set(stock::out_of_stock(&w.db).await?);
    Ok(expired)
}
