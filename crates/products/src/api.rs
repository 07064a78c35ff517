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
use crate::validate::{self, Claimed};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use ecom_contracts::backend::{ProductsAnswer, ProductsCheck};
use ecom_contracts::Group;
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
        .route("/categories", get(crate::categories::list))
        .route("/admin/products", get(admin_list).post(admin_create))
        .route(
            "/admin/products/{product_id}",
            get(admin_get).put(admin_update).delete(admin_delete),
        )
        .with_state(ctx.clone())
        .merge(backend)
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/products/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    get_product,
    list_products,
    crate::categories::list,
    validate_products,
    admin_list,
    admin_get,
    admin_create,
    admin_update,
    admin_delete
))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// Admin routes are for group `admin` only (403 for other signed-in users).
fn admin(User(claims): &User) -> Result<&Claims, ApiError> {
    claims.require_group(Group::ADMINS)?;
    Ok(claims)
}

/// Counts a catalogue change made through the admin routes on `/metrics`
/// (`ecom products import` writes to the database from its own process,
/// whose figures no server shows). Admin writes are rare: the registry
/// lookup per call costs nothing that matters.
fn changed(change: &str) {
    ecom_runtime::metrics::counter(
        "ecom_products_changes_total",
        "Catalogue changes through the admin routes: created, updated, deleted",
        &[("change", change)],
    )
    .inc();
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

#[utoipa::path(get, path = "/products/{product_id}", tag = "public", params(("product_id" = String, Path, description = "The product's id (a UUID)")),
    responses((status = 200, body = Product, description = "The product"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such product")))]
async fn get_product(State(ctx): State<Context>, Path(id): Path<String>) -> Result<Json<Product>, ApiError> {
    find(&ctx, &id).await.map(Json)
}

#[utoipa::path(get, path = "/products", tag = "public", params(PageQuery),
    responses((status = 200, body = Page, description = "A page of the catalogue (or of one category), in id order")))]
async fn list_products(
    State(ctx): State<Context>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page>, ApiError> {
    let req = PageRequest::try_from(query)?;
    Ok(Json(store::page(&ctx.db, &req).await?))
}

#[utoipa::path(post, path = "/backend/validate", security(("serviceCredential" = [])), tag = "backend",
    request_body = ProductsCheck<Vec<Claimed>>,
    responses((status = 200, body = ProductsAnswer, description = "`All products are valid`, or the reasons and the catalogue's version of each wrong product")))]
async fn validate_products(
    State(ctx): State<Context>,
    Json(req): Json<ProductsCheck>,
) -> Result<Json<ProductsAnswer>, ApiError> {
    validate::validate(&ctx.db, req).await.map(Json)
}

#[utoipa::path(get, path = "/admin/products", security(("idToken" = [])), tag = "admin", params(PageQuery),
    responses((status = 200, body = Page, description = "A page of the catalogue"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin")))]
async fn admin_list(
    user: User,
    state: State<Context>,
    query: Query<PageQuery>,
) -> Result<Json<Page>, ApiError> {
    admin(&user)?;
    list_products(state, query).await
}

#[utoipa::path(get, path = "/admin/products/{product_id}", security(("idToken" = [])), tag = "admin", params(("product_id" = String, Path, description = "The product's id (a UUID)")),
    responses((status = 200, body = Product, description = "The product"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such product")))]
async fn admin_get(user: User, state: State<Context>, id: Path<String>) -> Result<Json<Product>, ApiError> {
    admin(&user)?;
    get_product(state, id).await
}

#[utoipa::path(post, path = "/admin/products", security(("idToken" = [])), tag = "admin", request_body = ProductInput,
    responses((status = 201, body = Product, description = "Stored (id generated when absent); `ProductCreated` is emitted"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 409, body = ecom_runtime::openapi::Error, description = "The product id is taken")))]
async fn admin_create(
    user: User,
    State(ctx): State<Context>,
    Json(input): Json<ProductInput>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let claims = admin(&user)?;
    let product = store::create(&ctx.db, &ctx.outbox, input).await?;
    tracing::info!(product_id = %product.product_id, admin = claims.sub, "product created");
    changed("created");
    Ok((StatusCode::CREATED, Json(product)))
}

#[utoipa::path(put, path = "/admin/products/{product_id}", security(("idToken" = [])), tag = "admin", params(("product_id" = String, Path, description = "The product's id (a UUID)")), request_body = ProductInput,
    responses((status = 200, body = Product, description = "Stored; `ProductModified` is emitted when it changed"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such product")))]
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
    changed("updated");
    Ok(Json(product))
}

#[utoipa::path(delete, path = "/admin/products/{product_id}", security(("idToken" = [])), tag = "admin", params(("product_id" = String, Path, description = "The product's id (a UUID)")),
    responses((status = 200, body = Product, description = "Deleted, as it was; `ProductDeleted` is emitted"),
        (status = 403, body = ecom_runtime::openapi::Error, description = "Not an admin"),
        (status = 404, body = ecom_runtime::openapi::Error, description = "No such product")))]
async fn admin_delete(
    user: User,
    State(ctx): State<Context>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let claims = admin(&user)?;
    let id = product_id(&id)?;
    let product = store::delete(&ctx.db, &ctx.outbox, id).await?;
    tracing::info!(product_id = %id, admin = claims.sub, "product deleted");
    changed("deleted");
    Ok(Json(product))
}
