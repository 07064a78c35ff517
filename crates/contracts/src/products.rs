//! What the catalogue emits: the product's life, as row images.

use crate::{contract, sources, Modified};
use ecom_model::Product;

contract!(
    /// `ProductCreated`: the product as stored.
    ProductCreated = Product, sources::PRODUCTS, "ProductCreated"
);
contract!(
    /// `ProductModified`: `{old, new, changed}`.
    ProductModified = Modified<Product>, sources::PRODUCTS, "ProductModified"
);
contract!(
    /// `ProductDeleted`: the product as it was.
    ProductDeleted = Product, sources::PRODUCTS, "ProductDeleted"
);
