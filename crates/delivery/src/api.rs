//! Staff operations on deliveries, as plain functions (the GraphQL gateway
//! and tests call them) and as REST routes guarded by JWT groups. Shapes
//! follow the GraphQL schema:
//!
//! - `GET  /deliveries?nextToken=&limit=` → `{deliveries, nextToken}` (admin, delivery)
//! - `GET  /deliveries/{orderId}` → `{orderId, address, status, trackingId?}` (admin, delivery; 404 when absent)
//! - `POST /startDelivery`, `/completeDelivery`, `/failDelivery` `{orderId}` →
//!   `{success: true}` (admin, delivery, and warehouse as in the original)
//! - `DELETE /deliveries/{orderId}` → `{success: true}` (admin)
//!
//! A transition from the wrong state is a 409 saying what the state is.

use crate::domain::{Action, Delivery};
use crate::{events, store};
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use ecom_contracts::delivery::{DeliveryCompleted, DeliveryFailed};
use ecom_contracts::Group;
use ecom_platform::{Context, Outbox};
use ecom_runtime::auth::User;
use ecom_runtime::metrics::{counter, Counter};
use ecom_runtime::staff::{success, OrderInput};
use ecom_runtime::{page, ApiError, Json, Path, Query};
use ecom_storage::{Db, Tx};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// What the staff operations need. Cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    /// Delivery's database.
    pub db: Db,
    /// Its outbox (outcomes leave through it).
    pub outbox: Outbox,
    /// Deliveries created (counted by the event handler).
    pub created: Arc<Counter>,
    completed: Arc<Counter>,
    failed: Arc<Counter>,
}

impl Deliveries {
    /// The state of delivery built from its context.
    pub fn new(ctx: &Context) -> Deliveries {
        Deliveries::with(ctx.db.clone(), ctx.outbox.clone())
    }

    /// The state from its parts (tests build it without a whole platform).
    pub fn with(db: Db, outbox: Outbox) -> Deliveries {
        let count = |e: &str| {
            counter(
                "ecom_deliveries_total",
                "Deliveries by what happened to them (created, completed, failed)",
                &[("event", e)],
            )
        };
        Deliveries {
            db,
            outbox,
            created: count("created"),
            completed: count("completed"),
            failed: count("failed"),
        }
    }
}

/// The service's routes.
pub fn router(state: Deliveries) -> Router {
    Router::new()
        .route("/deliveries", get(list_route))
        .route("/deliveries/{order_id}", get(read_route).delete(delete_route))
        .route("/startDelivery", post(start_route))
        .route("/completeDelivery", post(complete_route))
        .route("/failDelivery", post(fail_route))
        .with_state(state)
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/delivery/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_route, read_route, delete_route, start_route, complete_route, fail_route))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// A page of NEW deliveries (`PaginatedDeliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
    /// Token of the next page; `null` on the last one.
    pub next_token: Option<String>,
}

/// NEW deliveries, a page at a time.
pub async fn new_deliveries(
    d: &Deliveries,
    next_token: Option<&str>,
    limit: Option<i64>,
) -> Result<DeliveryPage, ApiError> {
    let (after, limit) = page::request(next_token, limit)?;
    let (deliveries, next) = store::list_new(&d.db, after, limit).await?;
    Ok(DeliveryPage {
        deliveries,
        next_token: next.as_ref().map(page::next_token),
    })
}

/// One delivery; 404 when there is none for the order.
pub async fn delivery(d: &Deliveries, order_id: Uuid) -> Result<Delivery, ApiError> {
    store::get(&d.db, order_id)
        .await?
        .ok_or_else(|| not_found(order_id))
}

fn not_found(order_id: Uuid) -> ApiError {
    ApiError::not_found(format!("no delivery for order {order_id}"))
}

/// Does `action` to a delivery inside `tx`: 404 when absent, 409 from
/// another state ([`crate::domain::next`]). Returns the address.
async fn transition(tx: &mut Tx, order_id: Uuid, action: Action) -> Result<ecom_model::Address, ApiError> {
    let (status, address) = store::find(tx, order_id)
        .await?
        .ok_or_else(|| not_found(order_id))?;
    let to = crate::domain::next(order_id, status, action)?;
    if !store::transition(tx, order_id, status, to).await? {
        // Moved by a concurrent call after we read it (PostgreSQL): one
        // outcome only.
        return Err(ApiError::conflict(format!(
            "cannot {} the delivery of order {order_id}: it changed meanwhile",
            action.verb()
        )));
    }
    Ok(address)
}

/// NEW → IN_PROGRESS: the delivery gets a fresh tracking id, announced in
/// `DeliveryStarted {orderId, trackingId}` (orders shows it on the order).
pub async fn start_delivery(d: &Deliveries, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = d.db.begin().await?;
    transition(&mut tx, order_id, Action::Start).await?;
    let tracking_id = crate::domain::tracking_id();
    store::set_tracking_id(&mut tx, order_id, &tracking_id).await?;
    d.outbox
        .push(&mut tx, &events::started(order_id, &tracking_id)?)
        .await?;
    d.outbox.commit(tx).await?;
    Ok(())
}

/// IN_PROGRESS → COMPLETED, emitting `DeliveryCompleted`.
pub async fn complete_delivery(d: &Deliveries, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = d.db.begin().await?;
    let address = transition(&mut tx, order_id, Action::Complete).await?;
    d.outbox
        .push(
            &mut tx,
            &events::outcome::<DeliveryCompleted>(order_id, &address)?,
        )
        .await?;
    d.outbox.commit(tx).await?;
    d.completed.inc();
    Ok(())
}

/// IN_PROGRESS → FAILED, emitting `DeliveryFailed`.
pub async fn fail_delivery(d: &Deliveries, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = d.db.begin().await?;
    let address = transition(&mut tx, order_id, Action::Fail).await?;
    d.outbox
        .push(&mut tx, &events::outcome::<DeliveryFailed>(order_id, &address)?)
        .await?;
    d.outbox.commit(tx).await?;
    d.failed.inc();
    Ok(())
}

/// Deletes a delivery. One without an outcome yet (NEW or IN_PROGRESS)
/// will never be delivered, so `DeliveryFailed` is emitted for it; a
/// failed one already said so, a completed one was delivered.
pub async fn delete_delivery(d: &Deliveries, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = d.db.begin().await?;
    let (status, address) = store::find(&mut tx, order_id)
        .await?
        .ok_or_else(|| not_found(order_id))?;
    store::delete(&mut tx, order_id).await?;
    if status.is_final() {
        tx.commit().await?;
    } else {
        d.outbox
            .push(&mut tx, &events::outcome::<DeliveryFailed>(order_id, &address)?)
            .await?;
        d.outbox.commit(tx).await?;
        d.failed.inc();
    }
    Ok(())
}

#[utoipa::path(get, path = "/deliveries", security(("idToken" = [])), tag = "staff", params(page::Params),
    responses((status = 200, body = DeliveryPage, description = "NEW deliveries, oldest first"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or delivery")))]
async fn list_route(
    State(d): State<Deliveries>,
    User(caller): User,
    Query(params): Query<page::Params>,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.require_group(Group::DELIVERY_STAFF)?;
    Ok(Json(
        new_deliveries(&d, params.next_token.as_deref(), params.limit).await?,
    ))
}

#[utoipa::path(get, path = "/deliveries/{order_id}", security(("idToken" = [])), tag = "staff", params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    responses((status = 200, body = Delivery, description = "The delivery"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin or delivery"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such delivery")))]
async fn read_route(
    State(d): State<Deliveries>,
    User(caller): User,
    Path(order_id): Path<Uuid>,
) -> Result<Json<Delivery>, ApiError> {
    caller.require_group(Group::DELIVERY_STAFF)?;
    Ok(Json(delivery(&d, order_id).await?))
}

#[utoipa::path(delete, path = "/deliveries/{order_id}", security(("idToken" = [])), tag = "staff", params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "Deleted; `DeliveryFailed` is emitted when it had not completed"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such delivery")))]
async fn delete_route(
    State(d): State<Deliveries>,
    User(caller): User,
    Path(order_id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::ADMINS)?;
    delete_delivery(&d, order_id).await?;
    Ok(success())
}

#[utoipa::path(post, path = "/startDelivery", security(("idToken" = [])), tag = "staff", request_body = OrderInput,
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "NEW → IN_PROGRESS, with a tracking id; `DeliveryStarted` is emitted"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin, delivery or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such delivery"), (status = 409, body = ecom_runtime::openapi::Error, description = "The delivery is not in the state this step starts from")))]
async fn start_route(
    State(d): State<Deliveries>,
    User(caller): User,
    Json(input): Json<OrderInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::DRIVERS)?;
    start_delivery(&d, input.order_id).await?;
    Ok(success())
}

#[utoipa::path(post, path = "/completeDelivery", security(("idToken" = [])), tag = "staff", request_body = OrderInput,
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "IN_PROGRESS → COMPLETED; `DeliveryCompleted` is emitted"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin, delivery or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such delivery"), (status = 409, body = ecom_runtime::openapi::Error, description = "The delivery is not in the state this step starts from")))]
async fn complete_route(
    State(d): State<Deliveries>,
    User(caller): User,
    Json(input): Json<OrderInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::DRIVERS)?;
    complete_delivery(&d, input.order_id).await?;
    Ok(success())
}

#[utoipa::path(post, path = "/failDelivery", security(("idToken" = [])), tag = "staff", request_body = OrderInput,
    responses((status = 200, body = ecom_runtime::openapi::Success, description = "IN_PROGRESS → FAILED; `DeliveryFailed` is emitted"), (status = 403, body = ecom_runtime::openapi::Error, description = "Not in group admin, delivery or warehouse"), (status = 404, body = ecom_runtime::openapi::Error, description = "No such delivery"), (status = 409, body = ecom_runtime::openapi::Error, description = "The delivery is not in the state this step starts from")))]
async fn fail_route(
    State(d): State<Deliveries>,
    User(caller): User,
    Json(input): Json<OrderInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(Group::DRIVERS)?;
    fail_delivery(&d, input.order_id).await?;
    Ok(success())
}
