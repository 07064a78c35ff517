//! Issue 15, after the order: a shopper cancels (payment cancelled at the
//! processor, stock released, exactly one of cancel and startPackaging
//! wins), an admin refunds (wholly or in part, never twice), an order
//! keeps its history and its delivery's tracking id, and a subscription
//! follows an order live over `graphql-transport-ws`, in one process and
//! with the gateway in another. Over real HTTP, on both backend pairs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, Storage, TestApp};
use futures::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// The staff and a shopper of one test.
struct Shop {
    app: TestApp,
    admin: String,
    warehouse: String,
    delivery: String,
}

impl Shop {
    async fn open(app: TestApp) -> Shop {
        Shop {
            admin: app.user_token(&["admin"]).await,
            warehouse: app.user_token(&["warehouse"]).await,
            delivery: app.user_token(&["delivery"]).await,
            app,
        }
    }

    /// A catalogue product of `price` (with `stock` units on hand when
    /// given), as an order line of one.
    async fn product(&self, price: i64, stock: Option<i64>) -> Value {
        let package = json!({"width": 100, "length": 100, "height": 100, "weight": 500});
        let (status, body) = self
            .app
            .post_with_token(
                "/products/admin/products",
                &self.admin,
                &json!({"name": "Teapot", "price": price, "package": package}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["productId"].as_str().unwrap().to_owned();
        if let Some(on_hand) = stock {
            let (status, body) = self
                .app
                .put_with_token(
                    &format!("/warehouse/stock/{id}"),
                    &self.admin,
                    &json!({"onHand": on_hand}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        json!({"productId": id, "name": "Teapot", "price": price, "package": package, "quantity": 1})
    }

    /// A GraphQL call with `token`.
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        gql_at(&self.app, &self.app.base, token, query, variables, None).await
    }

    /// `shopper` orders `quantity` of `line` (delivered in Sweden, free);
    /// (the order id, its payment token).
    async fn order(&self, shopper: &str, line: &Value, quantity: i64) -> (String, String) {
        let mut line = line.clone();
        line["quantity"] = json!(quantity);
        let total = line["price"].as_i64().unwrap() * quantity;
        let token = self.app.preauth(total).await;
        let body = self
            .gql(
                Some(shopper),
                "mutation($order: CreateOrderRequest!) { createOrder(order: $order) { success errors order { orderId } } }",
                json!({"order": {"products": [line], "address": address(), "deliveryPrice": 0, "paymentToken": token}}),
            )
            .await;
        assert_eq!(body["data"]["createOrder"]["success"], true, "{body}");
        let id = body["data"]["createOrder"]["order"]["orderId"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, token)
    }

    /// The order as orders serves it to services.
    async fn stored(&self, order_id: &str) -> Value {
        let (status, body) = self
            .app
            .get_with_token(
                &format!("/orders/backend/{order_id}"),
                &self.app.service_token("tests"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["order"].clone()
    }

    async fn wait_for_status(&self, order_id: &str, status: &str) -> Value {
        self.app
            .eventually(&format!("order {order_id} becomes {status}"), || async {
                self.stored(order_id).await["status"] == status
            })
            .await;
        self.stored(order_id).await
    }

    /// The order's packaging request as the warehouse staff see it.
    async fn packaging(&self, order_id: &str) -> (StatusCode, Value) {
        self.app
            .get_with_token(
                &format!("/warehouse/packaging-requests/{order_id}"),
                &self.warehouse,
            )
            .await
    }

    async fn wait_for_packaging(&self, order_id: &str) {
        self.app
            .eventually("the packaging request", || async {
                self.packaging(order_id).await.0 == StatusCode::OK
            })
            .await;
    }

    async fn staff(&self, token: &str, path: &str, order_id: &str) -> (StatusCode, Value) {
        self.app
            .post_with_token(path, token, &json!({"orderId": order_id}))
            .await
    }

    /// Packs the whole order, and waits for it to be PACKAGED.
    async fn pack(&self, order_id: &str) {
        self.wait_for_packaging(order_id).await;
        for path in ["/warehouse/startPackaging", "/warehouse/completePackaging"] {
            let (status, body) = self.staff(&self.warehouse, path, order_id).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        self.wait_for_status(order_id, "PACKAGED").await;
    }

    /// Starts and completes the order's delivery, and waits for FULFILLED.
    async fn deliver(&self, order_id: &str) {
        self.app
            .eventually("the delivery", || async {
                self.app
                    .get_with_token(&format!("/delivery/deliveries/{order_id}"), &self.delivery)
                    .await
                    .0
                    == StatusCode::OK
            })
            .await;
        for path in ["/delivery/startDelivery", "/delivery/completeDelivery"] {
            let (status, body) = self.staff(&self.delivery, path, order_id).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        self.wait_for_status(order_id, "FULFILLED").await;
    }

    async fn stock(&self, product_id: &str) -> Value {
        let (status, body) = self
            .app
            .get_with_token(&format!("/warehouse/stock/{product_id}"), &self.admin)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn cancel(&self, shopper: &str, order_id: &str) -> Value {
        self.gql(
            Some(shopper),
            "mutation($id: ID!) { cancelOrder(orderId: $id) { success } }",
            json!({"id": order_id}),
        )
        .await
    }

    async fn refund(&self, token: &str, order_id: &str, amount: i64, key: Option<&str>) -> Value {
        gql_at(
            &self.app,
            &self.app.base,
            Some(token),
            "mutation($id: ID!, $amount: Int!) { refundOrder(orderId: $id, amount: $amount) { success } }",
            json!({"id": order_id, "amount": amount}),
            key,
        )
        .await
    }
}

/// An address in Sweden: delivery there costs 0.
fn address() -> Value {
    json!({"name": "Ada", "streetAddress": "Storgatan 1", "city": "Umeå", "country": "SE", "phoneNumber": "+46 1"})
}

async fn gql_at(
    app: &TestApp,
    base: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
    idempotency_key: Option<&str>,
) -> Value {
    let mut req = app
        .http
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(key) = idempotency_key {
        req = req.header("Idempotency-Key", key);
    }
    let (status, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// The code of a GraphQL answer's first error.
fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// The statuses of an order's history, oldest first.
fn history(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

mod cancellation {
    use super::*;

    #[tokio::test]
    async fn a_shopper_cancels_a_new_order_its_payment_is_cancelled_and_its_stock_released() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(700, Some(5)).await;
            let product_id = line["productId"].as_str().unwrap();
            let (order_id, token) = shop.order(&shopper, &line, 2).await;
            assert_eq!(shop.stock(product_id).await["reserved"], 2);

            let body = shop.cancel(&shopper, &order_id).await;
            assert_eq!(body, json!({"data": {"cancelOrder": {"success": true}}}));
            let order = shop.stored(&order_id).await;
            assert_eq!(order["status"], "CANCELLED");
            assert_eq!(history(&order), ["NEW", "CANCELLED"]);

            // The processor shows the payment cancelled, for this order.
            shop.app
                .eventually("the payment cancelled at payment-3p", || async {
                    shop.app.processor_status(&token).await["status"] == "CANCELLED"
                })
                .await;
            assert_eq!(
                shop.app.processor_status(&token).await["orderId"],
                order_id.as_str()
            );
            let stock = shop.stock(product_id).await;
            assert_eq!(
                (stock["reserved"].clone(), stock["available"].clone()),
                (json!(0), json!(5))
            );
            let (status, request) = shop.packaging(&order_id).await;
            assert_eq!(status, StatusCode::OK, "{request}");
            assert_eq!(request["status"], "CANCELLED");
            let (status, body) = shop
                .staff(&shop.warehouse, "/warehouse/startPackaging", &order_id)
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            shop.app
                .wait_for_event("OrderCancelled", |e| {
                    e.detail_type == "OrderCancelled" && e.detail == json!({"orderId": order_id})
                })
                .await;

            // Again: the same answer, nothing more happens.
            let body = shop.cancel(&shopper, &order_id).await;
            assert_eq!(body, json!({"data": {"cancelOrder": {"success": true}}}));
            assert_eq!(history(&shop.stored(&order_id).await), ["NEW", "CANCELLED"]);
        })
        .await;
    }

    #[tokio::test]
    async fn cancelling_someone_elses_order_or_a_packed_one_is_refused_and_changes_nothing() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let (shopper, other) = (shop.app.user_token(&[]).await, shop.app.user_token(&[]).await);
            let line = shop.product(400, Some(3)).await;
            let product_id = line["productId"].as_str().unwrap();
            let (order_id, token) = shop.order(&shopper, &line, 1).await;

            // Someone else's order reads as absent; anonymous callers are refused.
            let body = shop.cancel(&other, &order_id).await;
            assert_eq!(body["data"]["cancelOrder"]["success"], false, "{body}");
            assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
            let unknown = shop.cancel(&shopper, &Uuid::new_v4().to_string()).await;
            assert_eq!(code(&unknown), Some("NOT_FOUND"), "{unknown}");
            assert_eq!(
                body["errors"][0]["message"]
                    .as_str()
                    .map(|m| m.replace(&order_id, "X")),
                unknown["errors"][0]["message"]
                    .as_str()
                    .map(|m| m.replace(unknown_id(&unknown).as_str(), "X")),
                "another's order and an absent one read alike"
            );
            let body = shop
                .gql(
                    None,
                    "mutation($id: ID!) { cancelOrder(orderId: $id) { success } }",
                    json!({"id": order_id}),
                )
                .await;
            assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{body}");

            // Once packaging started: CONFLICT, and nothing moved.
            shop.wait_for_packaging(&order_id).await;
            let (status, _) = shop
                .staff(&shop.warehouse, "/warehouse/startPackaging", &order_id)
                .await;
            assert_eq!(status, StatusCode::OK);
            let body = shop.cancel(&shopper, &order_id).await;
            assert_eq!(body["data"]["cancelOrder"]["success"], false, "{body}");
            assert_eq!(code(&body), Some("CONFLICT"), "{body}");
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("packaging has started"),
                "{body}"
            );
            let (status, body) = shop
                .app
                .post_with_token(
                    &format!("/orders/admin/orders/{order_id}/cancel"),
                    &shop.admin,
                    &json!({}),
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            let order = shop.stored(&order_id).await;
            assert_eq!(order["status"], "NEW");
            assert_eq!(history(&order), ["NEW"]);
            assert_eq!(shop.app.processor_status(&token).await["status"], "AUTHORISED");
            assert_eq!(shop.stock(product_id).await["reserved"], 1);
            assert_eq!(shop.packaging(&order_id).await.1["status"], "IN_PROGRESS");

            // Packed: the order has moved on.
            let (status, _) = shop
                .staff(&shop.warehouse, "/warehouse/completePackaging", &order_id)
                .await;
            assert_eq!(status, StatusCode::OK);
            shop.wait_for_status(&order_id, "PACKAGED").await;
            let body = shop.cancel(&shopper, &order_id).await;
            assert_eq!(code(&body), Some("CONFLICT"), "{body}");
            assert_eq!(shop.stored(&order_id).await["status"], "PACKAGED");
        })
        .await;
    }

    /// The id an error message names (the unknown order's).
    fn unknown_id(body: &Value) -> String {
        let message = body["errors"][0]["message"].as_str().unwrap();
        message.split('\'').nth(1).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn an_admin_cancels_any_new_order_through_the_staff_route() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(300, None).await;
            let (order_id, token) = shop.order(&shopper, &line, 1).await;
            let path = format!("/orders/admin/orders/{order_id}/cancel");
            let (status, body) = shop.app.post_with_token(&path, &shopper, &json!({})).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            let (status, body) = shop.app.post_with_token(&path, &shop.admin, &json!({})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["success"], true);
            assert_eq!(body["order"]["status"], "CANCELLED");
            shop.app
                .eventually("the payment cancelled at payment-3p", || async {
                    shop.app.processor_status(&token).await["status"] == "CANCELLED"
                })
                .await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_cancellation_racing_start_packaging_ends_in_exactly_one_of_them() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(100, Some(1000)).await;
            let product_id = line["productId"].as_str().unwrap().to_owned();
            let (mut cancels, mut starts) = (0, 0);
            for round in 0..20 {
                let (order_id, token) = shop.order(&shopper, &line, 1).await;
                shop.wait_for_packaging(&order_id).await;
                let cancel = shop.cancel(&shopper, &order_id);
                let start = shop.staff(&shop.warehouse, "/warehouse/startPackaging", &order_id);
                // Both at once, each sent first in every other round.
                let (cancel, (start, start_body)) = if round % 2 == 0 {
                    tokio::join!(cancel, start)
                } else {
                    let (start, cancel) = tokio::join!(start, cancel);
                    (cancel, start)
                };
                let cancelled = cancel["data"]["cancelOrder"]["success"] == true;
                let started = start == StatusCode::OK;
                assert!(
                    cancelled != started,
                    "round {round}: cancel {cancel}, start {start} {start_body}"
                );
                let order = shop.stored(&order_id).await;
                let request = shop.packaging(&order_id).await.1;
                if cancelled {
                    cancels += 1;
                    assert_eq!(start, StatusCode::CONFLICT, "round {round}: {start_body}");
                    assert_eq!(order["status"], "CANCELLED", "round {round}");
                    assert_eq!(request["status"], "CANCELLED", "round {round}");
                    shop.app
                        .eventually("the payment cancelled", || async {
                            shop.app.processor_status(&token).await["status"] == "CANCELLED"
                        })
                        .await;
                } else {
                    starts += 1;
                    assert_eq!(code(&cancel), Some("CONFLICT"), "round {round}: {cancel}");
                    assert_eq!(order["status"], "NEW", "round {round}");
                    assert_eq!(request["status"], "IN_PROGRESS", "round {round}");
                    assert_eq!(shop.app.processor_status(&token).await["status"], "AUTHORISED");
                }
            }
            eprintln!("cancellations won {cancels} rounds, startPackaging {starts}");
            // Every cancelled order gave its unit back; each started one holds its unit.
            let stock = shop.stock(&product_id).await;
            assert_eq!(stock["reserved"], starts, "{stock}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_cancellation_that_arrives_before_the_order_created_event_leaves_a_tombstone() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let order_id = Uuid::now_v7();
            let (status, body) = shop
                .app
                .post_as_service("/warehouse/backend/cancellations", &json!({"orderId": order_id}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            // The order's OrderCreated, late.
            let product = Uuid::new_v4();
            let created = ecom_platform::Event::new(
                ecom_platform::event::sources::ORDERS,
                "OrderCreated",
                vec![order_id.to_string()],
                common::order_json(
                    order_id,
                    json!({"modifiedDate": "2030-01-01T00:00:00Z",
                           "products": [{"productId": product, "name": "Lamp", "price": 1500, "quantity": 1,
                                         "package": {"width": 1, "length": 1, "height": 1, "weight": 1}}]}),
                ),
            );
            shop.app.publish(std::slice::from_ref(&created)).await;
            shop.app
                .handled("warehouse", "warehouse.on-order-created", &created)
                .await;
            let (status, request) = shop.packaging(&order_id.to_string()).await;
            assert_eq!(status, StatusCode::OK, "{request}");
            assert_eq!(request["status"], "CANCELLED", "{request}");
            let (status, _) = shop
                .staff(
                    &shop.warehouse,
                    "/warehouse/startPackaging",
                    &order_id.to_string(),
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT);
        })
        .await;
    }

    #[tokio::test]
    async fn a_cancellation_retried_after_the_warehouse_said_yes_converges() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(250, None).await;
            let (order_id, token) = shop.order(&shopper, &line, 1).await;
            shop.wait_for_packaging(&order_id).await;
            // orders asked the warehouse, which said yes, then orders crashed
            // before writing: the order is still NEW.
            let (status, body) = shop
                .app
                .post_as_service("/warehouse/backend/cancellations", &json!({"orderId": order_id}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(shop.stored(&order_id).await["status"], "NEW");
            // The shopper's retry completes it.
            let body = shop.cancel(&shopper, &order_id).await;
            assert_eq!(body["data"]["cancelOrder"]["success"], true, "{body}");
            assert_eq!(shop.stored(&order_id).await["status"], "CANCELLED");
            shop.app
                .eventually("the payment cancelled", || async {
                    shop.app.processor_status(&token).await["status"] == "CANCELLED"
                })
                .await;
        })
        .await;
    }
}

mod refunds {
    use super::*;

    const RULE: &str = "orders.on-payment-refunded";

    async fn delivered_to_rule(app: &TestApp) -> u64 {
        app.metric(&format!("ecom_bus_delivered_total{{rule=\"{RULE}\"}}"))
            .await
    }

    /// The only test of this binary whose orders get refunded, so that the
    /// rule's delivery count moves only with its own events.
    #[tokio::test]
    async fn partial_refunds_up_to_the_capture_succeed_once_each_and_one_more_is_refused() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let delivered_before = delivered_to_rule(&shop.app).await;
            let refunds_before = shop.app.metric("ecom_payments_refunds_total").await;
            let amount_before = shop.app.metric("ecom_payments_amount_refunded_total").await;
            let line = shop.product(1000, None).await;
            let (order_id, token) = shop.order(&shopper, &line, 3).await;

            // Not fulfilled yet: refused for its state.
            let body = shop.refund(&shop.admin, &order_id, 100, None).await;
            assert_eq!(body["data"]["refundOrder"]["success"], false, "{body}");
            assert_eq!(code(&body), Some("CONFLICT"), "{body}");

            shop.pack(&order_id).await;
            shop.deliver(&order_id).await;
            assert_eq!(shop.app.processor_status(&token).await["capturedAmount"], 3000);

            // Who and what is refused, with nothing refunded.
            let body = shop.refund(&shopper, &order_id, 100, None).await;
            assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
            let body = shop.refund(&shop.warehouse, &order_id, 100, None).await;
            assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
            for amount in [0, -5] {
                let body = shop.refund(&shop.admin, &order_id, amount, None).await;
                assert_eq!(body["data"]["refundOrder"]["success"], false, "{body}");
                assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{amount}: {body}");
            }
            let body = shop.refund(&shop.admin, &order_id, 3001, None).await;
            assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
            let body = shop
                .refund(&shop.admin, &Uuid::new_v4().to_string(), 1, None)
                .await;
            assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
            assert_eq!(shop.app.processor_status(&token).await["refundedAmount"], 0);

            // 500 with a key, twice: refunded once.
            for _ in 0..2 {
                let body = shop.refund(&shop.admin, &order_id, 500, Some("refund-1")).await;
                assert_eq!(body, json!({"data": {"refundOrder": {"success": true}}}));
            }
            assert_eq!(shop.app.processor_status(&token).await["refundedAmount"], 500);
            let body = shop.refund(&shop.admin, &order_id, 1000, None).await;
            assert_eq!(body["data"]["refundOrder"]["success"], true, "{body}");
            // What is left, exactly.
            let body = shop.refund(&shop.admin, &order_id, 1501, None).await;
            assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("at most 1500"),
                "{body}"
            );
            let body = shop.refund(&shop.admin, &order_id, 1500, None).await;
            assert_eq!(body["data"]["refundOrder"]["success"], true, "{body}");
            let body = shop.refund(&shop.admin, &order_id, 1, None).await;
            assert_eq!(body["data"]["refundOrder"]["success"], false, "{body}");
            assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");

            let processor = shop.app.processor_status(&token).await;
            assert_eq!(processor["refundedAmount"], 3000, "{processor}");
            assert_eq!(processor["status"], "PROCESSED");
            shop.app
                .eventually("the order shows what was refunded", || async {
                    shop.stored(&order_id).await["refunded"] == 3000
                })
                .await;
            let db = shop.app.open_db("payment").await;
            let status: String =
                ecom_storage::sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
                    .bind(&order_id)
                    .fetch_one(db.reader())
                    .await
                    .unwrap();
            db.close().await;
            assert_eq!(status, "REFUNDED");
            let mut events: Vec<i64> = shop
                .app
                .events()
                .into_iter()
                .filter(|e| e.detail_type == "PaymentRefunded" && e.resources == [order_id.clone()])
                .map(|e| e.detail.value()["amount"].as_i64().unwrap())
                .collect();
            events.sort();
            assert_eq!(events, [500, 1000, 1500]);
            assert!(shop.app.metric("ecom_payments_refunds_total").await >= refunds_before + 3);
            assert!(shop.app.metric("ecom_payments_amount_refunded_total").await >= amount_before + 3000);
            // GraphQL shows it to the shopper.
            let body = shop
                .gql(
                    Some(&shopper),
                    "query($id: ID!) { getOrder(orderId: $id) { refunded } }",
                    json!({"id": order_id}),
                )
                .await;
            assert_eq!(body, json!({"data": {"getOrder": {"refunded": 3000}}}));

            // Replayed refund events are counted once.
            shop.app
                .eventually("the three refunds handled", || async {
                    delivered_to_rule(&shop.app).await == delivered_before + 3
                })
                .await;
            let from = ecom_model::Timestamp::from_unix_micros(
                ecom_model::Timestamp::now().unix_micros() - 120_000_000,
            )
            .unwrap();
            let to = ecom_model::Timestamp::from_unix_micros(
                ecom_model::Timestamp::now().unix_micros() + 1_000_000,
            )
            .unwrap();
            let replayed = shop.app.bus.replay(RULE, from, to).await.unwrap();
            assert!(replayed >= 3, "{replayed}");
            shop.app
                .eventually("the replayed events handled", || async {
                    delivered_to_rule(&shop.app).await >= delivered_before + 3 + replayed
                })
                .await;
            assert_eq!(shop.stored(&order_id).await["refunded"], 3000);
        })
        .await;
    }
}

mod tracking {
    use super::*;

    #[tokio::test]
    async fn an_order_keeps_its_history_and_its_tracking_id_through_the_whole_journey() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(900, None).await;
            let (order_id, _) = shop.order(&shopper, &line, 1).await;
            let query = "query($id: ID!) { getOrder(orderId: $id) { status trackingId refunded history { status at } } }";
            let body = shop.gql(Some(&shopper), query, json!({"id": order_id})).await;
            let order = &body["data"]["getOrder"];
            assert_eq!(order["trackingId"], Value::Null);
            assert_eq!(order["refunded"], 0);
            assert_eq!(history(order), ["NEW"]);

            shop.pack(&order_id).await;
            assert_eq!(shop.stored(&order_id).await["trackingId"], Value::Null);
            shop.app
                .eventually("the delivery", || async {
                    shop.app
                        .get_with_token(&format!("/delivery/deliveries/{order_id}"), &shop.delivery)
                        .await
                        .0
                        == StatusCode::OK
                })
                .await;
            let (status, _) = shop.staff(&shop.delivery, "/delivery/startDelivery", &order_id).await;
            assert_eq!(status, StatusCode::OK);
            let started = shop
                .app
                .wait_for_event("DeliveryStarted", |e| {
                    e.detail_type == "DeliveryStarted" && e.resources == [order_id.clone()]
                })
                .await;
            let tracking = started.detail.value()["trackingId"].as_str().unwrap().to_owned();
            assert_eq!(tracking.len(), 12, "{tracking}");
            assert!(tracking.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{tracking}");
            let (_, delivery) = shop
                .app
                .get_with_token(&format!("/delivery/deliveries/{order_id}"), &shop.delivery)
                .await;
            assert_eq!(delivery["trackingId"], tracking.as_str());
            shop.app
                .eventually("the order shows its tracking id", || async {
                    shop.stored(&order_id).await["trackingId"] == tracking.as_str()
                })
                .await;
            let (status, _) = shop.staff(&shop.delivery, "/delivery/completeDelivery", &order_id).await;
            assert_eq!(status, StatusCode::OK);
            shop.wait_for_status(&order_id, "FULFILLED").await;

            let body = shop.gql(Some(&shopper), query, json!({"id": order_id})).await;
            let order = &body["data"]["getOrder"];
            assert_eq!(order["trackingId"], tracking.as_str());
            assert_eq!(history(order), ["NEW", "PACKAGED", "FULFILLED"]);
            let times: Vec<&str> = order["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["at"].as_str().unwrap())
                .collect();
            assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
            // The list shows the same history.
            let body = shop
                .gql(Some(&shopper), "{ getOrders { orders { orderId history { status } } } }", json!({}))
                .await;
            let listed = &body["data"]["getOrders"]["orders"][0];
            assert_eq!(listed["orderId"], order_id.as_str());
            assert_eq!(history(listed), ["NEW", "PACKAGED", "FULFILLED"]);
        })
        .await;
    }
}

/// A `graphql-transport-ws` client.
mod ws {
    use super::*;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

    /// Opens `/graphql` at `base` as a WebSocket and initialises it with
    /// `payload`; the socket, after `connection_ack`.
    pub async fn connect(base: &str, payload: Value) -> Socket {
        connect_with(base, payload, None).await
    }

    /// [`connect`], with `Authorization: Bearer <token>` on the upgrade request.
    pub async fn connect_with(base: &str, payload: Value, token: Option<&str>) -> Socket {
        let url = format!("{}/graphql", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        send(
            &mut socket,
            json!({"type": "connection_init", "payload": payload}),
        )
        .await;
        assert_eq!(next(&mut socket).await, json!({"type": "connection_ack"}));
        socket
    }

    pub async fn send(socket: &mut Socket, message: Value) {
        socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// The next protocol message (pings answered, frames skipped), within 10 s.
    pub async fn next(socket: &mut Socket) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a message within 10 s")
                .expect("the socket open")
                .unwrap();
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "ping" {
                        send(socket, json!({"type": "pong"})).await;
                        continue;
                    }
                    return value;
                }
                Message::Close(frame) => {
                    return json!({"closed": frame.map(|f| u16::from(f.code))});
                }
                _ => continue,
            }
        }
    }

    /// Subscribes `id` to `orderUpdated(orderId)` with `selection`.
    pub async fn subscribe(socket: &mut Socket, id: &str, order_id: &str, selection: &str) {
        send(
            socket,
            json!({"id": id, "type": "subscribe", "payload": {
                "query": format!("subscription($id: ID!) {{ orderUpdated(orderId: $id) {selection} }}"),
                "variables": {"id": order_id}}}),
        )
        .await;
    }

    /// The next `next` payload for subscription `id`; panics on anything else.
    pub async fn update(socket: &mut Socket, id: &str) -> Value {
        let message = next(socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        message["payload"].clone()
    }

    pub fn bearer(token: &str) -> Value {
        json!({"Authorization": format!("Bearer {token}")})
    }
}

mod live {
    use super::*;

    /// Drives `order_id` from NEW to FULFILLED while `socket` follows it
    /// (subscription `id`, statuses only): each status arrives once.
    async fn watch_journey(shop: &Shop, socket: &mut ws::Socket, order_id: &str) {
        ws::subscribe(socket, "1", order_id, "{ status }").await;
        let first = ws::update(socket, "1").await;
        assert_eq!(first, json!({"data": {"orderUpdated": {"status": "NEW"}}}));
        shop.pack(order_id).await;
        let packed = ws::update(socket, "1").await;
        assert_eq!(packed, json!({"data": {"orderUpdated": {"status": "PACKAGED"}}}));
        // Starting the delivery sets the tracking id: not selected, so
        // nothing is sent for it; the next message is the fulfilment.
        shop.deliver(order_id).await;
        let fulfilled = ws::update(socket, "1").await;
        assert_eq!(
            fulfilled,
            json!({"data": {"orderUpdated": {"status": "FULFILLED"}}})
        );
        ws::send(socket, json!({"id": "1", "type": "complete"})).await;
    }

    #[tokio::test]
    async fn a_subscriber_sees_each_status_of_its_order_once_from_new_to_fulfilled() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(600, None).await;
            let (order_id, _) = shop.order(&shopper, &line, 1).await;
            let mut socket = ws::connect(&shop.app.base, ws::bearer(&shopper)).await;
            // A second subscription on the same connection sees the tracking id.
            ws::subscribe(&mut socket, "2", &order_id, "{ trackingId history { status } }").await;
            let first = ws::update(&mut socket, "2").await;
            assert_eq!(first["data"]["orderUpdated"]["trackingId"], Value::Null);
            ws::send(&mut socket, json!({"id": "2", "type": "complete"})).await;
            assert_eq!(
                ws::next(&mut socket).await,
                json!({"id": "2", "type": "complete"})
            );
            watch_journey(&shop, &mut socket, &order_id).await;
            socket.close(None).await.unwrap();

            // Staff follow any order; a bare token in the payload works too.
            let (other, _) = shop.order(&shopper, &line, 1).await;
            let mut staff = ws::connect(&shop.app.base, json!({"authorization": shop.delivery})).await;
            ws::subscribe(&mut staff, "s", &other, "{ orderId status }").await;
            let update = ws::update(&mut staff, "s").await;
            assert_eq!(update["data"]["orderUpdated"]["orderId"], other.as_str());
            // The upgrade request's Authorization header serves too.
            let mut by_header = ws::connect_with(&shop.app.base, json!({}), Some(&shopper)).await;
            ws::subscribe(&mut by_header, "h", &other, "{ status }").await;
            let update = ws::update(&mut by_header, "h").await;
            assert_eq!(update["data"]["orderUpdated"]["status"], "NEW");
            // A cancellation shows.
            let body = shop.cancel(&shopper, &other).await;
            assert_eq!(body["data"]["cancelOrder"]["success"], true, "{body}");
            let update = ws::update(&mut staff, "s").await;
            assert_eq!(update["data"]["orderUpdated"]["status"], "CANCELLED");
        })
        .await;
    }

    #[tokio::test]
    async fn subscriptions_without_a_valid_token_or_to_another_shoppers_order_are_refused() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let (shopper, other) = (shop.app.user_token(&[]).await, shop.app.user_token(&[]).await);
            let line = shop.product(600, None).await;
            let (order_id, _) = shop.order(&shopper, &line, 1).await;
            let refused = |payload: Value, order: String| {
                let base = shop.app.base.clone();
                async move {
                    let mut socket = ws::connect(&base, payload).await;
                    ws::subscribe(&mut socket, "x", &order, "{ status }").await;
                    let answer = ws::update(&mut socket, "x").await;
                    assert_eq!(answer["data"], Value::Null, "{answer}");
                    let done = ws::next(&mut socket).await;
                    assert_eq!(done, json!({"id": "x", "type": "complete"}));
                    answer["errors"][0]["extensions"]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                }
            };
            assert_eq!(refused(json!({}), order_id.clone()).await, "UNAUTHENTICATED");
            assert_eq!(
                refused(ws::bearer("not-a-token"), order_id.clone()).await,
                "UNAUTHENTICATED"
            );
            assert_eq!(refused(ws::bearer(&other), order_id.clone()).await, "FORBIDDEN");
            assert_eq!(
                refused(ws::bearer(&shopper), Uuid::new_v4().to_string()).await,
                "FORBIDDEN"
            );
            assert_eq!(
                refused(ws::bearer(&shop.admin), Uuid::new_v4().to_string()).await,
                "NOT_FOUND"
            );

            // At most 16 on one connection; completing one frees its place.
            let mut socket = ws::connect(&shop.app.base, ws::bearer(&shopper)).await;
            for i in 0..16 {
                ws::subscribe(&mut socket, &format!("s{i}"), &order_id, "{ status }").await;
                ws::update(&mut socket, &format!("s{i}")).await;
            }
            ws::subscribe(&mut socket, "s16", &order_id, "{ status }").await;
            let answer = ws::update(&mut socket, "s16").await;
            assert_eq!(
                answer["errors"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
                "{answer}"
            );
            assert_eq!(ws::next(&mut socket).await["type"], "complete");
            ws::send(&mut socket, json!({"id": "s0", "type": "complete"})).await;
            assert_eq!(
                ws::next(&mut socket).await,
                json!({"id": "s0", "type": "complete"})
            );
            ws::subscribe(&mut socket, "s17", &order_id, "{ status }").await;
            let answer = ws::update(&mut socket, "s17").await;
            assert_eq!(answer["data"]["orderUpdated"]["status"], "NEW", "{answer}");

            // Without the subprotocol, no socket.
            let (status, body) = send(
                shop.app
                    .http
                    .get(shop.app.url("/graphql"))
                    .header("Connection", "Upgrade")
                    .header("Upgrade", "websocket")
                    .header("Sec-WebSocket-Version", "13")
                    .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        })
        .await;
    }

    #[tokio::test]
    async fn a_subscription_ends_unauthenticated_once_its_token_is_revoked() {
        on_each_storage(|app| async move {
            let shop = Shop::open(app).await;
            let shopper = shop.app.user_token(&[]).await;
            let line = shop.product(600, None).await;
            let (order_id, _) = shop.order(&shopper, &line, 1).await;
            let mut socket = ws::connect(&shop.app.base, ws::bearer(&shopper)).await;
            ws::subscribe(&mut socket, "1", &order_id, "{ status }").await;
            ws::update(&mut socket, "1").await;
            // An admin deletes the shopper: their token is revoked at once.
            let (_, me) = shop.app.get_with_token("/users/me", &shopper).await;
            let user_id = me["userId"].as_str().unwrap();
            let (status, body) = shop
                .app
                .delete_with_token(&format!("/users/admin/users/{user_id}"), &shop.admin)
                .await;
            assert!(status.is_success(), "{status} {body}");
            // The next change ends the subscription instead of showing it.
            shop.pack(&order_id).await;
            let answer = ws::update(&mut socket, "1").await;
            assert_eq!(
                answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{answer}"
            );
            assert_eq!(
                ws::next(&mut socket).await,
                json!({"id": "1", "type": "complete"})
            );
            // And a new one is refused.
            ws::subscribe(&mut socket, "2", &order_id, "{ status }").await;
            let answer = ws::update(&mut socket, "2").await;
            assert_eq!(
                answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{answer}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn subscriptions_end_with_a_close_when_the_server_shuts_down() {
        let app = TestApp::spawn(Storage::Sqlite).await;
        let shop = Shop::open(app).await;
        let shopper = shop.app.user_token(&[]).await;
        let line = shop.product(600, None).await;
        let (order_id, _) = shop.order(&shopper, &line, 1).await;
        let mut socket = ws::connect(&shop.app.base, ws::bearer(&shopper)).await;
        ws::subscribe(&mut socket, "1", &order_id, "{ status }").await;
        ws::update(&mut socket, "1").await;
        shop.app.stop().await;
        assert_eq!(closing(&mut socket).await, json!({"closed": 1001}));
    }

    /// The close that ends `socket` (a `complete` of the subscription may
    /// come first).
    async fn closing(socket: &mut ws::Socket) -> Value {
        loop {
            let message = ws::next(socket).await;
            if message["type"] != "complete" {
                return message;
            }
        }
    }

    #[tokio::test]
    async fn a_gateway_in_another_process_follows_an_order_through_the_bus() {
        let storages = common::storages();
        if !storages.contains(&Storage::Postgres) || std::env::var("ECOM_TEST_BUS_URL").is_err() {
            eprintln!("note: PostgreSQL or NATS not configured: multi-process subscription skipped");
            return;
        }
        let app = TestApp::spawn(Storage::Postgres).await;
        let replica = app.spawn_replica(&["frontend-api"]).await;
        let shop = Shop::open(app).await;
        let shopper = shop.app.user_token(&[]).await;
        let line = shop.product(600, None).await;
        let (order_id, _) = shop.order(&shopper, &line, 1).await;
        let mut socket = ws::connect(&replica.base, ws::bearer(&shopper)).await;
        watch_journey(&shop, &mut socket, &order_id).await;
        replica.stop().await;
        assert_eq!(closing(&mut socket).await, json!({"closed": 1001}));
        shop.app.stop().await;
    }
}
