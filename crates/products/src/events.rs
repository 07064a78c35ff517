//! What the catalogue tells the bus: `ProductCreated` (detail: the product),
//! `ProductModified` (`{old, new, changed}`) and `ProductDeleted` (the
//! product as it was), source `ecommerce.products`, resource = product id.
//! They are written to the outbox in the transaction of the change (see
//! [`crate::store`]). The service handles no events.

use ecom_model::Product;
use ecom_platform::event::sources::PRODUCTS;
use ecom_platform::{outbox, Event};

/// Resource name in detail types (`ProductCreated`, …).
pub const RESOURCE: &str = "Product";

/// `ProductCreated`.
pub fn created(product: &Product) -> anyhow::Result<Event> {
    outbox::created(PRODUCTS, RESOURCE, &product.product_id.to_string(), product)
}

/// `ProductModified`, or `None` when the two images are equal.
pub fn modified(old: &Product, new: &Product) -> anyhow::Result<Option<Event>> {
    outbox::modified(PRODUCTS, RESOURCE, &new.product_id.to_string(), old, new)
}

/// `ProductDeleted`.
pub fn deleted(old: &Product) -> anyhow::Result<Event> {
    outbox::deleted(PRODUCTS, RESOURCE, &old.product_id.to_string(), old)
}
