//! Issue 12, money half: who may move money at the card processor, one
//! payment token for one order, settlement only on the processor's
//! confirmation of the order's total, merged order lines, checked
//! addresses, idempotency keys that cannot be reused for another order,
//! and ids too long to be ids. Over real HTTP, on both backend pairs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, TestApp};
use ecom_platform::event::sources;
use ecom_platform::Event;
use ecom_storage::sqlx::{self, Row as _};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const CREATE: &str = "/orders/backend/orders";

/// Every merchant operation of payment-3p, with a well-formed body.
fn merchant_calls(token: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("/payment-3p/check", json!({"paymentToken": token, "amount": 1})),
        (
            "/payment-3p/updateAmount",
            json!({"paymentToken": token, "amount": 1}),
        ),
        ("/payment-3p/processPayment", json!({"paymentToken": token})),
        ("/payment-3p/cancelPayment", json!({"paymentToken": token})),
        ("/payment-3p/refund", json!({"paymentToken": token, "amount": 1})),
        ("/payment-3p/status", json!({"paymentToken": token})),
    ]
}

/// A catalogue product with a fresh id.
fn product(name: &str, price: i64) -> Value {
    json!({
        "productId": Uuid::new_v4().to_string(),
        "name": name,
        "package": {"width": 100, "length": 100, "height": 100, "weight": 500},
        "price": price,
    })
}

/// Puts `products` in the catalogue, as `ecom products import` does.
async fn seed_products(app: &TestApp, products: &[Value]) {
    let db = app.open_db(ecom_products::NAME).await;
    let text = serde_json::to_string(products).unwrap();
    let report = ecom_products::import::import(&db, &ecom_platform::Outbox::new(), &text)
        .await
        .unwrap();
    assert!(report.refused.is_empty(), "{report}");
    db.close().await;
}

/// An address in Sweden: delivery there costs 0.
fn address() -> Value {
    json!({"name": "Ada", "streetAddress": "Storgatan 1", "city": "Umeå", "country": "SE", "phoneNumber": "+46 1"})
}

fn line(product: &Value, quantity: i64) -> Value {
    let mut line = product.clone();
    line["quantity"] = json!(quantity);
    line
}

fn request(lines: Vec<Value>, token: &str) -> Value {
    json!({"products": lines, "address": address(), "deliveryPrice": 0, "paymentToken": token})
}

async fn create(app: &TestApp, user: &str, order: &Value) -> Value {
    let (status, body) = app
        .post_as_service(CREATE, &json!({"userId": user, "order": order}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|e| e.iter().map(|m| m.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn get_order(app: &TestApp, id: &str) -> Value {
    let (status, body) = app
        .get_with_token(&format!("/orders/backend/{id}"), &app.service_token("tests"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["order"].clone()
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    app.eventually(&format!("order {id} becomes {status}"), || async {
        get_order(app, id).await["status"] == status
    })
    .await;
    get_order(app, id).await
}

/// How payment recorded an order's payment.
async fn payment_record(app: &TestApp, order_id: &str) -> Option<String> {
    let db = app.open_db("payment").await;
    let row = sqlx::query("SELECT status FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(db.reader())
        .await
        .unwrap();
    db.close().await;
    row.map(|r| r.try_get(0).unwrap())
}

async fn wait_for_payment(app: &TestApp, order_id: &str, status: &str) {
    app.eventually(&format!("payment of {order_id} is {status}"), || async {
        payment_record(app, order_id).await.as_deref() == Some(status)
    })
    .await;
}

fn about(source: &str, detail_type: &str, order: &Value, detail: Value) -> Event {
    let id = order["orderId"].as_str().unwrap().to_owned();
    Event::new(source, detail_type, vec![id], detail)
}

/// The warehouse packed every line of `order` as ordered.
fn packed_whole(order: &Value) -> Event {
    let products: Vec<Value> = order["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({"productId": p["productId"], "quantity": p["quantity"]}))
        .collect();
    about(
        sources::WAREHOUSE,
        "PackageCreated",
        order,
        json!({"orderId": order["orderId"], "products": products}),
    )
}

fn delivered(order: &Value) -> Event {
    about(
        sources::DELIVERY,
        "DeliveryCompleted",
        order,
        json!({"orderId": order["orderId"], "address": order["address"]}),
    )
}

/// Seeds one product of `price`, pre-authorises `price × quantity` and
/// places the order; (the order, its token).
async fn place(app: &TestApp, price: i64, quantity: i64) -> (Value, String) {
    let shoe = product("Shoe", price);
    seed_products(app, std::slice::from_ref(&shoe)).await;
    let token = app.preauth(price * quantity).await;
    let body = create(
        app,
        &Uuid::new_v4().to_string(),
        &request(vec![line(&shoe, quantity)], &token),
    )
    .await;
    assert_eq!(body["success"], true, "{body}");
    (body["order"].clone(), token)
}

mod processor {
    use super::*;

    #[tokio::test]
    async fn merchant_operations_refuse_anonymous_and_shopper_callers() {
        on_each_storage(|app| async move {
            let token = app.preauth(500).await;
            let shopper = app.user_token(&[]).await;
            for (path, body) in merchant_calls(&token) {
                let (status, answer) = app.post(path, &body).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous {path}: {answer}");
                assert!(answer["message"].is_string(), "{path}: {answer}");
                let (status, answer) = app.post_with_token(path, &shopper, &body).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "shopper {path}: {answer}");
            }
            // Nothing moved: the token still holds its whole amount.
            let state = app.processor_status(&token).await;
            assert_eq!(
                state,
                json!({"status": "AUTHORISED", "authorisedAmount": 500, "capturedAmount": null,
                       "refundedAmount": 0, "orderId": null})
            );
            // The merchant's credential passes; preauth stays public.
            for (path, body) in merchant_calls(&token) {
                let (status, answer) = app.post_as_service(path, &body).await;
                assert_eq!(status, StatusCode::OK, "merchant {path}: {answer}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn the_declining_test_cards_answer_402_and_others_are_approved() {
        on_each_storage(|app| async move {
            let preauth = |card: &'static str| {
                let app = &app;
                async move {
                    app.post("/payment-3p/preauth", &json!({"cardNumber": card, "amount": 100}))
                        .await
                }
            };
            assert_eq!(
                preauth("4000000000000002").await,
                (StatusCode::PAYMENT_REQUIRED, json!({"message": "card declined"}))
            );
            assert_eq!(
                preauth("4000000000009995").await,
                (
                    StatusCode::PAYMENT_REQUIRED,
                    json!({"message": "card declined: insufficient funds"})
                )
            );
            for card in ["4242424242424242", "4000000000000003", "0000000000000000"] {
                let (status, body) = preauth(card).await;
                assert_eq!(status, StatusCode::OK, "{card}: {body}");
                assert!(body["paymentToken"].is_string());
            }
            let (status, body) = preauth("4000-0000-000000").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["message"], "cardNumber: must hold only digits (0-9)");
        })
        .await;
    }

    #[tokio::test]
    async fn a_capture_names_its_order_and_a_retry_for_that_order_captures_nothing_more() {
        on_each_storage(|app| async move {
            let token = app.preauth(1000).await;
            let (a, b) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
            let process = |order: Option<&str>, amount: Option<i64>| {
                let mut body = json!({"paymentToken": token});
                if let Some(order) = order {
                    body["orderId"] = json!(order);
                }
                if let Some(amount) = amount {
                    body["amount"] = json!(amount);
                }
                let app = &app;
                async move { app.post_as_service("/payment-3p/processPayment", &body).await.1["ok"].clone() }
            };
            // Above what is held: refused, and the token stays live.
            assert_eq!(process(Some(&a), Some(1001)).await, false);
            assert_eq!(app.processor_status(&token).await["status"], "AUTHORISED");

            assert_eq!(process(Some(&a), Some(700)).await, true);
            let captured = json!({"status": "PROCESSED", "authorisedAmount": 1000, "capturedAmount": 700,
                                  "refundedAmount": 0, "orderId": a});
            assert_eq!(app.processor_status(&token).await, captured);
            // The same order again (a crash between capture and record): ok,
            // and nothing more is captured.
            assert_eq!(process(Some(&a), Some(700)).await, true);
            assert_eq!(process(Some(&a), None).await, true);
            // Anyone else, another amount, or no order: refused.
            assert_eq!(process(Some(&b), Some(700)).await, false);
            assert_eq!(process(None, None).await, false);
            assert_eq!(process(Some(&a), Some(600)).await, false);
            let (_, cancel) = app
                .post_as_service(
                    "/payment-3p/cancelPayment",
                    &json!({"paymentToken": token, "orderId": a}),
                )
                .await;
            assert_eq!(cancel, json!({"ok": false}));
            assert_eq!(app.processor_status(&token).await, captured);

            // Without an amount, the whole authorised amount is captured.
            let whole = app.preauth(300).await;
            let (_, ok) = app
                .post_as_service("/payment-3p/processPayment", &json!({"paymentToken": whole}))
                .await;
            assert_eq!(ok, json!({"ok": true}));
            assert_eq!(app.processor_status(&whole).await["capturedAmount"], 300);

            // Cancelling is idempotent for its order too.
            let other = app.preauth(300).await;
            for (order, ok) in [(&a, true), (&a, true), (&b, false)] {
                let (_, answer) = app
                    .post_as_service(
                        "/payment-3p/cancelPayment",
                        &json!({"paymentToken": other, "orderId": order}),
                    )
                    .await;
                assert_eq!(answer["ok"], ok, "cancel for {order}");
            }
            let state = app.processor_status(&other).await;
            assert_eq!(
                (&state["status"], &state["orderId"]),
                (&json!("CANCELLED"), &json!(a))
            );

            let (status, _) = app
                .post_as_service("/payment-3p/status", &json!({"paymentToken": Uuid::new_v4()}))
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        })
        .await;
    }

    #[tokio::test]
    async fn refunds_never_exceed_the_capture_and_a_retried_refund_refunds_once() {
        on_each_storage(|app| async move {
            let token = app.preauth(1000).await;
            let refund = |amount: i64, id: Option<&str>| {
                let mut body = json!({"paymentToken": token, "amount": amount});
                if let Some(id) = id {
                    body["refundId"] = json!(id);
                }
                let app = &app;
                async move { app.post_as_service("/payment-3p/refund", &body).await }
            };
            assert_eq!(
                refund(1, None).await.1,
                json!({"ok": false}),
                "nothing captured yet"
            );
            let (_, ok) = app
                .post_as_service(
                    "/payment-3p/processPayment",
                    &json!({"paymentToken": token, "orderId": Uuid::new_v4(), "amount": 800}),
                )
                .await;
            assert_eq!(ok, json!({"ok": true}));

            let (status, body) = refund(0, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body["message"].as_str().unwrap().starts_with("amount"), "{body}");

            assert_eq!(refund(500, Some("r1")).await.1["ok"], true);
            assert_eq!(refund(500, Some("r1")).await.1["ok"], true, "a retry");
            assert_eq!(
                refund(400, Some("r1")).await.1["ok"],
                false,
                "r1 was another amount"
            );
            assert_eq!(app.processor_status(&token).await["refundedAmount"], 500);
            assert_eq!(refund(301, Some("r2")).await.1["ok"], false, "800 captured");
            assert_eq!(refund(300, None).await.1["ok"], true);
            assert_eq!(refund(1, None).await.1["ok"], false);
            let state = app.processor_status(&token).await;
            assert_eq!(
                (&state["capturedAmount"], &state["refundedAmount"]),
                (&json!(800), &json!(800))
            );

            // Concurrent refunds of the last units: only as many as fit.
            let second = app.preauth(100).await;
            app.post_as_service("/payment-3p/processPayment", &json!({"paymentToken": second}))
                .await;
            let body = json!({"paymentToken": second, "amount": 40});
            let calls = (0..8).map(|_| app.post_as_service("/payment-3p/refund", &body));
            let wins = futures::future::join_all(calls)
                .await
                .iter()
                .filter(|(_, b)| b["ok"] == true)
                .count();
            assert_eq!(wins, 2);
            assert_eq!(app.processor_status(&second).await["refundedAmount"], 80);
        })
        .await;
    }
}

mod one_token_one_order {
    use super::*;

    #[tokio::test]
    async fn a_second_order_with_the_same_token_is_refused() {
        on_each_storage(|app| async move {
            let (first, token) = place(&app, 1500, 1).await;
            let shoe = &first["products"][0];
            let again = create(
                &app,
                &Uuid::new_v4().to_string(),
                &request(vec![line(shoe, 1)], &token),
            )
            .await;
            assert_eq!(again["success"], false, "{again}");
            assert_eq!(errors(&again), ["Payment token already used"]);
            // Also for the same shopper, once the first order is settled.
            let id = first["orderId"].as_str().unwrap();
            wait_for_payment(&app, id, "HELD").await;
            let user = first["userId"].as_str().unwrap();
            let again = create(&app, user, &request(vec![line(shoe, 1)], &token)).await;
            assert_eq!(errors(&again), ["Payment token already used"]);
        })
        .await;
    }

    #[tokio::test]
    async fn of_twenty_concurrent_orders_on_one_token_exactly_one_is_created() {
        on_each_storage(|app| async move {
            let shoe = product("Shoe", 1500);
            seed_products(&app, std::slice::from_ref(&shoe)).await;
            let token = app.preauth(1500).await;
            let order = request(vec![line(&shoe, 1)], &token);
            let users: Vec<String> = (0..20).map(|_| Uuid::new_v4().to_string()).collect();
            let calls = users.iter().map(|user| create(&app, user, &order));
            let answers = futures::future::join_all(calls).await;
            let created: Vec<&Value> = answers.iter().filter(|a| a["success"] == true).collect();
            assert_eq!(created.len(), 1, "{answers:#?}");
            for refused in answers.iter().filter(|a| a["success"] == false) {
                assert_eq!(errors(refused), ["Payment token already used"], "{refused}");
            }
            let id = created[0]["order"]["orderId"].as_str().unwrap().to_owned();
            wait_for_payment(&app, &id, "HELD").await;
            let orders_created = app
                .events()
                .iter()
                .filter(|e| {
                    e.detail_type == "OrderCreated" && e.detail.value()["paymentToken"] == token.as_str()
                })
                .count();
            assert_eq!(orders_created, 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_token_whose_order_was_refused_for_another_reason_can_be_used_at_once() {
        on_each_storage(|app| async move {
            let shoe = product("Shoe", 1500);
            seed_products(&app, std::slice::from_ref(&shoe)).await;
            // Covers the wrong total too: only the delivery price is wrong.
            let token = app.preauth(1510).await;
            let user = Uuid::new_v4().to_string();
            let mut wrong = request(vec![line(&shoe, 1)], &token);
            wrong["deliveryPrice"] = json!(10);
            let refused = create(&app, &user, &wrong).await;
            assert_eq!(errors(&refused), ["Wrong delivery price: got 10, expected 0"]);
            let fixed = create(&app, &user, &request(vec![line(&shoe, 1)], &token)).await;
            assert_eq!(fixed["success"], true, "{fixed}");
        })
        .await;
    }

    /// A claim whose order never came (a crashed createOrder) keeps the
    /// token only for the claim TTL; release drops an unconfirmed claim.
    #[tokio::test]
    async fn a_stale_unconfirmed_claim_is_taken_over_and_release_drops_a_claim() {
        on_each_storage(|app| async move {
            let token = app.preauth(1000).await;
            let validate = |order: Uuid| {
                let body = json!({"paymentToken": token, "total": 1000, "orderId": order});
                let app = &app;
                async move { app.post_as_service("/payment/backend/validate", &body).await }
            };
            let (crashed, next, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
            assert_eq!(validate(crashed).await, (StatusCode::OK, json!({"ok": true})));
            assert_eq!(validate(crashed).await.1, json!({"ok": true}), "its own claim");
            assert_eq!(
                validate(next).await.1,
                json!({"ok": false, "reason": "Payment token already used"})
            );
            // Ten minutes and a second later (the claim TTL passed):
            let db = app.open_db("payment").await;
            let eleven_minutes = 11 * 60 * 1_000_000_i64;
            sqlx::query("UPDATE payment_claims SET claimed_at = claimed_at - $1 WHERE payment_token = $2")
                .bind(eleven_minutes)
                .bind(&token)
                .execute(db.writer())
                .await
                .unwrap();
            db.close().await;
            assert_eq!(validate(next).await.1, json!({"ok": true}));
            assert_eq!(validate(crashed).await.1["ok"], false);

            let release = |order: Uuid| {
                let body = json!({"paymentToken": token, "orderId": order});
                let app = &app;
                async move { app.post_as_service("/payment/backend/release", &body).await }
            };
            assert_eq!(
                release(crashed).await.1,
                json!({"ok": false}),
                "not its claim any more"
            );
            assert_eq!(release(next).await, (StatusCode::OK, json!({"ok": true})));
            assert_eq!(validate(third).await.1, json!({"ok": true}));
            let (status, _) = app
                .post(
                    "/payment/backend/release",
                    &json!({"paymentToken": token, "orderId": third}),
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        })
        .await;
    }

    /// The second line of defence: an order that reached OrderCreated with
    /// a token another order holds is never paid, never packed.
    #[tokio::test]
    async fn an_order_that_slipped_past_validation_fails_its_payment_and_is_never_packed() {
        on_each_storage(|app| async move {
            let (first, token) = place(&app, 1500, 1).await;
            let first_id = first["orderId"].as_str().unwrap().to_owned();
            wait_for_payment(&app, &first_id, "HELD").await;

            // A second order with the same token, as if validation had let
            // it through: stored by orders, announced on the bus.
            let mut second = first.clone();
            let second_id = Uuid::now_v7().to_string();
            second["orderId"] = json!(second_id);
            let stored: ecom_orders::domain::Order = serde_json::from_value(second.clone()).unwrap();
            let db = app.open_db("orders").await;
            let mut tx = db.begin().await.unwrap();
            ecom_orders::store::insert(&mut tx, &stored, None).await.unwrap();
            tx.commit().await.unwrap();
            db.close().await;
            let failed_before = app.metric("ecom_payments_failed_total").await;
            app.publish(&[Event::new(
                sources::ORDERS,
                "OrderCreated",
                vec![second_id.clone()],
                second.clone(),
            )])
            .await;

            let failure = app
                .wait_for_event("PaymentFailed", |e| {
                    e.detail_type == "PaymentFailed" && e.resources == [second_id.as_str()]
                })
                .await;
            assert_eq!(failure.source, "ecommerce.payment");
            assert_eq!(failure.detail.value()["orderId"], second_id.as_str());
            assert_eq!(
                failure.detail.value()["reason"],
                "Payment token already used by another order"
            );
            wait_for_status(&app, &second_id, "PAYMENT_FAILED").await;
            assert_eq!(payment_record(&app, &second_id).await.as_deref(), Some("FAILED"));
            assert!(app.metric("ecom_payments_failed_total").await > failed_before);

            // A package for it changes nothing; the first order is untouched.
            app.publish(&[packed_whole(&second)]).await;
            app.publish(&[packed_whole(&first)]).await;
            wait_for_status(&app, &first_id, "PACKAGED").await;
            assert_eq!(get_order(&app, &second_id).await["status"], "PAYMENT_FAILED");
            assert_eq!(app.processor_status(&token).await["status"], "AUTHORISED");
            assert_eq!(payment_record(&app, &first_id).await.as_deref(), Some("HELD"));
        })
        .await;
    }
}

mod settlement {
    use super::*;

    /// The processor refuses the capture (the amount was lowered, or the
    /// token cancelled, behind payment's back): no money moves, the payment
    /// is FAILED, the order PAYMENT_FAILED, PaymentFailed is announced and
    /// counted.
    #[tokio::test]
    async fn a_capture_the_processor_refuses_fails_the_order_and_moves_no_money() {
        on_each_storage(|app| async move {
            let cases = [
                (
                    "/payment-3p/updateAmount",
                    1,
                    "the card processor holds 1, less than the total 3000",
                    "AUTHORISED",
                ),
                (
                    "/payment-3p/cancelPayment",
                    0,
                    "the payment was cancelled at the card processor",
                    "CANCELLED",
                ),
            ];
            for (path, amount, reason, left) in cases {
                let (order, token) = place(&app, 1500, 2).await;
                let id = order["orderId"].as_str().unwrap().to_owned();
                wait_for_payment(&app, &id, "HELD").await;
                let (status, answer) = app
                    .post_as_service(path, &json!({"paymentToken": token, "amount": amount}))
                    .await;
                assert_eq!((status, answer), (StatusCode::OK, json!({"ok": true})), "{path}");
                let failed_before = app.metric("ecom_payments_failed_total").await;

                app.publish(&[packed_whole(&order)]).await;
                wait_for_status(&app, &id, "PACKAGED").await;
                app.publish(&[delivered(&order)]).await;

                let failure = app
                    .wait_for_event("PaymentFailed", |e| {
                        e.detail_type == "PaymentFailed" && e.resources == [id.as_str()]
                    })
                    .await;
                assert_eq!(failure.detail, json!({"orderId": id, "reason": reason}));
                wait_for_status(&app, &id, "PAYMENT_FAILED").await;
                assert_eq!(payment_record(&app, &id).await.as_deref(), Some("FAILED"));
                let state = app.processor_status(&token).await;
                assert_eq!(state["status"], left, "{state}");
                assert_eq!(state["capturedAmount"], Value::Null, "no capture: {state}");
                assert!(app.metric("ecom_payments_failed_total").await > failed_before);
                assert!(!app
                    .events()
                    .iter()
                    .any(|e| e.detail_type == "PaymentProcessed" && e.resources == [id.as_str()]));
                // Nothing brings it back: once orders has applied a late
                // package (published after a late completion), the order
                // and the payment are still failed and nothing was captured.
                let late_package = packed_whole(&order);
                app.publish(&[delivered(&order)]).await;
                app.publish(std::slice::from_ref(&late_package)).await;
                app.handled("orders", "orders.on-package-created", &late_package)
                    .await;
                assert_eq!(get_order(&app, &id).await["status"], "PAYMENT_FAILED");
                assert_eq!(payment_record(&app, &id).await.as_deref(), Some("FAILED"));
                assert_eq!(app.processor_status(&token).await["capturedAmount"], Value::Null);
            }
        })
        .await;
    }

    /// The amount captured is the order's final total, and only the
    /// processor's confirmation (PaymentProcessed) makes the order
    /// FULFILLED: DeliveryCompleted alone does not.
    #[tokio::test]
    async fn the_final_total_is_captured_and_only_its_capture_fulfils_the_order() {
        on_each_storage(|app| async move {
            let (order, token) = place(&app, 1500, 3).await;
            let id = order["orderId"].as_str().unwrap().to_owned();
            wait_for_payment(&app, &id, "HELD").await;
            // One of the three is packed.
            let one = about(
                sources::WAREHOUSE,
                "PackageCreated",
                &order,
                json!({"orderId": id, "products": [{"productId": order["products"][0]["productId"], "quantity": 1}]}),
            );
            app.publish(&[one]).await;
            let packaged = wait_for_status(&app, &id, "PACKAGED").await;
            assert_eq!(packaged["total"], 1500);
            app.publish(&[delivered(&order)]).await;

            let paid = app
                .wait_for_event("PaymentProcessed", |e| {
                    e.detail_type == "PaymentProcessed" && e.resources == [id.as_str()]
                })
                .await;
            assert_eq!(paid.source, "ecommerce.payment");
            assert_eq!(paid.detail, json!({"orderId": id, "amount": 1500}));
            wait_for_status(&app, &id, "FULFILLED").await;
            let state = app.processor_status(&token).await;
            assert_eq!(
                (&state["status"], &state["capturedAmount"], &state["orderId"]),
                (&json!("PROCESSED"), &json!(1500), &json!(id))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn delivery_completed_without_a_capture_leaves_the_order_packaged() {
        // Only orders runs: payment never answers DeliveryCompleted. (The
        // services createOrder calls get addresses where nothing listens:
        // no order is created here.)
        let nowhere = "http://127.0.0.1:9";
        let elsewhere = [
            ("products", nowhere),
            ("delivery-pricing", nowhere),
            ("payment", nowhere),
            ("warehouse", nowhere),
        ];
        common::on_each_storage_with(&["orders"], &elsewhere, |app| async move {
            let order_id = Uuid::new_v4();
            let order = json!({
                "orderId": order_id, "userId": "u", "createdDate": "2026-01-01T00:00:00Z",
                "modifiedDate": "2026-01-01T00:00:00Z", "status": "NEW",
                "products": [line(&product("Shoe", 100), 1)], "address": address(),
                "deliveryPrice": 0, "paymentToken": "t", "total": 100,
            });
            let stored: ecom_orders::domain::Order = serde_json::from_value(order.clone()).unwrap();
            let db = app.open_db("orders").await;
            let mut tx = db.begin().await.unwrap();
            ecom_orders::store::insert(&mut tx, &stored, None).await.unwrap();
            tx.commit().await.unwrap();
            db.close().await;
            app.publish(&[packed_whole(&order)]).await;
            wait_for_status(&app, &order_id.to_string(), "PACKAGED").await;
            // Orders has no rule for DeliveryCompleted (only the capture it
            // leads to fulfils an order). A later event of this order that
            // orders does handle (DeliveryStarted, which shows a tracking
            // id) is the barrier: once it shows, the earlier completion has
            // long been on the bus, and the order must still be PACKAGED.
            let done = delivered(&order);
            let started = Event::new(
                sources::DELIVERY,
                "DeliveryStarted",
                vec![order_id.to_string()],
                json!({"orderId": order_id, "trackingId": "TRACK0000001"}),
            );
            app.publish(std::slice::from_ref(&done)).await;
            app.publish(std::slice::from_ref(&started)).await;
            app.handled("orders", "orders.on-delivery-started", &started)
                .await;
            let order_now = get_order(&app, &order_id.to_string()).await;
            assert_eq!(order_now["trackingId"], "TRACK0000001", "{order_now}");
            assert_eq!(order_now["status"], "PACKAGED", "{order_now}");
            // A capture of another amount does not fulfil it either.
            let paid = |amount: i64| {
                Event::new(
                    sources::PAYMENT,
                    "PaymentProcessed",
                    vec![order_id.to_string()],
                    json!({"orderId": order_id, "amount": amount}),
                )
            };
            let short = paid(99);
            app.publish(std::slice::from_ref(&short)).await;
            app.handled("orders", "orders.on-payment-processed", &short).await;
            assert_eq!(get_order(&app, &order_id.to_string()).await["status"], "PACKAGED");
            app.publish(&[paid(100)]).await;
            wait_for_status(&app, &order_id.to_string(), "FULFILLED").await;
        })
        .await;
    }
}

mod order_lines {
    use super::*;

    async fn staff(app: &TestApp, group: &str) -> String {
        app.user_token(&[group]).await
    }

    /// `[P×1, P×1]` is stored as `[P×2]`, packed as 2 and charged 2 × price.
    #[tokio::test]
    async fn one_product_on_two_lines_is_one_line_through_packaging_and_capture() {
        on_each_storage(|app| async move {
            let shoe = product("Shoe", 1500);
            seed_products(&app, std::slice::from_ref(&shoe)).await;
            // To Germany, so that delivery costs something.
            let mut to_germany = address();
            to_germany["country"] = json!("DE");
            let (_, priced) = app
                .post_as_service(
                    "/delivery-pricing/backend/pricing",
                    &json!({"products": [line(&shoe, 2)], "address": to_germany}),
                )
                .await;
            let delivery = priced["pricing"].as_i64().unwrap();
            assert!(delivery > 0, "{priced}");
            let total = 2 * 1500 + delivery;
            let token = app.preauth(total).await;
            let mut twice = request(vec![line(&shoe, 1), line(&shoe, 1)], &token);
            twice["address"] = to_germany;
            twice["deliveryPrice"] = json!(delivery);
            let body = create(&app, &Uuid::new_v4().to_string(), &twice).await;
            assert_eq!(body["success"], true, "{body}");
            let order = &body["order"];
            let id = order["orderId"].as_str().unwrap().to_owned();
            assert_eq!(order["products"].as_array().unwrap().len(), 1, "{order}");
            assert_eq!(order["products"][0]["quantity"], 2);
            assert_eq!(order["total"], total);

            let clerk = staff(&app, "warehouse").await;
            let request_path = format!("/warehouse/packaging-requests/{id}");
            app.eventually("the packaging request appears", || async {
                app.get_with_token(&request_path, &clerk).await.0 == StatusCode::OK
            })
            .await;
            let (_, packaging) = app.get_with_token(&request_path, &clerk).await;
            assert_eq!(packaging["products"].as_array().unwrap().len(), 1, "{packaging}");
            assert_eq!(packaging["products"][0]["quantity"], 2);
            for op in ["startPackaging", "completePackaging"] {
                let (status, answer) = app
                    .post_with_token(&format!("/warehouse/{op}"), &clerk, &json!({"orderId": id}))
                    .await;
                assert_eq!(status, StatusCode::OK, "{op}: {answer}");
            }
            let packaged = wait_for_status(&app, &id, "PACKAGED").await;
            assert_eq!(packaged["products"], order["products"]);
            assert_eq!(packaged["total"], total);

            let courier = staff(&app, "delivery").await;
            let delivery_path = format!("/delivery/deliveries/{id}");
            app.eventually("the delivery appears", || async {
                app.get_with_token(&delivery_path, &courier).await.0 == StatusCode::OK
            })
            .await;
            for op in ["startDelivery", "completeDelivery"] {
                let (status, answer) = app
                    .post_with_token(&format!("/delivery/{op}"), &courier, &json!({"orderId": id}))
                    .await;
                assert_eq!(status, StatusCode::OK, "{op}: {answer}");
            }
            wait_for_status(&app, &id, "FULFILLED").await;
            let state = app.processor_status(&token).await;
            assert_eq!(state["capturedAmount"], total, "price × 2 + delivery: {state}");
            assert_eq!(state["orderId"], id.as_str());
        })
        .await;
    }

    #[tokio::test]
    async fn one_product_on_two_lines_at_two_prices_is_refused_naming_both() {
        on_each_storage(|app| async move {
            let shoe = product("Shoe", 1500);
            seed_products(&app, std::slice::from_ref(&shoe)).await;
            let token = app.preauth(3000).await;
            let mut cheap = line(&shoe, 1);
            cheap["price"] = json!(1);
            let body = create(&app, "u", &request(vec![line(&shoe, 1), cheap], &token)).await;
            assert_eq!(
                errors(&body),
                ["products[1]: the same product as products[0] with another name, package or price"]
            );
        })
        .await;
    }

    #[tokio::test]
    async fn an_order_address_must_be_complete_sane_and_in_a_country() {
        on_each_storage(|app| async move {
            let shoe = product("Shoe", 100);
            seed_products(&app, std::slice::from_ref(&shoe)).await;
            let token = app.preauth(100).await;
            let with = |field: &str, value: Value| {
                let mut order = request(vec![line(&shoe, 1)], &token);
                order["address"][field] = value;
                order
            };
            let cases = [
                (with("name", json!("")), "address.name: must not be empty"),
                (with("name", json!("   ")), "address.name: must not be empty"),
                (
                    with("streetAddress", json!("")),
                    "address.streetAddress: must not be empty",
                ),
                (with("city", json!("\t")), "address.city: must not be empty"),
                (
                    with("phoneNumber", json!("")),
                    "address.phoneNumber: must not be empty",
                ),
                (
                    with("name", json!("Ada\u{0}")),
                    "address.name: must not contain control characters",
                ),
                (
                    with("postCode", json!("1\n2")),
                    "address.postCode: must not contain control characters",
                ),
                (
                    with("city", json!("x".repeat(200_000))),
                    "address.city: at most 200 characters, got 200000",
                ),
                (
                    with("companyName", json!("y".repeat(201))),
                    "address.companyName: at most 200 characters, got 201",
                ),
                (
                    with("country", json!("XX")),
                    "address.country: 'XX' is not an ISO 3166-1 country code",
                ),
            ];
            let user = Uuid::new_v4().to_string();
            for (order, want) in cases {
                let body = create(&app, &user, &order).await;
                assert_eq!(body["success"], false, "{want}");
                assert_eq!(errors(&body), [want]);
            }
            let (_, page) = app
                .get_with_token(
                    &format!("/orders/backend/users/{user}/orders"),
                    &app.service_token("tests"),
                )
                .await;
            assert_eq!(page["orders"], json!([]));
            // A good address passes, and the token was not kept by a refusal.
            let body = create(&app, &user, &request(vec![line(&shoe, 1)], &token)).await;
            assert_eq!(body["success"], true, "{body}");
        })
        .await;
    }
}

mod requests {
    use super::*;

    const CREATE_GQL: &str =
        "mutation($o: CreateOrderRequest!) { createOrder(order: $o) { success errors order { orderId } } }";

    async fn gql(app: &TestApp, token: &str, query: &str, variables: Value, key: Option<&str>) -> Value {
        let mut req = app
            .http
            .post(app.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let (status, body) = send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    fn codes(body: &Value) -> Vec<String> {
        body["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_idempotency_key_sent_again_with_another_order_is_refused() {
        on_each_storage(|app| async move {
            let (shoe, hat) = (product("Shoe", 1500), product("Hat", 700));
            seed_products(&app, &[shoe.clone(), hat.clone()]).await;
            let token = app.preauth(5000).await;
            let user = Uuid::new_v4().to_string();
            let keyed =
                |order: &Value, key: &str| json!({"userId": user, "order": order, "idempotencyKey": key});
            let shoes = request(vec![line(&shoe, 1)], &token);
            let hats = request(vec![line(&hat, 1)], &token);

            let (_, first) = app.post_as_service(CREATE, &keyed(&shoes, "k1")).await;
            assert_eq!(first["success"], true, "{first}");
            let (_, again) = app.post_as_service(CREATE, &keyed(&shoes, "k1")).await;
            assert_eq!(again, first, "the same request gets the same order");
            let (status, reused) = app.post_as_service(CREATE, &keyed(&hats, "k1")).await;
            assert_eq!(status, StatusCode::CONFLICT, "{reused}");
            assert_eq!(reused["code"], "IDEMPOTENCY_KEY_REUSED");
            assert!(
                reused["message"].as_str().unwrap().contains("Idempotency-Key"),
                "{reused}"
            );
            let (_, page) = app
                .get_with_token(
                    &format!("/orders/backend/users/{user}/orders"),
                    &app.service_token("tests"),
                )
                .await;
            assert_eq!(page["orders"].as_array().unwrap().len(), 1);

            // Through GraphQL, the Idempotency-Key header.
            let shopper = app.user_token(&[]).await;
            let token = app.preauth(5000).await;
            let shoes = request(vec![line(&shoe, 1)], &token);
            let hats = request(vec![line(&hat, 1)], &token);
            let first = gql(
                &app,
                &shopper,
                CREATE_GQL,
                json!({"o": shoes}),
                Some("checkout-7"),
            )
            .await;
            assert_eq!(first["data"]["createOrder"]["success"], true, "{first}");
            let again = gql(
                &app,
                &shopper,
                CREATE_GQL,
                json!({"o": shoes}),
                Some("checkout-7"),
            )
            .await;
            assert_eq!(again, first);
            let reused = gql(&app, &shopper, CREATE_GQL, json!({"o": hats}), Some("checkout-7")).await;
            assert_eq!(codes(&reused), ["IDEMPOTENCY_KEY_REUSED"], "{reused}");
            assert!(
                reused["data"].is_null() || reused["data"]["createOrder"].is_null(),
                "{reused}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn ids_longer_than_any_id_are_refused_as_bad_input() {
        on_each_storage(|app| async move {
            let service = app.service_token("tests");
            let long = "x".repeat(129);
            for path in [
                format!("/orders/backend/{long}"),
                format!("/orders/backend/users/{long}/orders"),
                format!("/products/products/{long}"),
            ] {
                let (status, body) = app.get_with_token(&path, &service).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("at most 128 characters"),
                    "{body}"
                );
            }
            let shopper = app.user_token(&[]).await;
            let huge = "x".repeat(70_000);
            for (query, arg) in [
                (
                    "query($id: ID!) { getOrder(orderId: $id) { orderId } }",
                    "orderId",
                ),
                (
                    "query($id: ID!) { getProduct(productId: $id) { productId } }",
                    "productId",
                ),
            ] {
                let body = gql(&app, &shopper, query, json!({"id": huge}), None).await;
                assert_eq!(
                    codes(&body),
                    ["BAD_USER_INPUT"],
                    "{arg}: {}",
                    &body.to_string()[..300.min(body.to_string().len())]
                );
                let message = body["errors"][0]["message"].as_str().unwrap();
                assert!(message.starts_with(arg) && message.len() < 200, "{message:.300}");
            }
        })
        .await;
    }
}
