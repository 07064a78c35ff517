//! orders and payment: creating orders (checks with products,
//! delivery-pricing and payment), reading and listing them, following the
//! warehouse's and delivery's events, and settling payments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, TestApp};
use ecom_platform::event::sources;
use ecom_platform::Event;
use ecom_storage::sqlx::{self, Row as _};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const CREATE: &str = "/orders/backend/orders";

/// A catalogue product with a fresh id.
fn product(name: &str, price: i64) -> Value {
    json!({
        "productId": Uuid::new_v4().to_string(),
        "name": name,
        "package": {"width": 100, "length": 100, "height": 100, "weight": 500},
        "price": price,
        "category": "shoes",
        "tags": ["new"],
        "pictures": [],
    })
}

/// Puts `products` in the catalogue, through the products service's own
/// import (as `ecom products import` does).
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

/// `(product, quantity)` lines as an order request's products.
fn lines(items: &[(&Value, i64)]) -> Value {
    items
        .iter()
        .map(|(p, q)| {
            let mut line = (*p).clone();
            line["quantity"] = json!(q);
            line
        })
        .collect()
}

fn request(products: Value, delivery_price: i64, token: &str) -> Value {
    json!({"products": products, "address": address(), "deliveryPrice": delivery_price, "paymentToken": token})
}

async fn create(app: &TestApp, user: &str, order: &Value) -> (StatusCode, Value) {
    app.post_as_service(CREATE, &json!({"userId": user, "order": order}))
        .await
}

/// Seeds the products, pre-authorises the exact total and creates the
/// order; the created order.
async fn place_order(app: &TestApp, user: &str, items: &[(&Value, i64)]) -> Value {
    let products: Vec<Value> = items.iter().map(|(p, _)| (*p).clone()).collect();
    seed_products(app, &products).await;
    let total: i64 = items.iter().map(|(p, q)| p["price"].as_i64().unwrap() * q).sum();
    let token = app.preauth(total).await;
    let (status, body) = create(app, user, &request(lines(items), 0, &token)).await;
    assert_eq!(
        (status, &body["success"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    body["order"].clone()
}

/// The order as orders stores it (and puts it in events): what its route
/// serves, without the `history` it adds (see [`history_of`]).
async fn get_order(app: &TestApp, id: &str) -> Value {
    let mut order = served(app, id).await;
    order.as_object_mut().unwrap().remove("history");
    order
}

async fn served(app: &TestApp, id: &str) -> Value {
    let (status, body) = app
        .get_with_token(&format!("/orders/backend/{id}"), &app.service_token("tests"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["order"].clone()
}

/// The history the order's route serves.
async fn history_of(app: &TestApp, id: &str) -> Value {
    served(app, id).await["history"].clone()
}

async fn list(app: &TestApp, user: &str, query: &str) -> (StatusCode, Value) {
    app.get_with_token(
        &format!("/orders/backend/users/{user}/orders{query}"),
        &app.service_token("tests"),
    )
    .await
}

fn user() -> String {
    Uuid::new_v4().to_string()
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    app.eventually(&format!("order {id} becomes {status}"), || async {
        get_order(app, id).await["status"] == status
    })
    .await;
    get_order(app, id).await
}

/// How the payment service recorded an order's payment (no route shows it).
async fn payment_status(app: &TestApp, order_id: &str) -> Option<(Option<String>, String)> {
    let db = app.open_db("payment").await;
    let row = sqlx::query("SELECT payment_token, status FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(db.reader())
        .await
        .unwrap();
    db.close().await;
    row.map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
}

async fn wait_for_payment(app: &TestApp, order_id: &str, status: &str) {
    app.eventually(&format!("payment of {order_id} is {status}"), || async {
        payment_status(app, order_id)
            .await
            .is_some_and(|(_, s)| s == status)
    })
    .await;
}

fn warehouse(detail_type: &str, detail: Value) -> Event {
    let id = detail["orderId"].as_str().unwrap_or_default().to_owned();
    Event::new(sources::WAREHOUSE, detail_type, vec![id], detail)
}

fn delivery(detail_type: &str, order: &Value) -> Event {
    let id = order["orderId"].as_str().unwrap().to_owned();
    Event::new(
        sources::DELIVERY,
        detail_type,
        vec![id.clone()],
        json!({"orderId": id, "address": order["address"]}),
    )
}

fn packed(order: &Value, items: &[(&Value, i64)]) -> Event {
    let products: Vec<Value> = items
        .iter()
        .map(|(p, q)| json!({"productId": p["productId"], "quantity": q}))
        .collect();
    warehouse(
        "PackageCreated",
        json!({"orderId": order["orderId"], "products": products}),
    )
}

fn modifications_of(app: &TestApp, order_id: &str) -> Vec<Event> {
    app.events()
        .into_iter()
        .filter(|e| e.detail_type == "OrderModified" && e.resources == [order_id])
        .collect()
}

#[tokio::test]
async fn creating_an_order_stores_it_with_catalogue_details_and_announces_it() {
    on_each_storage(|app| async move {
        let (shoe, hat) = (product("Shoe", 1500), product("Hat", 700));
        let buyer = user();
        let order = place_order(&app, &buyer, &[(&shoe, 2), (&hat, 1)]).await;

        assert_eq!(order["status"], "NEW");
        assert_eq!(order["userId"], buyer.as_str());
        assert_eq!(order["total"], 2 * 1500 + 700);
        assert_eq!(order["deliveryPrice"], 0);
        assert_eq!(order["address"]["country"], "SE");
        // Only productId, name, package, price and quantity are kept.
        let kept: Vec<&String> = order["products"][0].as_object().unwrap().keys().collect();
        assert_eq!(kept, ["name", "package", "price", "productId", "quantity"]);
        assert_eq!(order["products"][0]["quantity"], 2);

        let id = order["orderId"].as_str().unwrap();
        assert_eq!(served(&app, id).await, order);
        assert_eq!(
            history_of(&app, id).await,
            json!([{"status": "NEW", "at": order["createdDate"]}])
        );
        let event = app
            .wait_for_event("OrderCreated", |e| {
                e.detail_type == "OrderCreated" && e.resources == [id]
            })
            .await;
        assert_eq!(event.source, "ecommerce.orders");
        // The event carries the order as stored: the history is served beside it.
        let mut stored = order.clone();
        stored.as_object_mut().unwrap().remove("history");
        assert_eq!(event.detail, stored);
    })
    .await;
}

#[tokio::test]
async fn quantity_defaults_to_one() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        seed_products(&app, std::slice::from_ref(&shoe)).await;
        let token = app.preauth(1500).await;
        let (_, body) = create(&app, &user(), &request(json!([shoe]), 0, &token)).await;
        assert_eq!(body["order"]["products"][0]["quantity"], 1, "{body}");
        assert_eq!(body["order"]["total"], 1500);
    })
    .await;
}

#[tokio::test]
async fn orders_refused_by_another_service_say_why_and_store_nothing() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        seed_products(&app, std::slice::from_ref(&shoe)).await;
        let unknown = product("Ghost", 100);
        // Holds more than any total below: only the check under test fails.
        let good = app.preauth(10_000).await;
        let too_small = app.preauth(1499).await;
        let cases = [
            (
                request(lines(&[(&shoe, 1)]), 10, &good),
                "Wrong delivery price: got 10, expected 0",
            ),
            (
                request(lines(&[(&shoe, 1)]), 0, &too_small),
                "Wrong payment token",
            ),
            (
                request(lines(&[(&shoe, 1)]), 0, "not-a-token"),
                "Wrong payment token",
            ),
            (
                request(lines(&[(&unknown, 1)]), 0, &app.preauth(100).await),
                &*format!("Product '{}' not found", unknown["productId"].as_str().unwrap()),
            ),
        ];
        let buyer = user();
        for (order, message) in cases {
            let (status, body) = create(&app, &buyer, &order).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["success"], false, "{message}: {body}");
            assert_eq!(body["message"], "Validation errors");
            let errors = body["errors"].as_array().unwrap();
            assert!(errors.iter().any(|e| e == message), "want {message:?} in {body}");
            assert_eq!(errors.len(), 1, "only the failing check reports: {body}");
        }
        let (_, page) = list(&app, &buyer, "").await;
        assert_eq!(page["orders"], json!([]));
        assert!(app.events().iter().all(|e| e.detail_type != "OrderCreated"));
    })
    .await;
}

#[tokio::test]
async fn malformed_orders_name_the_field_at_fault_and_store_nothing() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        let valid = request(lines(&[(&shoe, 1)]), 0, "token");
        let with = |path: &[&str], value: Value| {
            let mut r = valid.clone();
            let mut at = &mut r;
            for (i, key) in path.iter().enumerate() {
                if i + 1 == path.len() {
                    if value.is_null() {
                        at.as_object_mut().unwrap().remove(*key);
                    } else {
                        at[*key] = value.clone();
                    }
                    break;
                }
                at = &mut at[*key];
            }
            r
        };
        let cases = [
            (with(&["address"], Value::Null), "address: missing field"),
            (
                with(&["products"], json!([])),
                "products: must hold at least one product",
            ),
            (with(&["products"], Value::Null), "products: missing field"),
            (
                with(&["products"], json!(vec![lines(&[(&shoe, 1)])[0].clone(); 501])),
                "products: at most 500 lines per order, got 501",
            ),
            (with(&["products"], lines(&[(&shoe, 0)])), "products[0].quantity:"),
            (
                with(&["products"], lines(&[(&shoe, -1)])),
                "products[0].quantity:",
            ),
            (with(&["address", "country"], json!("SWE")), "address.country:"),
            (with(&["deliveryPrice"], json!(-1)), "deliveryPrice:"),
            (with(&["deliveryPrice"], json!(2.5)), "deliveryPrice:"),
            (
                with(&["paymentToken"], Value::Null),
                "paymentToken: missing field",
            ),
        ];
        let buyer = user();
        for (order, message) in cases {
            let (status, body) = create(&app, &buyer, &order).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["success"], false, "{message}: {body}");
            assert_eq!(body["message"], "Validation errors");
            assert!(
                body["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().starts_with(message)),
                "want {message:?} in {body}"
            );
        }
        // Several problems are all reported at once.
        let mut both = with(&["deliveryPrice"], json!(-1));
        both.as_object_mut().unwrap().remove("address");
        let (_, body) = create(&app, &buyer, &both).await;
        assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");

        // A broken envelope is a plain 400.
        let (status, body) = app.post_as_service(CREATE, &json!({"order": valid})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"].as_str().unwrap().contains("userId"), "{body}");

        let (_, page) = list(&app, &buyer, "").await;
        assert_eq!(page["orders"], json!([]));
        assert!(app.events().iter().all(|e| e.detail_type != "OrderCreated"));
    })
    .await;
}

#[tokio::test]
async fn the_same_idempotency_key_gives_back_the_same_order() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        seed_products(&app, std::slice::from_ref(&shoe)).await;
        // One token pays for one order: each new order brings its own.
        let mut orders = Vec::new();
        for _ in 0..3 {
            orders.push(request(lines(&[(&shoe, 1)]), 0, &app.preauth(1500).await));
        }
        let (buyer, other) = (user(), user());
        let send = |who: String, key: &'static str, order: &Value| {
            let body = json!({"userId": who, "order": order, "idempotencyKey": key});
            let app = &app;
            async move { app.post_as_service(CREATE, &body).await.1 }
        };
        let first = send(buyer.clone(), "k1", &orders[0]).await;
        let again = send(buyer.clone(), "k1", &orders[0]).await;
        assert_eq!(first["success"], true, "{first}");
        assert_eq!(again, first);
        // Another key, or another user with the same key, is another order.
        let second = send(buyer.clone(), "k2", &orders[1]).await;
        let theirs = send(other.clone(), "k1", &orders[2]).await;
        assert_eq!(second["success"], true, "{second}");
        assert_eq!(theirs["success"], true, "{theirs}");
        assert_ne!(second["order"]["orderId"], first["order"]["orderId"]);
        assert_ne!(theirs["order"]["orderId"], first["order"]["orderId"]);

        let (_, page) = list(&app, &buyer, "").await;
        assert_eq!(page["orders"].as_array().unwrap().len(), 2);
    })
    .await;
}

/// Concurrent retries with one key (a double click, a client retrying
/// while the first attempt still runs) make one order, and every one of
/// them is answered with it: they all claim the token for the same order.
#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_order() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        seed_products(&app, std::slice::from_ref(&shoe)).await;
        let token = app.preauth(1500).await;
        let body = json!({"userId": user(), "order": request(lines(&[(&shoe, 1)]), 0, &token), "idempotencyKey": "double-click"});
        let answers = futures::future::join_all((0..8).map(|_| app.post_as_service(CREATE, &body))).await;
        let first = &answers[0].1;
        assert_eq!(first["success"], true, "{first}");
        for (status, answer) in &answers {
            assert_eq!(*status, StatusCode::OK);
            assert_eq!(answer, first);
        }
    })
    .await;
}

#[tokio::test]
async fn a_users_orders_are_listed_newest_first_page_by_page() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 100);
        let buyer = user();
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(place_order(&app, &buyer, &[(&shoe, 1)]).await["orderId"].clone());
        }
        place_order(&app, &user(), &[(&shoe, 1)]).await;
        ids.reverse();

        let mut seen = Vec::new();
        let mut query = "?limit=2".to_owned();
        let mut pages = 0;
        loop {
            let (status, page) = list(&app, &buyer, &query).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            pages += 1;
            seen.extend(
                page["orders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["orderId"].clone()),
            );
            match page["nextToken"].as_str() {
                Some(token) => query = format!("?limit=2&nextToken={token}"),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        assert_eq!(pages, 3);

        let (status, body) = list(&app, &buyer, "?nextToken=garbage").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["message"].as_str().unwrap().starts_with("nextToken"));
        let (status, _) = list(&app, &buyer, "?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn order_routes_are_for_services_only_and_unknown_orders_are_404() {
    on_each_storage(|app| async move {
        let path = format!("/orders/backend/{}", Uuid::new_v4());
        let (status, _) = app.get(&path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app.post(CREATE, &json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = app.get_with_token(&path, &app.service_token("tests")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body["message"].is_string());
        let (status, _) = app
            .get_with_token("/orders/backend/not-a-uuid", &app.service_token("tests"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn a_packed_and_delivered_order_is_fulfilled_and_its_payment_processed() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        let order = place_order(&app, &user(), &[(&shoe, 2)]).await;
        let id = order["orderId"].as_str().unwrap();
        let token = order["paymentToken"].as_str().unwrap();
        wait_for_payment(&app, id, "HELD").await;

        app.publish(&[packed(&order, &[(&shoe, 2)])]).await;
        let packaged = wait_for_status(&app, id, "PACKAGED").await;
        assert_eq!(packaged["total"], order["total"]);
        assert_eq!(packaged["products"], order["products"]);
        let modified = app
            .wait_for_event("OrderModified", |e| {
                e.detail_type == "OrderModified" && e.resources == [id]
            })
            .await;
        assert_eq!(
            modified.detail.value()["changed"],
            json!(["modifiedDate", "status"])
        );
        assert_eq!(modified.detail.value()["new"], packaged);

        app.publish(&[delivery("DeliveryCompleted", &order)]).await;
        wait_for_status(&app, id, "FULFILLED").await;
        wait_for_payment(&app, id, "PROCESSED").await;
        // The token is consumed at the processor and forgotten here.
        assert!(!app.payment_holds(token, 0).await);
        assert_eq!(payment_status(&app, id).await.unwrap().0, None);
    })
    .await;
}

#[tokio::test]
async fn failed_packaging_or_delivery_fails_the_order_and_cancels_the_payment() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        let cases: [(&str, &str); 2] = [
            ("PackagingFailed", "PACKAGING_FAILED"),
            ("DeliveryFailed", "DELIVERY_FAILED"),
        ];
        for (detail_type, status) in cases {
            let order = place_order(&app, &user(), &[(&shoe, 1)]).await;
            let id = order["orderId"].as_str().unwrap();
            wait_for_payment(&app, id, "HELD").await;
            let event = if detail_type == "PackagingFailed" {
                warehouse(detail_type, json!({"orderId": id}))
            } else {
                app.publish(&[packed(&order, &[(&shoe, 1)])]).await;
                wait_for_status(&app, id, "PACKAGED").await;
                delivery(detail_type, &order)
            };
            app.publish(&[event]).await;
            wait_for_status(&app, id, status).await;
            wait_for_payment(&app, id, "CANCELLED").await;
            assert!(
                !app.payment_holds(order["paymentToken"].as_str().unwrap(), 0)
                    .await
            );
        }
    })
    .await;
}

#[tokio::test]
async fn packing_fewer_items_lowers_the_total_and_the_authorised_amount() {
    on_each_storage(|app| async move {
        let (shoe, hat) = (product("Shoe", 1500), product("Hat", 700));
        let order = place_order(&app, &user(), &[(&shoe, 3), (&hat, 1)]).await;
        let id = order["orderId"].as_str().unwrap();
        let token = order["paymentToken"].as_str().unwrap();
        wait_for_payment(&app, id, "HELD").await;

        // One shoe out of three; no hat.
        app.publish(&[packed(&order, &[(&shoe, 1)])]).await;
        let packaged = wait_for_status(&app, id, "PACKAGED").await;
        assert_eq!(packaged["total"], 1500);
        assert_eq!(packaged["deliveryPrice"], 0);
        assert_eq!(packaged["products"].as_array().unwrap().len(), 1);
        assert_eq!(packaged["products"][0]["quantity"], 1);
        assert_eq!(packaged["products"][0]["name"], "Shoe");
        let modified = app
            .wait_for_event("OrderModified", |e| {
                e.detail_type == "OrderModified" && e.resources == [id]
            })
            .await;
        assert_eq!(
            modified.detail.value()["changed"],
            json!(["modifiedDate", "products", "status", "total"])
        );

        app.eventually("the authorised amount is lowered", || async {
            !app.payment_holds(token, 1501).await
        })
        .await;
        assert!(app.payment_holds(token, 1500).await);
        assert!(!app.payment_holds(token, 3 * 1500 + 700).await);
    })
    .await;
}

#[tokio::test]
async fn every_event_applied_twice_gives_the_state_of_once() {
    on_each_storage(|app| async move {
        let (shoe, hat) = (product("Shoe", 1500), product("Hat", 700));
        let order = place_order(&app, &user(), &[(&shoe, 2), (&hat, 1)]).await;
        let id = order["orderId"].as_str().unwrap();
        let created = app
            .wait_for_event("OrderCreated", |e| {
                e.detail_type == "OrderCreated" && e.resources == [id]
            })
            .await;
        // OrderCreated again: payment holds the token once.
        app.publish(&[created.clone(), created]).await;
        wait_for_payment(&app, id, "HELD").await;

        let package = packed(&order, &[(&shoe, 1)]);
        app.publish(&[package.clone(), package]).await;
        let packaged = wait_for_status(&app, id, "PACKAGED").await;
        assert_eq!(packaged["total"], 1500);

        let done = delivery("DeliveryCompleted", &order);
        app.publish(&[done.clone(), done.clone()]).await;
        wait_for_status(&app, id, "FULFILLED").await;
        wait_for_payment(&app, id, "PROCESSED").await;
        // And once more, later (the same event, and a copy under a new id
        // the inbox does not know): nothing moves. Payment is the consumer
        // of DeliveryCompleted and, its payment settled, records nothing;
        // so the barrier is a later DeliveryCompleted on the same rule, of
        // a second order whose payment is held: once that one is captured,
        // the rule is past the copies, and a second capture would show.
        let marker = place_order(&app, &user(), &[(&hat, 1)]).await;
        let marker_id = marker["orderId"].as_str().unwrap();
        wait_for_payment(&app, marker_id, "HELD").await;
        app.publish(&[done.clone(), TestApp::fresh_copy(&done)]).await;
        app.publish(&[delivery("DeliveryCompleted", &marker)]).await;
        wait_for_payment(&app, marker_id, "PROCESSED").await;

        assert_eq!(modifications_of(&app, id).len(), 2, "one OrderModified per event");
        let last = get_order(&app, id).await;
        assert_eq!(last["status"], "FULFILLED");
        assert_eq!(last["total"], 1500);
        assert_eq!(payment_status(&app, id).await.unwrap().1, "PROCESSED");
    })
    .await;
}

#[tokio::test]
async fn late_events_never_move_an_order_back() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 1500);
        let order = place_order(&app, &user(), &[(&shoe, 1)]).await;
        let id = order["orderId"].as_str().unwrap();
        app.publish(&[delivery("DeliveryCompleted", &order)]).await;
        wait_for_status(&app, id, "FULFILLED").await;
        let late = packed(&order, &[(&shoe, 1)]);
        app.publish(std::slice::from_ref(&late)).await;
        app.handled("orders", "orders.on-package-created", &late).await;
        assert_eq!(get_order(&app, id).await["status"], "FULFILLED");
    })
    .await;
}

#[tokio::test]
async fn payment_validate_asks_the_card_processor() {
    on_each_storage(|app| async move {
        let token = app.preauth(1000).await;
        let order_id = Uuid::new_v4().to_string();
        let cases = [
            (
                json!({"paymentToken": token, "total": 1000, "orderId": order_id}),
                true,
            ),
            (
                json!({"paymentToken": token, "total": 999, "orderId": order_id}),
                true,
            ),
            (
                json!({"paymentToken": token, "total": 1001, "orderId": order_id}),
                false,
            ),
            (
                json!({"paymentToken": Uuid::new_v4().to_string(), "total": 1, "orderId": order_id}),
                false,
            ),
        ];
        for (body, ok) in cases {
            let (status, answer) = app.post_as_service("/payment/backend/validate", &body).await;
            assert_eq!((status, answer), (StatusCode::OK, json!({ "ok": ok })), "{body}");
        }
        for (body, field) in [
            (
                json!({"paymentToken": token, "total": -1, "orderId": order_id}),
                "total",
            ),
            (
                json!({"paymentToken": token, "total": 1}),
                "missing field `orderId`",
            ),
            (
                json!({"paymentToken": token, "total": 1, "orderId": "x"}),
                "orderId",
            ),
        ] {
            let (status, answer) = app.post_as_service("/payment/backend/validate", &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(answer["message"].as_str().unwrap().starts_with(field), "{answer}");
        }
        let (status, _) = app
            .post(
                "/payment/backend/validate",
                &json!({"paymentToken": token, "total": 1, "orderId": order_id}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

/// A crash after payment-3p captured but before payment recorded it: the
/// redelivered event asks again for the same order and amount, the
/// processor answers ok without capturing twice, and the payment is
/// recorded PROCESSED.
#[tokio::test]
async fn a_settlement_redelivered_after_a_crash_captures_once() {
    on_each_storage(|app| async move {
        let shoe = product("Shoe", 900);
        let order = place_order(&app, &user(), &[(&shoe, 1)]).await;
        let order_id = order["orderId"].as_str().unwrap();
        let token = order["paymentToken"].as_str().unwrap();
        wait_for_payment(&app, order_id, "HELD").await;

        // The first attempt reached the processor, then the process died.
        let (_, first) = app
            .post_as_service(
                "/payment-3p/processPayment",
                &json!({"paymentToken": token, "orderId": order_id, "amount": 900}),
            )
            .await;
        assert_eq!(first["ok"], true);

        app.publish(&[packed(&order, &[(&shoe, 1)])]).await;
        wait_for_status(&app, order_id, "PACKAGED").await;
        app.publish(&[delivery("DeliveryCompleted", &order)]).await;
        wait_for_payment(&app, order_id, "PROCESSED").await;
        wait_for_status(&app, order_id, "FULFILLED").await;
        let state = app.processor_status(token).await;
        assert_eq!(state["capturedAmount"], 900, "{state}");
        assert_eq!(state["orderId"], order_id);
    })
    .await;
}
