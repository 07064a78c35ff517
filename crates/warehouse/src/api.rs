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
//! A transition from the wrong state is a 409 saying what the state is.

use crate::domain::{PackagingRequest, Status};
use crate::{events, store};
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use ecom_platform::{Context, Outbox};
use ecom_runtime::auth::User;
use ecom_runtime::metrics::{counter, Counter};
use ecom_runtime::{page, ApiError, Json, Path, Query};
use ecom_storage::Db;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// Groups allowed to run the warehouse's staff operations.
pub const STAFF: &[&str] = &["admin", "warehouse"];

/// What the staff operations need. Cheap to clone.
#[derive(Clone)]
pub struct Warehouse {
    /// The warehouse's database.
    pub db: Db,
    /// Its outbox (packaging outcomes leave through it).
    pub outbox: Outbox,
    packages_created: Arc<Counter>,
    packaging_failed: Arc<Counter>,
}

impl Warehouse {
    /// The state of the warehouse built from its context.
    pub fn new(ctx: &Context) -> Warehouse {
        Warehouse::with(ctx.db.clone(), ctx.outbox.clone())
    }

    /// The state from its parts (tests build it without a whole platform).
    pub fn with(db: Db, outbox: Outbox) -> Warehouse {
        let outcome = |o: &str| {
            counter(
                "ecom_warehouse_packages_total",
                "Packaging requests completed, by outcome (created or failed)",
                &[("outcome", o)],
            )
        };
        Warehouse {
            db,
            outbox,
            packages_created: outcome("created"),
            packaging_failed: outcome("failed"),
        }
    }
}

/// The service's routes.
pub fn router(state: Warehouse) -> Router {
    Router::new()
        .route("/packaging-requests", get(list_route))
        .route("/packaging-requests/{order_id}", get(read_route))
        .route("/startPackaging", post(start_route))
        .route("/updatePackagingProduct", post(update_route))
        .route("/completePackaging", post(complete_route))
        .with_state(state)
}

/// A page of ids of NEW requests (`PaginatedPackagingRequestIds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    let after = next_token.map(page::position).transpose()?;
    let (ids, next) = store::list_new(&w.db, after, page::limit(limit)?).await?;
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

fn not_found(order_id: Uuid) -> ApiError {
    ApiError::not_found(format!("no packaging request for order {order_id}"))
}

/// Checks that the request is in `wanted`: 404 when absent, 409 otherwise.
async fn require(
    tx: &mut ecom_storage::Tx,
    order_id: Uuid,
    wanted: Status,
    action: &str,
) -> Result<(), ApiError> {
    match store::header(tx, order_id).await? {
        None => Err(not_found(order_id)),
        Some(h) if h.status == Status::Deleted => Err(not_found(order_id)),
        Some(h) if h.status == wanted => Ok(()),
        Some(h) => Err(ApiError::conflict(format!(
            "cannot {action} the packaging request of order {order_id}: it is {}, and only a {} request can be",
            h.status.as_str(),
            wanted.as_str()
        ))),
    }
}

/// NEW → IN_PROGRESS: the request stops following its order.
pub async fn start_packaging(w: &Warehouse, order_id: Uuid) -> Result<(), ApiError> {
    let mut tx = w.db.begin().await?;
    require(&mut tx, order_id, Status::New, "start").await?;
    store::transition(&mut tx, order_id, Status::New, Status::InProgress).await?;
    tx.commit().await?;
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
    require(&mut tx, order_id, Status::InProgress, "update").await?;
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
    require(&mut tx, order_id, Status::InProgress, "complete").await?;
    store::transition(&mut tx, order_id, Status::InProgress, Status::Completed).await?;
    let lines = store::lines(&mut *tx, order_id).await?;
    w.outbox
        .push(&mut tx, &events::packaging_outcome(order_id, &lines))
        .await?;
    w.outbox.commit(tx).await?;
    if lines.is_empty() {
        w.packaging_failed.inc();
    } else {
        w.packages_created.inc();
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackagingInput {
    order_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatePackagingProductInput {
    order_id: Uuid,
    product_id: Uuid,
    quantity: i64,
}

fn success() -> Json<Value> {
    Json(json!({ "success": true }))
}

async fn list_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Query(params): Query<ListParams>,
) -> Result<Json<RequestIds>, ApiError> {
    caller.require_group(STAFF)?;
    Ok(Json(
        new_request_ids(&w, params.next_token.as_deref(), params.limit).await?,
    ))
}

async fn read_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Path(order_id): Path<Uuid>,
) -> Result<Json<PackagingRequest>, ApiError> {
    caller.require_group(STAFF)?;
    Ok(Json(packaging_request(&w, order_id).await?))
}

async fn start_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Json(input): Json<PackagingInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(STAFF)?;
    start_packaging(&w, input.order_id).await?;
    Ok(success())
}

async fn update_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Json(input): Json<UpdatePackagingProductInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(STAFF)?;
    update_packaging_product(&w, input.order_id, input.product_id, input.quantity).await?;
    Ok(success())
}

async fn complete_route(
    State(w): State<Warehouse>,
    User(caller): User,
    Json(input): Json<PackagingInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require_group(STAFF)?;
    complete_packaging(&w, input.order_id).await?;
    Ok(success())
}
