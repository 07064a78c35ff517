//! Orders and the rules that shape them: what a creation request must hold,
//! how the total is computed, how packaging and delivery move the status.

use ecom_model::{Address, Money, ProductLine, Quantity, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// The order and its status are part of the contract of orders' events
/// (their whole image is the detail of `OrderCreated` and `OrderModified`),
/// so they are defined in `ecom-contracts`; their rules are here, in
/// [`OrderLife`].
pub use ecom_contracts::orders::{Order, OrderStatus};

/// When an order reached one of its statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusChange {
    /// The status reached.
    pub status: OrderStatus,
    /// When.
    pub at: Timestamp,
}

/// Σ price × quantity + delivery price; `None` when it overflows.
pub fn total(products: &[ProductLine], delivery_price: Money) -> Option<Money> {
    products.iter().try_fold(delivery_price, |sum, line| {
        line.price
            .checked_mul(line.quantity.get())
            .and_then(|amount| sum.checked_add(amount))
    })
}

/// Most product lines an order may have. Keeps every event about an order
/// (an `OrderModified` carries the order twice) far below the 1 MB a NATS
/// message may hold by default, and packaging lists a person can work through.
pub const MAX_LINES: usize = 500;

/// What a caller asks for, checked: at least one product line, an address,
/// a delivery price and a payment token.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// Lines, reduced to `productId, name, package, price, quantity`.
    pub products: Vec<ProductLine>,
    /// Delivery address.
    pub address: Address,
    /// Delivery fee the shopper was shown.
    pub delivery_price: Money,
    /// Pre-authorisation token.
    pub payment_token: String,
}

impl OrderRequest {
    /// Checks every field of `value`, collecting one message per problem
    /// (each names its field) rather than stopping at the first.
    pub fn parse(value: &Value) -> Result<OrderRequest, Vec<String>> {
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec!["order: must be a JSON object".to_owned()]);
        };
        let products = match object.get("products") {
            None | Some(Value::Null) => {
                errors.push("products: missing field".to_owned());
                None
            }
            Some(Value::Array(items)) if items.is_empty() => {
                errors.push("products: must hold at least one product".to_owned());
                None
            }
            Some(Value::Array(items)) if items.len() > MAX_LINES => {
                errors.push(format!(
                    "products: at most {MAX_LINES} lines per order, got {}",
                    items.len()
                ));
                None
            }
            Some(Value::Array(items)) => {
                let lines: Vec<Option<ProductLine>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| field(item, &format!("products[{i}]"), &mut errors))
                    .collect();
                lines
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .and_then(|lines| merge_lines(lines, &mut errors))
            }
            Some(_) => {
                errors.push("products: must be a list of products".to_owned());
                None
            }
        };
        let address: Option<Address> = required(object, "address", &mut errors);
        if let Some(address) = &address {
            errors.extend(
                address
                    .problems()
                    .into_iter()
                    .map(|problem| format!("address.{problem}")),
            );
        }
        let delivery_price = required(object, "deliveryPrice", &mut errors);
        let payment_token: Option<String> = required(object, "paymentToken", &mut errors);
        if payment_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            errors.push("paymentToken: must not be empty".to_owned());
        }
        match (products, address, delivery_price, payment_token) {
            (Some(products), Some(address), Some(delivery_price), Some(payment_token))
                if errors.is_empty() =>
            {
                let request = OrderRequest {
                    products,
                    address,
                    delivery_price,
                    payment_token,
                };
                if request.total().is_none() {
                    return Err(vec!["products: the total is too large".to_owned()]);
                }
                Ok(request)
            }
            _ => Err(errors),
        }
    }

    /// Σ price × quantity + delivery price (checked when parsing).
    pub fn total(&self) -> Option<Money> {
        total(&self.products, self.delivery_price)
    }
}

/// The lines with those of the same product merged into the first
/// (quantities summed), so that every later step — total, packaging,
/// capture — sees one line per product. Lines of one product that disagree
/// on name, package or price are refused (which would be charged?), as is a
/// sum of quantities that overflows.
fn merge_lines(lines: Vec<ProductLine>, errors: &mut Vec<String>) -> Option<Vec<ProductLine>> {
    let mut merged: Vec<ProductLine> = Vec::with_capacity(lines.len());
    // Product id → (index in `merged`, index of its first line in the request).
    let mut first: HashMap<Uuid, (usize, usize)> = HashMap::new();
    let mut ok = true;
    for (i, line) in lines.into_iter().enumerate() {
        let Some(&(at, j)) = first.get(&line.product_id) else {
            first.insert(line.product_id, (merged.len(), i));
            merged.push(line);
            continue;
        };
        let kept = &mut merged[at];
        if kept.name != line.name || kept.package != line.package || kept.price != line.price {
            errors.push(format!(
                "products[{i}]: the same product as products[{j}] with another name, package or price"
            ));
            ok = false;
            continue;
        }
        match kept
            .quantity
            .get()
            .checked_add(line.quantity.get())
            .and_then(|q| Quantity::try_from(q).ok())
        {
            Some(quantity) => kept.quantity = quantity,
            None => {
                errors.push(format!(
                    "products[{i}].quantity: added to products[{j}], too large"
                ));
                ok = false;
            }
        }
    }
    ok.then_some(merged)
}

fn required<T: DeserializeOwned>(
    object: &serde_json::Map<String, Value>,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    match object.get(name) {
        None | Some(Value::Null) => {
            errors.push(format!("{name}: missing field"));
            None
        }
        Some(value) => field(value, name, errors),
    }
}

/// Parses one field, recording a message naming its path when it is wrong.
fn field<T: DeserializeOwned>(value: &Value, name: &str, errors: &mut Vec<String>) -> Option<T> {
    // Plainly first: tracking the path costs every field; only a field
    // that fails is read again with it, for the message.
    if let Ok(v) = T::deserialize(value) {
        return Some(v);
    }
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let path = err.path().to_string();
            let at = if path == "." || path.is_empty() {
                name.to_owned()
            } else {
                format!("{name}.{path}")
            };
            errors.push(format!("{at}: {}", err.into_inner()));
            None
        }
    }
}

/// A line the warehouse packed (`PackageCreated`): which product and how many.
pub use ecom_contracts::warehouse::PackedLine;

/// How an order changes: the rules of orders over the contract's
/// [`Order`] (a trait because the type is defined in `ecom-contracts`).
pub trait OrderLife: Sized {
    /// The order after the warehouse packed `packed`: the lines become the
    /// packed products and quantities (lines not packed are dropped; the
    /// catalogue details stay those of the order), the total is recomputed
    /// with the agreed delivery price, and the status moves to PACKAGED.
    /// A PAYMENT_FAILED order stays as it is. `None` when the new total
    /// overflows.
    fn packaged(&self, packed: &[PackedLine], now: Timestamp) -> Option<Order>;

    /// The order after its shopper (or staff) cancelled it: CANCELLED, from
    /// NEW only; `None` from any other status.
    fn cancelled(&self, now: Timestamp) -> Option<Order>;

    /// The order once its delivery started with `tracking_id`; unchanged
    /// when it already has one (a redelivered or replayed event).
    fn tracked(&self, tracking_id: &str, now: Timestamp) -> Order;

    /// The order after `amount` more was refunded; `None` when the sum
    /// overflows.
    fn refund(&self, amount: Money, now: Timestamp) -> Option<Order>;

    /// What is known of the history of an order stored before histories
    /// were kept: NEW when it was created and, if it moved since, its
    /// status when it last changed.
    fn assumed_history(&self) -> Vec<StatusChange>;

    /// The order after an event saying `status` (never moving back).
    fn with_status(&self, status: OrderStatus, now: Timestamp) -> Order;
}

impl OrderLife for Order {
    fn packaged(&self, packed: &[PackedLine], now: Timestamp) -> Option<Order> {
        if self.status.is_terminal() {
            return Some(self.clone());
        }
        let mut quantities: HashMap<Uuid, i64> = HashMap::new();
        for line in packed {
            *quantities.entry(line.product_id).or_default() += line.quantity;
        }
        let products: Vec<ProductLine> = self
            .products
            .iter()
            .filter_map(|line| {
                let quantity = Quantity::try_from(*quantities.get(&line.product_id)?).ok()?;
                Some(ProductLine {
                    quantity,
                    ..line.clone()
                })
            })
            .collect();
        let total = total(&products, self.delivery_price)?;
        Some(Order {
            products,
            total,
            status: self.status.advance(OrderStatus::Packaged),
            modified_date: now,
            ..self.clone()
        })
    }

    fn cancelled(&self, now: Timestamp) -> Option<Order> {
        (self.status == OrderStatus::New).then(|| Order {
            status: OrderStatus::Cancelled,
            modified_date: now,
            ..self.clone()
        })
    }

    fn tracked(&self, tracking_id: &str, now: Timestamp) -> Order {
        if self.tracking_id.is_some() {
            return self.clone();
        }
        Order {
            tracking_id: Some(tracking_id.to_owned()),
            modified_date: now,
            ..self.clone()
        }
    }

    fn refund(&self, amount: Money, now: Timestamp) -> Option<Order> {
        Some(Order {
            refunded: self.refunded.checked_add(amount)?,
            modified_date: now,
            ..self.clone()
        })
    }

    fn assumed_history(&self) -> Vec<StatusChange> {
        let mut history = vec![StatusChange {
            status: OrderStatus::New,
            at: self.created_date,
        }];
        if self.status != OrderStatus::New {
            history.push(StatusChange {
                status: self.status,
                at: self.modified_date,
            });
        }
        history
    }

    fn with_status(&self, status: OrderStatus, now: Timestamp) -> Order {
        let status = self.status.advance(status);
        Order {
            status,
            modified_date: if status == self.status {
                self.modified_date
            } else {
                now
            },
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn product(price: i64, quantity: Option<i64>) -> Value {
        let mut p = json!({
            "productId": Uuid::new_v4().to_string(),
            "name": "Shoe",
            "package": {"width": 1, "length": 1, "height": 1, "weight": 1},
            "price": price,
            "category": "shoes",
            "tags": ["a"],
        });
        if let Some(q) = quantity {
            p["quantity"] = json!(q);
        }
        p
    }

    fn request(products: Value) -> Value {
        json!({
            "products": products,
            "address": {"name": "A", "streetAddress": "S 1", "city": "C", "country": "SE", "phoneNumber": "1"},
            "deliveryPrice": 500,
            "paymentToken": "tok",
        })
    }

    #[test]
    fn total_is_price_times_quantity_plus_delivery() {
        let req = OrderRequest::parse(&request(json!([product(100, Some(3)), product(50, None)]))).unwrap();
        assert_eq!(req.total().map(Money::cents), Some(300 + 50 + 500));
        assert_eq!(req.products[1].quantity, Quantity::ONE);
    }

    #[test]
    fn malformed_requests_name_each_field_at_fault() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"products": [product(1, None)], "deliveryPrice": 0, "paymentToken": "t"}),
                "address",
            ),
            (request(json!([product(1, Some(0))])), "products[0].quantity"),
            (request(json!([product(1, Some(-2))])), "products[0].quantity"),
            (request(json!([])), "products"),
            (request(json!([product(-1, None)])), "products[0].price"),
            (
                {
                    let mut r = request(json!([product(1, None)]));
                    r["address"]["country"] = json!("SWE");
                    r
                },
                "address.country",
            ),
            (
                {
                    let mut r = request(json!([product(1, None)]));
                    r["deliveryPrice"] = json!(-5);
                    r
                },
                "deliveryPrice",
            ),
            (
                {
                    let mut r = request(json!([product(1, None)]));
                    r.as_object_mut().unwrap().remove("paymentToken");
                    r
                },
                "paymentToken",
            ),
            (request(json!([product(i64::MAX / 2, Some(3))])), "products"),
        ];
        for (body, field) in cases {
            let errors = OrderRequest::parse(&body).err().unwrap_or_default();
            assert!(
                errors.iter().any(|e| e.starts_with(&format!("{field}:"))),
                "expected an error naming {field}, got {errors:?}"
            );
        }
    }

    #[test]
    fn statuses_never_move_back() {
        use OrderStatus::*;
        assert_eq!(New.advance(Packaged), Packaged);
        assert_eq!(Packaged.advance(Fulfilled), Fulfilled);
        assert_eq!(New.advance(DeliveryFailed), DeliveryFailed);
        assert_eq!(Fulfilled.advance(Packaged), Fulfilled);
        assert_eq!(PackagingFailed.advance(Packaged), PackagingFailed);
    }

    #[test]
    fn payment_failed_ends_an_order_from_any_status_and_nothing_moves_it() {
        use OrderStatus::*;
        let all = [
            New,
            Packaged,
            PackagingFailed,
            Fulfilled,
            DeliveryFailed,
            PaymentFailed,
        ];
        for from in [New, Packaged, PackagingFailed, DeliveryFailed] {
            assert_eq!(from.advance(PaymentFailed), PaymentFailed, "{from:?}");
        }
        for to in all {
            assert_eq!(PaymentFailed.advance(to), PaymentFailed, "{to:?}");
        }
    }

    fn order_of(req: &OrderRequest, status: OrderStatus) -> Order {
        let now = Timestamp::now();
        Order {
            order_id: Uuid::new_v4(),
            user_id: "u".into(),
            created_date: now,
            modified_date: now,
            status,
            total: req.total().unwrap(),
            products: req.products.clone(),
            address: req.address.clone(),
            delivery_price: req.delivery_price,
            payment_token: req.payment_token.clone(),
            tracking_id: None,
            refunded: Money::ZERO,
        }
    }

    #[test]
    fn only_a_new_order_can_be_cancelled_and_nothing_moves_it_after() {
        use OrderStatus::*;
        let req = OrderRequest::parse(&request(json!([product(100, Some(3))]))).unwrap();
        let now = Timestamp::now();
        let cancelled = order_of(&req, New).cancelled(now).unwrap();
        assert_eq!(cancelled.status, Cancelled);
        for from in [
            Packaged,
            PackagingFailed,
            Fulfilled,
            DeliveryFailed,
            PaymentFailed,
            Cancelled,
        ] {
            assert_eq!(order_of(&req, from).cancelled(now), None, "{from:?}");
        }
        for to in [
            New,
            Packaged,
            PackagingFailed,
            Fulfilled,
            DeliveryFailed,
            PaymentFailed,
        ] {
            assert_eq!(Cancelled.advance(to), Cancelled, "{to:?}");
        }
        assert_eq!(PaymentFailed.advance(Cancelled), PaymentFailed);
        let packed = [PackedLine {
            product_id: cancelled.products[0].product_id,
            quantity: 1,
        }];
        assert_eq!(cancelled.packaged(&packed, now), Some(cancelled.clone()));
    }

    #[test]
    fn statuses_read_as_their_stored_text() {
        for status in [
            OrderStatus::New,
            OrderStatus::Packaged,
            OrderStatus::PackagingFailed,
            OrderStatus::Fulfilled,
            OrderStatus::DeliveryFailed,
            OrderStatus::PaymentFailed,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str()),
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_tracking_id_is_set_once_and_refunds_add_up() {
        let req = OrderRequest::parse(&request(json!([product(100, Some(3))]))).unwrap();
        let now = Timestamp::now();
        let order = order_of(&req, OrderStatus::Packaged);
        let tracked = order.tracked("ABCDEFGHJKMN", now);
        assert_eq!(tracked.tracking_id.as_deref(), Some("ABCDEFGHJKMN"));
        assert_eq!(tracked.tracked("OTHER", now), tracked);
        let refunded = tracked
            .refund(Money::try_from(100).unwrap(), now)
            .and_then(|o| o.refund(Money::try_from(50).unwrap(), now))
            .unwrap();
        assert_eq!(refunded.refunded.cents(), 150);
    }

    #[test]
    fn an_order_from_before_refunds_and_tracking_reads_with_none() {
        let req = OrderRequest::parse(&request(json!([product(100, Some(3))]))).unwrap();
        let mut stored = serde_json::to_value(order_of(&req, OrderStatus::New)).unwrap();
        assert!(stored.get("trackingId").is_none(), "{stored}");
        stored.as_object_mut().unwrap().remove("refunded");
        let order: Order = serde_json::from_value(stored).unwrap();
        assert_eq!((order.refunded, order.tracking_id), (Money::ZERO, None));
    }

    #[test]
    fn a_package_never_changes_a_payment_failed_order() {
        let req = OrderRequest::parse(&request(json!([product(100, Some(3))]))).unwrap();
        let order = order_of(&req, OrderStatus::PaymentFailed);
        let packed = [PackedLine {
            product_id: order.products[0].product_id,
            quantity: 1,
        }];
        assert_eq!(order.packaged(&packed, Timestamp::now()), Some(order.clone()));
    }

    #[test]
    fn lines_of_one_product_are_merged_before_the_total() {
        let shoe = product(100, Some(1));
        let mut twice = shoe.clone();
        twice["quantity"] = json!(2);
        let hat = product(30, None);
        let req = OrderRequest::parse(&request(json!([shoe, hat, twice]))).unwrap();
        assert_eq!(req.products.len(), 2);
        assert_eq!(req.products[0].quantity.get(), 3);
        assert_eq!(req.products[1].price.cents(), 30);
        assert_eq!(req.total().map(Money::cents), Some(3 * 100 + 30 + 500));

        // Packing the merged line keeps its whole quantity, once.
        let order = order_of(&req, OrderStatus::New);
        let packed = [PackedLine {
            product_id: order.products[0].product_id,
            quantity: 3,
        }];
        let after = order.packaged(&packed, Timestamp::now()).unwrap();
        assert_eq!(after.products.len(), 1);
        assert_eq!(after.products[0].quantity.get(), 3);
        assert_eq!(after.total.cents(), 300 + 500);
    }

    #[test]
    fn lines_of_one_product_that_disagree_are_refused_naming_both() {
        let shoe = product(100, Some(1));
        let cheaper = {
            let mut p = shoe.clone();
            p["price"] = json!(1);
            p
        };
        let renamed = {
            let mut p = shoe.clone();
            p["name"] = json!("Boot");
            p
        };
        let smaller = {
            let mut p = shoe.clone();
            p["package"]["width"] = json!(0);
            p
        };
        for other in [cheaper, renamed, smaller] {
            let errors = OrderRequest::parse(&request(json!([shoe, product(5, None), other]))).err();
            assert_eq!(
                errors,
                Some(vec![
                    "products[2]: the same product as products[0] with another name, package or price"
                        .to_owned()
                ])
            );
        }
        let mut huge = shoe.clone();
        huge["quantity"] = json!(i64::MAX);
        let errors = OrderRequest::parse(&request(json!([shoe, huge])))
            .err()
            .unwrap_or_default();
        assert_eq!(errors, ["products[1].quantity: added to products[0], too large"]);
    }

    #[test]
    fn an_order_address_must_be_complete_and_sane() {
        let mut r = request(json!([product(1, None)]));
        r["address"]["name"] = json!(" ");
        r["address"]["country"] = json!("XX");
        r["address"]["city"] = json!("a\u{0}b");
        let errors = OrderRequest::parse(&r).err().unwrap_or_default();
        assert_eq!(
            errors,
            [
                "address.name: must not be empty",
                "address.city: must not contain control characters",
                "address.country: 'XX' is not an ISO 3166-1 country code",
            ]
        );
    }

    #[test]
    fn packaging_keeps_packed_lines_and_recomputes_the_total() {
        let req = OrderRequest::parse(&request(json!([product(100, Some(3)), product(50, None)]))).unwrap();
        let now = Timestamp::now();
        let order = Order {
            order_id: Uuid::new_v4(),
            user_id: "u".into(),
            created_date: now,
            modified_date: now,
            status: OrderStatus::New,
            total: req.total().unwrap(),
            products: req.products.clone(),
            address: req.address.clone(),
            delivery_price: req.delivery_price,
            payment_token: req.payment_token.clone(),
            tracking_id: None,
            refunded: Money::ZERO,
        };
        let packed = [PackedLine {
            product_id: order.products[0].product_id,
            quantity: 2,
        }];
        let after = order.packaged(&packed, now).unwrap();
        assert_eq!(after.status, OrderStatus::Packaged);
        assert_eq!(after.products.len(), 1);
        assert_eq!(after.products[0].quantity.get(), 2);
        assert_eq!(after.products[0].name, "Shoe");
        assert_eq!(after.total.cents(), 200 + 500);
    }
}
