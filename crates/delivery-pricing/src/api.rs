//! `POST /delivery-pricing/backend/pricing`.

use crate::domain::{self, PricingError};
use axum::routing::post;
use axum::Router;
use ecom_contracts::backend::{Parcel, PricingAnswer, PricingCheck};
use ecom_model::{Address, Package, Quantity};
use ecom_platform::Context;
use ecom_runtime::{ApiError, Json};

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

#[utoipa::path(post, path = "/backend/pricing", security(("serviceCredential" = [])), tag = "backend",
    request_body = PricingCheck<Vec<Parcel>, Address>,
    responses((status = 200, body = PricingAnswer, description = "The delivery price: boxes × the fee of the destination country")))]
async fn pricing(Json(req): Json<PricingCheck>) -> Result<Json<PricingAnswer>, ApiError> {
    let items: Vec<(Package, Quantity)> = req.products.iter().map(|i| (i.package, i.quantity)).collect();
    let price = domain::price(&items, req.address.country).map_err(|PricingError::TooLarge| {
        ApiError::bad_request("products: package sizes or quantities are too large to price")
    })?;
    Ok(Json(PricingAnswer {
        pricing: price.cents(),
    }))
}
