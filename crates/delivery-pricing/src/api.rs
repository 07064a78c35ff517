//! `POST /delivery-pricing/backend/pricing`.

use crate::domain::{self, PricingError};
use axum::routing::post;
use axum::Router;
use ecom_model::{Address, Package, Quantity};
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};
use serde::{Deserialize, Serialize};

/// The service's routes.
pub fn router(ctx: &Context) -> Router {
    ctx.backend(Router::new().route("/backend/pricing", post(pricing)))
        .merge(ecom_runtime::openapi::router(crate::NAME, openapi))
}

/// The handlers of the OpenAPI document at `/delivery-pricing/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(pricing))]
struct ApiDoc;

/// The service's OpenAPI document, before `ecom_runtime::openapi::document`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// A product as far as pricing cares: its box and how many. The other
/// product fields callers send are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Item {
    package: Package,
    #[serde(default)]
    quantity: Quantity,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PricingRequest {
    products: Vec<Item>,
    address: Address,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PricingResponse {
    /// In the smallest currency unit.
    pricing: i64,
}

#[utoipa::path(post, path = "/backend/pricing", security(("serviceCredential" = [])), tag = "backend",
    request_body = PricingRequest,
    responses((status = 200, body = PricingResponse, description = "The delivery price: boxes × the fee of the destination country")))]
async fn pricing(Json(req): Json<PricingRequest>) -> Result<Json<PricingResponse>, ApiError> {
    let items: Vec<(Package, Quantity)> = req.products.iter().map(|i| (i.package, i.quantity)).collect();
    let price = domain::price(&items, req.address.country).map_err(|PricingError::TooLarge| {
        ApiError::bad_request("products: package sizes or quantities are too large to price")
    })?;
    Ok(Json(PricingResponse {
        pricing: price.cents(),
    }))
}
