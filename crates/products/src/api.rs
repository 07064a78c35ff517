//! The routes of the catalogue (all under `/products` in the shared listener).
//!
//! Public, no credential (the GraphQL gateway and anyone may read the
//! catalogue, as the original's `getProducts` / `getProduct` /
//! `getProductsByCategory`):
//! - `GET /products/products/{productId}` → the product, or 404.
//! - `GET /products/products?category=C&limit=N&nextToken=T` → `{"products":
//!   [...], "nextToken": T | null}`: the whole catalogue, or one category, in
//!   product id order; `limit` 1–100 (default 20); a token this service did
//!   not issue is a 400.
//!
//! Admin, bearer JWT of a user in group `admin` (401 without a valid token,
//! 403 for other users):
//! - `POST /products/admin/products` → 201 and the stored product (id
//!   generated when absent; 409 when taken).
//! - `GET /products/admin/products?category&limit&nextToken` → a page, as above.
//! - `GET /products/admin/products/{productId}` → the product, or 404.
//! - `PUT /products/admin/products/{productId}` → the stored product; the
//!   body is the whole product (a `productId` in it must match the path).
//! - `DELETE /products/admin/products/{productId}` → the product as it was.
//!
//! Backend, service credential only:
//! - `POST /products/backend/validate` (see [`crate::validate`]).
//!
//! The gateway reads through the public routes: catalogue data is public,
//! so a service credential would protect nothing there.

use crate::domain::{Page, PageQuery, PageRequest, ProductInput};
use crate::store;
use crate::validate::{self, ValidateRequest, ValidateResponse};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use ecom_model::Product;
use ecom_platform::Context;
use ecom_runtime::auth::{Claims, User};
use ecom_runtime::{ApiError, Json, Path, Query};
use uuid::Uuid;

/// The service's routes.
pub fn router(ctx: &Context) -> Router {
    let backend = ctx.backend(
        Router::new()
            .route("/backend/validate", post(validate_products))
            .with_state(ctx.clone()),
    );
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{product_id}", get(get_product))
        .route("/admin/products", get(admin_list).post(admin_create))
        .route(
            "/admin/products/{product_id}",
            get(admin_get).put(admin_update).delete(admin_delete),
        )
        .with_state(ctx.clone())
        .merge(backend)
}

/// Admin routes are for group `admin` only (403 for other signed-in users).
fn admin(User(claims): &User) -> Result<&Claims, ApiError> {
    claims.require_group(&["admin"])?;
    Ok(claims)
}

fn product_id(text: &str) -> Result<Uuid, ApiError> {
    ecom_model::parse_uuid(text).map_err(|e| ApiError::bad_request(format!("productId: {e}")))
}

async fn find(ctx: &Context, text: &str) -> Result<Product, ApiError> {
    let id = product_id(text)?;
    store::get(&ctx.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("product '{id}' not found")))
}

async fn get_product(State(ctx): State<Context>, Path(id): Path<String>) -> Result<Json<Product>, ApiError> {
    find(&ctx, &id).await.map(Json)
}

async fn list_products(
    State(ctx): State<Context>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page>, ApiError> {
    let req = PageRequest::try_from(query)?;
    Ok(Json(store::page(&ctx.db, &req).await?))
}

async fn validate_products(
    State(ctx): State<Context>,
    Json(req): Json<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    validate::validate(&ctx.db, req).await.map(Json)
}

async fn admin_list(
    user: User,
    state: State<Context>,
    query: Query<PageQuery>,
) -> Result<Json<Page>, ApiError> {
    admin(&user)?;
    list_products(state, query).await
}

async fn admin_get(user: User, state: State<Context>, id: Path<String>) -> Result<Json<Product>, ApiError> {
    admin(&user)?;
    get_product(state, id).await
}

async fn admin_create(
    user: User,
    State(ctx): State<Context>,
    Json(input): Json<ProductInput>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let claims = admin(&user)?;
    let product = store::create(&ctx.db, &ctx.outbox, input).await?;
    tracing::info!(product_id = %product.product_id, admin = claims.sub, "product created");
    Ok((StatusCode::CREATED, Json(product)))
}

async fn admin_update(
    user: User,
    State(ctx): State<Context>,
    Path(id): Path<String>,
    Json(input): Json<ProductInput>,
) -> Result<Json<Product>, ApiError> {
    let claims = admin(&user)?;
    let id = product_id(&id)?;
    if input.product_id.is_some_and(|body_id| body_id != id) {
        return Err(ApiError::bad_request(
            "productId: differs from the product id in the path",
        ));
    }
    let product = store::update(&ctx.db, &ctx.outbox, id, input).await?;
    tracing::info!(product_id = %id, admin = claims.sub, "product updated");
    Ok(Json(product))
}

async fn admin_delete(
    user: User,
    State(ctx): State<Context>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let claims = admin(&user)?;
    let id = product_id(&id)?;
    let product = store::delete(&ctx.db, &ctx.outbox, id).await?;
    tracing::info!(product_id = %id, admin = claims.sub, "product deleted");
    Ok(Json(product))
}
