//! What the catalogue tells the bus: `ProductCreated` (detail: the product),
//! `ProductModified` (`{old, new, changed}`) and `ProductDeleted` (the
//! product as it was), source `ecommerce.products`, resource = product id.
//! They are written to the outbox in the transaction of the change (see
//! [`crate::store`]). The service handles no events.

use ecom_contracts::products::{ProductCreated, ProductDeleted, ProductModified};
use ecom_model::Product;
use ecom_platform::{outbox, Event};

/// `ProductCreated`.
pub fn created(product: &Product) -> anyhow::Result<Event> {
    outbox::created::<ProductCreated>(&product.product_id.to_string(), product)
}

/// `ProductModified`, or `None` when the two images are equal.
pub fn modified(old: &Product, new: &Product) -> anyhow::Result<Option<Event>> {
    outbox::modified::<ProductModified, _>(&new.product_id.to_string(), old, new)
}

/// `ProductDeleted`.
pub fn deleted(old: &Product) -> anyhow::Result<Event> {
    outbox::deleted::<ProductDeleted>(&old.product_id.to_string(), old)
}
