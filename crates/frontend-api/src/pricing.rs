//! `getDeliveryPricing`: delivery-pricing's `POST /backend/pricing`.

use crate::error;
use crate::types::{AddressInput, ProductInput};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use ecom_contracts::backend::{PricingAnswer, PricingCheck};
use ecom_contracts::Service;

/// What to price: the products (with quantities) and where they go.
#[derive(Debug, InputObject)]
pub struct DeliveryPricingInput {
    /// The products; each counts `quantity` times.
    pub products: Vec<ProductInput>,
    /// Destination.
    pub address: AddressInput,
}

/// The delivery fee.
#[derive(Debug, SimpleObject)]
pub struct DeliveryPricingResponse {
    /// In the smallest currency unit.
    pub pricing: i64,
}

/// Pricing's part of `Query`.
#[derive(Default)]
pub struct PricingQuery;

#[Object]
impl PricingQuery {
    /// What delivering these products to this address costs. Signed-in users.
    async fn get_delivery_pricing(
        &self,
        ctx: &Context<'_>,
        input: DeliveryPricingInput,
    ) -> async_graphql::Result<DeliveryPricingResponse> {
        crate::auth::user(ctx).await?;
        // The shopper's input goes as typed: pricing checks it and names
        // what is wrong.
        let check = PricingCheck {
            products: input.products,
            address: input.address,
        };
        // A computation: safe to send to another replica after a failure.
        let answer: PricingAnswer = crate::client(ctx, Service::DeliveryPricing)?
            .idempotent()
            .post("/backend/pricing", &check)
            .await
            .map_err(error::from_client)?;
        Ok(DeliveryPricingResponse {
            pricing: answer.pricing,
        })
    }
}
