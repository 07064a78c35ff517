//! The payloads serialise byte for byte as the services wrote them by hand
//! before this crate (the `json!` each producer used is copied here), and
//! the catalogue lists every contract with a schema its payloads pass.

use crate::delivery::{DeliveryCompleted, DeliveryFailed, DeliveryOutcome, DeliveryStarted};
use crate::orders::{Order, OrderCancelled, OrderCreated, OrderDeleted, OrderModified, OrderStatus};
use crate::payment::{PaymentFailed, PaymentProcessed, PaymentRefunded};
use crate::products::{ProductCreated, ProductDeleted, ProductModified};
use crate::users::UserCreated;
use crate::warehouse::{PackageCreated, PackagingFailed, PackedLine, StockChanged};
use crate::{asyncapi, check_detail, Contract, Group, Modified, OrderRef, Service};
use ecom_model::{Address, Money, Product, ProductLine, Timestamp};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// The text the bus carries for `detail`: the envelope holds a
/// `serde_json::Value`, so this is what producers put on the wire.
fn wire(detail: &impl Serialize) -> String {
    serde_json::to_value(detail)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn address() -> Address {
    serde_json::from_value(json!({
        "name": "Ada", "streetAddress": "1 Main St", "city": "Paris",
        "country": "FR", "phoneNumber": "+33 1 23 45 67 89"
    }))
    .unwrap()
}

fn order() -> Order {
    let at = Timestamp::parse("2026-11-25T21:22:57.568149Z").unwrap();
    Order {
        order_id: id(1),
        user_id: "u-1".into(),
        created_date: at,
        modified_date: at,
        status: OrderStatus::New,
        products: vec![serde_json::from_value::<ProductLine>(json!({
            "productId": id(2), "name": "Mug", "price": 1200, "quantity": 2,
            "package": {"width": 1, "length": 2, "height": 3, "weight": 4}
        }))
        .unwrap()],
        address: address(),
        delivery_price: Money::try_from(500).unwrap(),
        payment_token: "tok".into(),
        total: Money::try_from(2900).unwrap(),
        tracking_id: None,
        refunded: Money::ZERO,
    }
}

#[test]
fn small_payloads_are_the_json_the_services_wrote_by_hand() {
    let (order_id, amount) = (id(1), Money::try_from(2900).unwrap());
    let address = address();
    let cases: Vec<(String, Value)> = vec![
        (
            wire(&DeliveryStarted {
                order_id,
                tracking_id: "ABCDEFGHIJKL".into(),
            }),
            json!({ "orderId": order_id, "trackingId": "ABCDEFGHIJKL" }),
        ),
        (
            wire(&DeliveryOutcome {
                order_id,
                address: address.clone(),
            }),
            json!({ "orderId": order_id, "address": address }),
        ),
        (wire(&OrderRef { order_id }), json!({ "orderId": order_id })),
        (
            wire(&PaymentProcessed { order_id, amount }),
            json!({ "orderId": order_id, "amount": amount }),
        ),
        (
            wire(&PaymentFailed {
                order_id,
                reason: "no".into(),
            }),
            json!({ "orderId": order_id, "reason": "no" }),
        ),
        (
            wire(&PaymentRefunded {
                order_id,
                amount,
                refund_id: "r-1".into(),
            }),
            json!({ "orderId": order_id, "amount": amount, "refundId": "r-1" }),
        ),
        (
            wire(&PackageCreated {
                order_id,
                products: vec![PackedLine {
                    product_id: id(2),
                    quantity: 3,
                }],
            }),
            json!({ "orderId": order_id, "products": [{"productId": id(2), "quantity": 3}] }),
        ),
        (
            wire(&StockChanged {
                product_id: id(2),
                on_hand: 5,
                reserved: 2,
                available: 3,
            }),
            json!({ "productId": id(2), "onHand": 5, "reserved": 2, "available": 3 }),
        ),
    ];
    for (typed, by_hand) in cases {
        assert_eq!(typed, by_hand.to_string());
    }
}

/// The bytes a backend call puts on the wire: bodies are written straight
/// from their struct (`serde_json::to_vec`), not through a `Value`, so the
/// order of the fields counts.
fn body(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[test]
fn backend_bodies_are_the_bytes_callers_and_callees_wrote_by_hand() {
    use crate::backend::{
        Ack, PaymentClaim, PaymentClaimAnswer, PaymentRelease, Reservation, ReservationAnswer, StockLine,
    };

    // What orders wrote: structs of its own for the claim and the
    // reservation (fields in this order), `json!` for the rest.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PaymentCheck<'a> {
        payment_token: &'a str,
        total: Money,
        order_id: Uuid,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct StockRequest {
        order_id: Uuid,
        products: Vec<OldStockLine>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct OldStockLine {
        product_id: Uuid,
        quantity: i64,
    }

    let (order_id, total) = (id(1), Money::try_from(2900).unwrap());
    let claim = PaymentClaim {
        payment_token: "tok".into(),
        total,
        order_id,
    };
    let reservation = Reservation {
        order_id,
        products: vec![
            StockLine {
                product_id: id(2),
                quantity: 3,
            },
            StockLine {
                product_id: id(3),
                quantity: 1,
            },
        ],
    };
    let cases: Vec<(&str, String, String)> = vec![
        // orders → payment and warehouse
        (
            "payment claim",
            body(&claim),
            body(&PaymentCheck {
                payment_token: "tok",
                total,
                order_id,
            }),
        ),
        (
            "payment release",
            body(&PaymentRelease {
                order_id,
                payment_token: "tok".into(),
            }),
            json!({ "paymentToken": "tok", "orderId": order_id }).to_string(),
        ),
        (
            "reservation",
            body(&reservation),
            body(&StockRequest {
                order_id,
                products: vec![
                    OldStockLine {
                        product_id: id(2),
                        quantity: 3,
                    },
                    OldStockLine {
                        product_id: id(3),
                        quantity: 1,
                    },
                ],
            }),
        ),
        (
            "stock release and cancellation",
            body(&OrderRef { order_id }),
            json!({ "orderId": order_id }).to_string(),
        ),
        // payment's and the warehouse's answers, all written with `json!`
        (
            "claim held",
            body(&PaymentClaimAnswer {
                ok: true,
                reason: None,
            }),
            json!({ "ok": true }).to_string(),
        ),
        (
            "claim not covered",
            body(&PaymentClaimAnswer {
                ok: false,
                reason: None,
            }),
            json!({ "ok": false }).to_string(),
        ),
        (
            "token taken",
            body(&PaymentClaimAnswer {
                ok: false,
                reason: Some("Payment token already used".into()),
            }),
            json!({ "ok": false, "reason": "Payment token already used" }).to_string(),
        ),
        (
            "released, or not",
            body(&[Ack { ok: true }, Ack { ok: false }]),
            json!([{ "ok": true }, { "ok": false }]).to_string(),
        ),
        (
            "stock held",
            body(&ReservationAnswer {
                ok: true,
                out_of_stock: vec![],
            }),
            json!({ "ok": true }).to_string(),
        ),
        (
            "out of stock",
            body(&ReservationAnswer {
                ok: false,
                out_of_stock: vec![id(2), id(3)],
            }),
            json!({ "ok": false, "outOfStock": [id(2), id(3)] }).to_string(),
        ),
    ];
    for (what, typed, by_hand) in cases {
        assert_eq!(typed, by_hand, "{what}");
    }

    // And each side reads what the other wrote before: the claim as
    // payment's old `ValidateRequest` did, the answers as orders' old
    // `PaymentAnswer` and `StockAnswer` did (a missing `reason` or
    // `outOfStock` is empty).
    assert_eq!(
        serde_json::from_value::<PaymentClaim>(
            json!({"paymentToken": "tok", "total": 2900, "orderId": order_id})
        )
        .unwrap(),
        claim
    );
    assert!(serde_json::from_value::<PaymentClaim>(
        json!({"paymentToken": "tok", "total": -1, "orderId": order_id})
    )
    .is_err());
    assert_eq!(
        serde_json::from_value::<PaymentClaimAnswer>(json!({"ok": false})).unwrap(),
        PaymentClaimAnswer {
            ok: false,
            reason: None
        }
    );
    assert_eq!(
        serde_json::from_value::<ReservationAnswer>(json!({"ok": true})).unwrap(),
        ReservationAnswer {
            ok: true,
            out_of_stock: vec![]
        }
    );
    assert_eq!(
        serde_json::from_str::<Reservation>(&body(&reservation)).unwrap(),
        reservation
    );
}

fn lines() -> Vec<ProductLine> {
    serde_json::from_value(json!([
        {"productId": id(2), "name": "Mug", "price": 1200, "quantity": 2,
         "package": {"width": 1, "length": 2, "height": 3, "weight": 4}},
        {"productId": id(3), "name": "Pot", "price": 900,
         "package": {"width": 5, "length": 6, "height": 7, "weight": 8}}
    ]))
    .unwrap()
}

#[test]
fn products_and_pricing_checks_are_the_bytes_orders_and_the_gateway_wrote() {
    use crate::backend::{Parcel, PricingAnswer, PricingCheck, ProductsAnswer, ProductsCheck};
    use ecom_model::Quantity;

    // What orders wrote (its own structs, borrowing the order's lines).
    #[derive(Serialize)]
    struct OldProductsCheck<'a> {
        products: &'a [ProductLine],
    }
    #[derive(Serialize)]
    struct OldPricingCheck<'a> {
        products: &'a [ProductLine],
        address: &'a Address,
    }
    // What products answered (`ValidateResponse`).
    #[derive(Serialize)]
    struct ValidateResponse {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        products: Option<Vec<Value>>,
    }

    let (lines, address) = (lines(), address());
    let products_check = body(&ProductsCheck { products: &lines });
    assert_eq!(products_check, body(&OldProductsCheck { products: &lines }));
    let pricing_check = body(&PricingCheck {
        products: &lines,
        address: &address,
    });
    assert_eq!(
        pricing_check,
        body(&OldPricingCheck {
            products: &lines,
            address: &address
        })
    );
    // The gateway's `DeliveryPricingInput` had the same two fields in the
    // same order; its lines are the shopper's input as typed.
    let input_line = json!({"productId": "p", "name": "Mug", "package": {"width": 1}, "price": 1});
    assert_eq!(
        body(&PricingCheck {
            products: vec![input_line.clone()],
            address: json!({"country": "FR"}),
        }),
        format!(r#"{{"products":[{input_line}],"address":{{"country":"FR"}}}}"#)
    );

    // The callees read what orders sends: products each line as it was
    // sent, pricing each line's box and quantity and the address.
    let read: ProductsCheck = serde_json::from_str(&products_check).unwrap();
    assert_eq!(
        read.products,
        serde_json::to_value(&lines).unwrap().as_array().unwrap().clone()
    );
    let read: PricingCheck = serde_json::from_str(&pricing_check).unwrap();
    let parcel = |package: Value, quantity: i64| Parcel {
        package: serde_json::from_value(package).unwrap(),
        quantity: Quantity::try_from(quantity).unwrap(),
    };
    assert_eq!(
        read.products,
        [
            parcel(json!({"width": 1, "length": 2, "height": 3, "weight": 4}), 2),
            parcel(json!({"width": 5, "length": 6, "height": 7, "weight": 8}), 1)
        ]
    );
    assert_eq!(read.address, address);

    let wrong = vec![json!({"productId": id(2), "name": "Mug"})];
    for (typed, old) in [
        (
            ProductsAnswer {
                message: "All products are valid".into(),
                products: vec![],
            },
            ValidateResponse {
                message: "All products are valid".into(),
                products: None,
            },
        ),
        (
            ProductsAnswer {
                message: "Product 'x' not found".into(),
                products: wrong.clone(),
            },
            ValidateResponse {
                message: "Product 'x' not found".into(),
                products: Some(wrong.clone()),
            },
        ),
    ] {
        assert_eq!(body(&typed), body(&old));
        assert_eq!(
            serde_json::from_str::<ProductsAnswer>(&body(&old)).unwrap(),
            typed
        );
    }
    // pricing wrote `PricingResponse { pricing }`.
    assert_eq!(
        body(&PricingAnswer { pricing: 1500 }),
        json!({ "pricing": 1500 }).to_string()
    );
}

#[test]
fn the_gateways_backend_bodies_are_the_bytes_it_and_the_callees_wrote() {
    use crate::backend::{Availability, AvailabilityQuery, CancelOrder, CreateOrder, Refund, RefundAnswer};
    use std::collections::BTreeMap;

    let order_id = id(1);
    let cases: Vec<(&str, String, String)> = vec![
        (
            "refund",
            body(&Refund {
                amount: 700,
                order_id,
                refund_id: "r-1".into(),
            }),
            json!({ "orderId": order_id.to_string(), "amount": 700, "refundId": "r-1" }).to_string(),
        ),
        (
            "refunded",
            body(&RefundAnswer {
                ok: true,
                refunded: 900,
            }),
            json!({ "ok": true, "refunded": 900 }).to_string(),
        ),
        (
            "availability asked",
            body(&AvailabilityQuery {
                product_ids: vec![id(3), id(2)],
            }),
            json!({ "productIds": [id(3).to_string(), id(2).to_string()] }).to_string(),
        ),
        (
            "availability",
            body(&Availability {
                available: BTreeMap::from([(id(0xb), 0), (id(0xa0), 4), (id(2), 7)]),
            }),
            json!({ "available": BTreeMap::from([(id(0xb), 0), (id(0xa0), 4), (id(2), 7)]) }).to_string(),
        ),
        (
            "cancellation",
            body(&CancelOrder {
                user_id: Some("u-1".into()),
            }),
            json!({ "userId": "u-1" }).to_string(),
        ),
    ];
    for (what, typed, by_hand) in cases {
        assert_eq!(typed, by_hand, "{what}");
    }

    // createOrder: the gateway's `CreateCall` (this order of fields, no key
    // when the shopper sent none) around the shopper's input.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct CreateCall<'a> {
        user_id: &'a str,
        order: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<&'a str>,
    }
    let order = json!({"products": [], "deliveryPrice": 0, "paymentToken": "tok"});
    for key in [None, Some("k-1")] {
        let typed = CreateOrder {
            user_id: "u-1".into(),
            order: &order,
            idempotency_key: key.map(str::to_owned),
        };
        let old = CreateCall {
            user_id: "u-1",
            order: &order,
            idempotency_key: key,
        };
        assert_eq!(body(&typed), body(&old));
        // Orders reads the order raw, and the key when there is one.
        let read: CreateOrder = serde_json::from_str(&body(&old)).unwrap();
        assert_eq!(
            (read.order, read.idempotency_key.as_deref()),
            (order.clone(), key)
        );
    }

    // And the callees read what they read before.
    let refund: Refund =
        serde_json::from_value(json!({"orderId": order_id, "amount": -5, "refundId": "r"})).unwrap();
    assert_eq!(refund.amount, -5, "payment answers a negative amount itself");
    assert_eq!(
        serde_json::from_value::<CancelOrder>(json!({})).unwrap(),
        CancelOrder { user_id: None }
    );
    assert!(serde_json::from_value::<AvailabilityQuery>(json!({"productIds": ["nope"]})).is_err());
}

#[test]
fn user_created_keeps_its_dates_as_text_with_microseconds() {
    let at = Timestamp::parse("2026-11-25T21:22:57Z").unwrap();
    let user = UserCreated {
        user_id: "u-1".into(),
        email: "a@b.co".into(),
        created_date: at,
        modified_date: at,
    };
    // users wrote `now.to_string()` into each date.
    let by_hand = json!({
        "userId": "u-1", "email": "a@b.co",
        "createdDate": at.to_string(), "modifiedDate": at.to_string()
    });
    assert_eq!(wire(&user), by_hand.to_string());
    assert!(wire(&user).contains("\"2026-11-25T21:22:57.000000Z\""));
}

#[test]
fn an_order_without_tracking_id_has_no_tracking_id_field_and_reads_back() {
    let order = order();
    let text = wire(&order);
    assert_eq!(
        text,
        json!({
            "orderId": id(1), "userId": "u-1",
            "createdDate": "2026-11-25T21:22:57.568149Z", "modifiedDate": "2026-11-25T21:22:57.568149Z",
            "status": "NEW",
            "products": [{"productId": id(2), "name": "Mug", "price": 1200, "quantity": 2,
                          "package": {"width": 1, "length": 2, "height": 3, "weight": 4}}],
            "address": {"name": "Ada", "streetAddress": "1 Main St", "city": "Paris",
                        "country": "FR", "phoneNumber": "+33 1 23 45 67 89"},
            "deliveryPrice": 500, "paymentToken": "tok", "total": 2900, "refunded": 0
        })
        .to_string()
    );
    let tracked = Order {
        tracking_id: Some("T".into()),
        ..order.clone()
    };
    assert!(wire(&tracked).contains("\"trackingId\":\"T\""));
    // An image stored before refunds existed still reads.
    let mut old = serde_json::to_value(&order).unwrap();
    old.as_object_mut().unwrap().remove("refunded");
    assert_eq!(serde_json::from_value::<Order>(old).unwrap(), order);
}

#[test]
fn a_package_without_products_reads_as_empty_as_before() {
    let p: PackageCreated = serde_json::from_value(json!({"orderId": id(1)})).unwrap();
    assert!(p.products.is_empty());
}

#[test]
fn groups_and_services_keep_their_names() {
    assert_eq!(Group::ALL.map(Group::as_str), ["admin", "warehouse", "delivery"]);
    assert_eq!(
        serde_json::to_value(Group::Warehouse).unwrap(),
        json!("warehouse")
    );
    assert_eq!("delivery".parse::<Group>(), Ok(Group::Delivery));
    assert!("Admin".parse::<Group>().is_err());
    assert_eq!(Service::DeliveryPricing.name(), "delivery-pricing");
    assert_eq!(Service::Payment3p.name(), "payment-3p");
    assert_eq!(
        serde_json::to_value(Service::Payment3p).unwrap(),
        json!("payment-3p")
    );
    for service in Service::ALL {
        assert_eq!(service.name().parse::<Service>(), Ok(service));
    }
}

/// Every contract: (source, detail-type). Listing a new one here is what
/// the catalogue test below asks of whoever adds it.
fn every_contract() -> Vec<(&'static str, &'static str)> {
    fn of<E: Contract>() -> (&'static str, &'static str) {
        (E::SOURCE, E::DETAIL_TYPE)
    }
    vec![
        of::<UserCreated>(),
        of::<ProductCreated>(),
        of::<ProductModified>(),
        of::<ProductDeleted>(),
        of::<OrderCreated>(),
        of::<OrderModified>(),
        of::<OrderDeleted>(),
        of::<OrderCancelled>(),
        of::<PackageCreated>(),
        of::<PackagingFailed>(),
        of::<StockChanged>(),
        of::<DeliveryStarted>(),
        of::<DeliveryCompleted>(),
        of::<DeliveryFailed>(),
        of::<PaymentProcessed>(),
        of::<PaymentFailed>(),
        of::<PaymentRefunded>(),
    ]
}

#[test]
fn the_asyncapi_document_lists_every_contract_once_with_its_producer() {
    let doc = asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().unwrap();
    let contracts = every_contract();
    assert_eq!(
        channels.len(),
        contracts.len(),
        "{:?}",
        channels.keys().collect::<Vec<_>>()
    );
    for (source, detail_type) in contracts {
        let channel = &channels[&crate::channel_id(source, detail_type)];
        let message = &channel["messages"][detail_type];
        assert_eq!(message["name"], detail_type);
        assert!(
            message["payload"].is_object(),
            "{detail_type} has no payload schema"
        );
        let producer = message["x-producer"].as_str().unwrap();
        assert_eq!(
            producer.parse::<Service>().ok().and_then(Service::source),
            Some(source),
            "{detail_type} is produced by the service of its source"
        );
        let send = &doc["operations"][format!("{producer}.send.{detail_type}")];
        assert_eq!(send["action"], "send");
    }
    assert_eq!(
        doc["operations"]["payment.receive.OrderCancelled"]["action"],
        "receive"
    );
    assert!(doc["components"]["schemas"]["Order"]["properties"]["orderId"].is_object());
}

#[test]
fn each_schema_accepts_its_payload_and_refuses_a_renamed_or_mistyped_field() {
    let doc = asyncapi();
    let order_json = serde_json::to_value(order()).unwrap();
    let modified = serde_json::to_value(Modified {
        old: order(),
        new: order(),
        changed: vec![],
    })
    .unwrap();
    let product: Product = serde_json::from_value(json!({
        "productId": id(3), "name": "Mug", "price": 1200, "tags": [], "pictures": [],
        "package": {"width": 1, "length": 2, "height": 3, "weight": 4}
    }))
    .unwrap();
    let at = Timestamp::parse("2026-11-25T21:22:57Z").unwrap();
    let samples: Vec<(&str, &str, Value)> = vec![
        ("ecommerce.orders", "OrderCreated", order_json.clone()),
        ("ecommerce.orders", "OrderDeleted", order_json.clone()),
        ("ecommerce.orders", "OrderModified", modified),
        ("ecommerce.orders", "OrderCancelled", json!({"orderId": id(1)})),
        (
            "ecommerce.products",
            "ProductCreated",
            serde_json::to_value(&product).unwrap(),
        ),
        (
            "ecommerce.users",
            "UserCreated",
            serde_json::to_value(UserCreated {
                user_id: "u".into(),
                email: "e".into(),
                created_date: at,
                modified_date: at,
            })
            .unwrap(),
        ),
        (
            "ecommerce.delivery",
            "DeliveryFailed",
            serde_json::to_value(DeliveryOutcome {
                order_id: id(1),
                address: address(),
            })
            .unwrap(),
        ),
        (
            "ecommerce.payment",
            "PaymentProcessed",
            json!({"orderId": id(1), "amount": 5}),
        ),
    ];
    for (source, detail_type, detail) in samples {
        check_detail(&doc, source, detail_type, &detail).unwrap_or_else(|e| panic!("{detail_type}: {e}"));
    }
    let renamed = json!({"order_id": id(1), "amount": 5});
    assert!(check_detail(&doc, "ecommerce.payment", "PaymentProcessed", &renamed).is_err());
    let mistyped = json!({"orderId": id(1), "amount": "5"});
    assert!(check_detail(&doc, "ecommerce.payment", "PaymentProcessed", &mistyped).is_err());
    let negative = json!({"orderId": id(1), "amount": -5});
    assert!(check_detail(&doc, "ecommerce.payment", "PaymentProcessed", &negative).is_err());
    let mut bad_order = order_json;
    bad_order["status"] = json!("SHIPPED");
    assert!(check_detail(&doc, "ecommerce.orders", "OrderCreated", &bad_order).is_err());
    assert!(check_detail(&doc, "ecommerce.orders", "OrderShipped", &json!({})).is_err());
}
