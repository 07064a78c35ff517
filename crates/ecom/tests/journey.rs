//! The whole journey of SPEC "The whole journey", over the REST routes of
//! every service in one process: an admin stocks the catalogue, a shopper
//! signs up and orders, warehouse staff pack, delivery staff deliver, and
//! the payment is settled at the card processor. Plus the failure paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

/// A user with `groups`, created as `ecom users add` does, signed in; the ID token.
async fn staff(app: &TestApp, groups: &[&str]) -> String {
    let email = format!("{}@staff.example", Uuid::new_v4().simple());
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    ecom::cli::users::add(&app.storage_target(), &email, PASSWORD, &groups)
        .await
        .unwrap();
    sign_in(app, &email).await
}

async fn sign_in(app: &TestApp, email: &str) -> String {
    let (status, body) = app
        .post("/users/sign-in", &json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["idToken"].as_str().unwrap().to_owned()
}

/// 1. The admin stocks the catalogue: the stored products.
async fn stock_catalogue(app: &TestApp, admin: &str) -> Vec<Value> {
    let mut stored = Vec::new();
    for (name, price, weight) in [("Boots", 4900, 1200), ("Socks", 500, 100)] {
        let (status, body) = app
            .post_with_token(
                "/products/admin/products",
                admin,
                &json!({"name": name, "price": price, "category": "clothes",
                        "package": {"width": 300, "length": 200, "height": 120, "weight": weight}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        stored.push(body);
    }
    stored
}

/// 2. A shopper signs up and signs in: (userId, ID token).
async fn shopper(app: &TestApp) -> (String, String) {
    let email = format!("{}@shopper.example", Uuid::new_v4().simple());
    let (status, body) = app
        .post("/users/sign-up", &json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let user_id = body["userId"].as_str().unwrap().to_owned();
    (user_id, sign_in(app, &email).await)
}

fn address() -> Value {
    json!({"name": "Ada Lovelace", "streetAddress": "Hauptstraße 1", "postCode": "10115",
           "city": "Berlin", "country": "DE", "phoneNumber": "+49 30 1234"})
}

/// Steps 3 to 5: pricing, pre-authorisation, createOrder through the orders
/// backend route with a service credential, as the gateway does. The order.
async fn order(app: &TestApp, user_id: &str, lines: &[(&Value, i64)]) -> Value {
    let products: Vec<Value> = lines
        .iter()
        .map(|(p, q)| {
            let mut line = (*p).clone();
            line["quantity"] = json!(q);
            line
        })
        .collect();
    let (status, pricing) = app
        .post_as_service(
            "/delivery-pricing/backend/pricing",
            &json!({"products": products, "address": address()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pricing}");
    let delivery_price = pricing["pricing"].as_i64().unwrap();
    assert_eq!(delivery_price, 1000, "one box to Germany");
    let total: i64 = lines
        .iter()
        .map(|(p, q)| p["price"].as_i64().unwrap() * q)
        .sum::<i64>()
        + delivery_price;
    let token = app.preauth(total).await;
    let (status, body) = app
        .post_as_service(
            "/orders/backend/orders",
            &json!({"userId": user_id, "order": {
                "products": products, "address": address(),
                "deliveryPrice": delivery_price, "paymentToken": token}}),
        )
        .await;
    assert_eq!(
        (status, &body["success"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let order = body["order"].clone();
    assert_eq!(order["status"], "NEW");
    assert_eq!(order["total"], total);
    order
}

async fn order_status(app: &TestApp, order_id: &str) -> Value {
    let (status, body) = app
        .get_with_token(
            &format!("/orders/backend/{order_id}"),
            &app.service_token("tests"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["order"].clone()
}

async fn wait_for_order(app: &TestApp, order_id: &str, status: &str) -> Value {
    app.eventually(&format!("order {order_id} becomes {status}"), || async {
        order_status(app, order_id).await["status"] == status
    })
    .await;
    order_status(app, order_id).await
}

/// 6a. The warehouse sees the packaging request and starts it.
async fn start_packaging(app: &TestApp, warehouse: &str, order_id: &str) {
    app.eventually("the packaging request appears", || async {
        let (status, body) = app
            .get_with_token("/warehouse/packaging-requests?limit=100", warehouse)
            .await;
        status == StatusCode::OK
            && body["packagingRequestIds"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == order_id))
    })
    .await;
    let (status, body) = app
        .post_with_token(
            "/warehouse/startPackaging",
            warehouse,
            &json!({"orderId": order_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn warehouse_call(app: &TestApp, warehouse: &str, op: &str, body: Value) {
    let (status, answer) = app
        .post_with_token(&format!("/warehouse/{op}"), warehouse, &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{op}: {answer}");
}

/// 7a. The delivery appears with the order's address and is started.
async fn start_delivery(app: &TestApp, courier: &str, order: &Value) {
    let order_id = order["orderId"].as_str().unwrap();
    let path = format!("/delivery/deliveries/{order_id}");
    app.eventually("the delivery appears", || async {
        app.get_with_token(&path, courier).await.0 == StatusCode::OK
    })
    .await;
    let (_, delivery) = app.get_with_token(&path, courier).await;
    assert_eq!(delivery["address"], order["address"]);
    assert_eq!(delivery["status"], "NEW");
    let (status, body) = app
        .post_with_token("/delivery/startDelivery", courier, &json!({"orderId": order_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn wait_until_consumed(app: &TestApp, token: &str) {
    app.eventually("the payment token is consumed", || async {
        !app.payment_holds(token, 0).await
    })
    .await;
}

/// Waits until the card processor has cancelled the payment of `token`,
/// and checks nothing of it was captured: a consumed token alone would
/// also be a processed (captured) payment.
async fn wait_until_cancelled(app: &TestApp, token: &str) {
    app.eventually("the card processor cancels the payment", || async {
        app.processor_status(token).await["status"] == "CANCELLED"
    })
    .await;
    let state = app.processor_status(token).await;
    assert_eq!(state["capturedAmount"], Value::Null, "nothing captured: {state}");
    assert!(!app.payment_holds(token, 0).await, "the token holds nothing");
}

#[tokio::test]
async fn a_shopper_orders_and_the_order_is_packed_delivered_and_paid() {
    on_each_storage(|app| async move {
        let admin = staff(&app, &["admin"]).await;
        let products = stock_catalogue(&app, &admin).await;
        let (user_id, _shopper_token) = shopper(&app).await;
        let order = order(&app, &user_id, &[(&products[0], 1), (&products[1], 3)]).await;
        let order_id = order["orderId"].as_str().unwrap();
        let token = order["paymentToken"].as_str().unwrap();

        let warehouse = staff(&app, &["warehouse"]).await;
        start_packaging(&app, &warehouse, order_id).await;
        let (status, request) = app
            .get_with_token(&format!("/warehouse/packaging-requests/{order_id}"), &warehouse)
            .await;
        assert_eq!(status, StatusCode::OK, "{request}");
        assert_eq!(request["status"], "IN_PROGRESS");
        warehouse_call(
            &app,
            &warehouse,
            "completePackaging",
            json!({"orderId": order_id}),
        )
        .await;
        let packaged = wait_for_order(&app, order_id, "PACKAGED").await;
        assert_eq!(packaged["total"], order["total"]);

        let courier = staff(&app, &["delivery"]).await;
        start_delivery(&app, &courier, &order).await;
        let (status, body) = app
            .post_with_token(
                "/delivery/completeDelivery",
                &courier,
                &json!({"orderId": order_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_for_order(&app, order_id, "FULFILLED").await;
        wait_until_consumed(&app, token).await;

        // The shopper's order list shows it.
        let (_, page) = app
            .get_with_token(
                &format!("/orders/backend/users/{user_id}/orders"),
                &app.service_token("tests"),
            )
            .await;
        assert_eq!(page["orders"][0]["orderId"], order_id);
        assert_eq!(page["orders"][0]["status"], "FULFILLED");

        // Every event of the journey matches its schema in the catalogue.
        let catalogue = ecom_contracts::asyncapi();
        let events = app.events();
        for event in &events {
            ecom_contracts::check_detail(
                &catalogue,
                &event.source,
                &event.detail_type,
                &event.detail.value(),
            )
            .unwrap_or_else(|e| panic!("{} {}: {e}", event.detail_type, event.detail));
        }
        for seen in [
            "OrderCreated",
            "PackageCreated",
            "DeliveryStarted",
            "DeliveryCompleted",
            "PaymentProcessed",
        ] {
            assert!(
                events.iter().any(|e| e.detail_type == seen),
                "no {seen} in the journey"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn packing_nothing_fails_the_order_and_cancels_the_payment() {
    on_each_storage(|app| async move {
        let admin = staff(&app, &["admin"]).await;
        let products = stock_catalogue(&app, &admin).await;
        let (user_id, _) = shopper(&app).await;
        let order = order(&app, &user_id, &[(&products[0], 1), (&products[1], 2)]).await;
        let order_id = order["orderId"].as_str().unwrap();

        let warehouse = staff(&app, &["warehouse"]).await;
        start_packaging(&app, &warehouse, order_id).await;
        for product in &products {
            warehouse_call(
                &app,
                &warehouse,
                "updatePackagingProduct",
                json!({"orderId": order_id, "productId": product["productId"], "quantity": 0}),
            )
            .await;
        }
        warehouse_call(
            &app,
            &warehouse,
            "completePackaging",
            json!({"orderId": order_id}),
        )
        .await;
        wait_for_order(&app, order_id, "PACKAGING_FAILED").await;
        wait_until_cancelled(&app, order["paymentToken"].as_str().unwrap()).await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_delivery_fails_the_order_and_cancels_the_payment() {
    on_each_storage(|app| async move {
        let admin = staff(&app, &["admin"]).await;
        let products = stock_catalogue(&app, &admin).await;
        let (user_id, _) = shopper(&app).await;
        let order = order(&app, &user_id, &[(&products[0], 1)]).await;
        let order_id = order["orderId"].as_str().unwrap();

        let warehouse = staff(&app, &["warehouse"]).await;
        start_packaging(&app, &warehouse, order_id).await;
        warehouse_call(
            &app,
            &warehouse,
            "completePackaging",
            json!({"orderId": order_id}),
        )
        .await;
        wait_for_order(&app, order_id, "PACKAGED").await;

        let courier = staff(&app, &["delivery"]).await;
        start_delivery(&app, &courier, &order).await;
        let (status, body) = app
            .post_with_token("/delivery/failDelivery", &courier, &json!({"orderId": order_id}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_for_order(&app, order_id, "DELIVERY_FAILED").await;
        wait_until_cancelled(&app, order["paymentToken"].as_str().unwrap()).await;
    })
    .await;
}

#[tokio::test]
async fn packing_fewer_items_lowers_the_total_and_the_authorised_amount() {
    on_each_storage(|app| async move {
        let admin = staff(&app, &["admin"]).await;
        let products = stock_catalogue(&app, &admin).await;
        let (user_id, _) = shopper(&app).await;
        // Boots 4900 + 3 × socks 500 + delivery 1000.
        let order = order(&app, &user_id, &[(&products[0], 1), (&products[1], 3)]).await;
        let order_id = order["orderId"].as_str().unwrap();
        let token = order["paymentToken"].as_str().unwrap();
        assert_eq!(order["total"], 4900 + 1500 + 1000);

        let warehouse = staff(&app, &["warehouse"]).await;
        start_packaging(&app, &warehouse, order_id).await;
        warehouse_call(
            &app,
            &warehouse,
            "updatePackagingProduct",
            json!({"orderId": order_id, "productId": products[1]["productId"], "quantity": 1}),
        )
        .await;
        warehouse_call(
            &app,
            &warehouse,
            "completePackaging",
            json!({"orderId": order_id}),
        )
        .await;
        let packaged = wait_for_order(&app, order_id, "PACKAGED").await;
        assert_eq!(packaged["total"], 4900 + 500 + 1000);
        assert_eq!(packaged["deliveryPrice"], 1000);
        assert_eq!(packaged["products"][1]["quantity"], 1);

        app.eventually("the authorised amount is lowered", || async {
            !app.payment_holds(token, 4900 + 500 + 1000 + 1).await
        })
        .await;
        assert!(app.payment_holds(token, 4900 + 500 + 1000).await);

        // Delivered: the lowered amount is charged.
        let courier = staff(&app, &["delivery"]).await;
        start_delivery(&app, &courier, &packaged).await;
        let (status, _) = app
            .post_with_token(
                "/delivery/completeDelivery",
                &courier,
                &json!({"orderId": order_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        wait_for_order(&app, order_id, "FULFILLED").await;
        wait_until_consumed(&app, token).await;
    })
    .await;
}
