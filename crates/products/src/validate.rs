//! `POST /backend/validate`: does what a caller believes about some
//! products (name, package, price) match the catalogue?
//!
//! One reason per wrong product, in the order of the request, joined with
//! ". "; beside them the catalogue's version of each wrong product, or the
//! caller's own when the catalogue does not know it. Fields are compared in
//! the order name, package, price and the first difference is reported
//! (the original did the same, one reason per product).

use crate::domain::parse_value;
use crate::store::{self, Facts};
use ecom_contracts::backend::{ProductsAnswer, ProductsCheck};
use ecom_model::{Money, Package, Product};
use ecom_runtime::ApiError;
use ecom_storage::Db;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Display;
use uuid::Uuid;

/// What a caller claims about one product of a [`ProductsCheck`] (each is
/// kept as raw JSON beside it, so that an unknown one is answered exactly
/// as it was sent). Other fields (quantity, category, …) are accepted and
/// ignored.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Claimed {
    /// Which product.
    pub product_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its box.
    pub package: Package,
    /// Its unit price.
    pub price: Money,
}

/// The message when nothing is wrong.
pub const ALL_VALID: &str = "All products are valid";

/// Checks the request against the catalogue in `db`. A product that is not
/// shaped like a product is a 400 naming the field.
pub async fn validate(db: &Db, req: ProductsCheck) -> Result<ProductsAnswer, ApiError> {
    let claimed = req
        .products
        .iter()
        .enumerate()
        .map(|(i, raw)| parse_value::<Claimed>(raw, &format!("products[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let mut ids: Vec<Uuid> = claimed.iter().map(|c| c.product_id).collect();
    ids.sort_unstable();
    ids.dedup();
    // Compare on the few columns that matter; read whole products only
    // for the wrong ones, which are rare (they go back to the caller).
    let facts = store::facts(db, &ids).await?;
    let wrong: Vec<Uuid> = claimed
        .iter()
        .filter(|c| facts.get(&c.product_id).is_some_and(|f| mismatch(c, f).is_some()))
        .map(|c| c.product_id)
        .collect();
    let full = if wrong.is_empty() {
        HashMap::new()
    } else {
        store::get_many(db, &wrong).await?
    };
    Ok(compare(&claimed, &req.products, &facts, &full))
}

/// The pure part of [`validate`]: `raw[i]` is what `claimed[i]` was parsed
/// from; `full` holds the whole catalogue products of the wrong claims.
pub fn compare(
    claimed: &[Claimed],
    raw: &[Value],
    facts: &HashMap<Uuid, Facts>,
    full: &HashMap<Uuid, Product>,
) -> ProductsAnswer {
    let mut reasons = Vec::new();
    let mut products = Vec::new();
    for (claim, raw) in claimed.iter().zip(raw) {
        match facts.get(&claim.product_id) {
            None => {
                reasons.push(format!("Product '{}' not found", claim.product_id));
                products.push(raw.clone());
            }
            Some(known) => {
                if let Some(reason) = mismatch(claim, known) {
                    reasons.push(reason);
                    // Deleted between the two reads: say what was compared.
                    let catalogue = match full.get(&claim.product_id) {
                        Some(product) => serde_json::to_value(product),
                        None => serde_json::to_value(Claimed {
                            product_id: claim.product_id,
                            name: known.name.clone(),
                            package: known.package,
                            price: known.price,
                        }),
                    };
                    products.push(catalogue.unwrap_or(Value::Null));
                }
            }
        }
    }
    if reasons.is_empty() {
        ProductsAnswer {
            message: ALL_VALID.to_owned(),
            products: Vec::new(),
        }
    } else {
        ProductsAnswer {
            message: reasons.join(". "),
            products,
        }
    }
}

/// The first difference between a claim and the catalogue, as a reason.
pub fn mismatch(claim: &Claimed, known: &Facts) -> Option<String> {
    let reason = |field: &str, want: &dyn Display, got: &dyn Display| {
        format!(
            "Invalid value for '{field}': want '{want}', got '{got}' in product '{}'",
            claim.product_id
        )
    };
    if claim.name != known.name {
        return Some(reason("name", &known.name, &claim.name));
    }
    if claim.package != known.package {
        return Some(reason(
            "package",
            &package_text(&known.package),
            &package_text(&claim.package),
        ));
    }
    if claim.price != known.price {
        return Some(reason("price", &known.price, &claim.price));
    }
    None
}

fn package_text(p: &Package) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "f380305b-99fe-45ba-b1ab-ba6349d141a2";

    fn known() -> Product {
        serde_json::from_value(json!({
            "productId": ID, "name": "Shoe", "price": 500, "category": "shoes",
            "package": {"width": 1, "length": 2, "height": 3, "weight": 4}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(claim: Value) -> ProductsAnswer {
        let parsed: Claimed = serde_json::from_value(claim.clone()).unwrap_or_else(|e| panic!("{e}"));
        let full = HashMap::from([(known().product_id, known())]);
        let facts = HashMap::from([(known().product_id, Facts::from(&known()))]);
        compare(&[parsed], &[claim], &facts, &full)
    }

    #[test]
    fn each_field_difference_gives_its_reason() {
        let good = json!({"productId": ID, "name": "Shoe", "price": 500, "quantity": 3,
                          "package": {"width": 1, "length": 2, "height": 3, "weight": 4}});
        assert_eq!(check(good.clone()).message, ALL_VALID);
        assert_eq!(check(good.clone()).products, Vec::<Value>::new());
        let cases = [
            ("price", json!(400), format!("Invalid value for 'price': want '500', got '400' in product '{ID}'")),
            ("name", json!("Boot"), format!("Invalid value for 'name': want 'Shoe', got 'Boot' in product '{ID}'")),
            (
                "package",
                json!({"width": 9, "length": 2, "height": 3, "weight": 4}),
                format!(
                    "Invalid value for 'package': want '{{\"width\":1,\"length\":2,\"height\":3,\"weight\":4}}', \
                     got '{{\"width\":9,\"length\":2,\"height\":3,\"weight\":4}}' in product '{ID}'"
                ),
            ),
        ];
        for (field, value, reason) in cases {
            let mut claim = good.clone();
            claim[field] = value;
            let answer = check(claim);
            assert_eq!(answer.message, reason);
            let products = answer.products;
            assert_eq!(products.len(), 1);
            assert_eq!(products[0]["price"], 500, "the catalogue's version is returned");
            assert_eq!(products[0]["category"], "shoes");
        }
    }
}
