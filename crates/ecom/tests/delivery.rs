//! Delivery: a packaged order becomes a NEW delivery to the order's
//! address; staff start it and complete or fail it; outcomes leave as
//! events. Orders is played by a stub reached over HTTP, as in a
//! distributed deployment, so these tests need only delivery itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as Status};
use axum::routing::get;
use axum::Router;
use common::{on_each_storage_with, TestApp};
use ecom_delivery::api::{self, Deliveries};
use ecom_delivery::events::ON_PACKAGE_CREATED;
use ecom_platform::event::sources;
use ecom_platform::{Event, Outbox};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A stand-in for orders' `GET /orders/backend/{orderId}`.
#[derive(Clone, Default)]
struct Orders {
    orders: Arc<Mutex<HashMap<Uuid, Value>>>,
    down: Arc<Mutex<bool>>,
    /// Calls answered "down" (503), so a test can wait for the handler's
    /// attempts instead of sleeping.
    refused: Arc<AtomicUsize>,
}

impl Orders {
    /// Serves on a random port; returns its base URL.
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/orders/backend/{id}", get(Orders::get))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn get(
        State(orders): State<Orders>,
        headers: HeaderMap,
        Path(id): Path<Uuid>,
    ) -> (Status, axum::Json<Value>) {
        if !headers.contains_key("authorization") {
            return (
                Status::UNAUTHORIZED,
                axum::Json(json!({"message": "no credential"})),
            );
        }
        if *orders.down.lock().unwrap() {
            orders.refused.fetch_add(1, Ordering::SeqCst);
            return (
                Status::SERVICE_UNAVAILABLE,
                axum::Json(json!({"message": "down"})),
            );
        }
        match orders.orders.lock().unwrap().get(&id) {
            Some(order) => (Status::OK, axum::Json(json!({ "order": order }))),
            None => (Status::NOT_FOUND, axum::Json(json!({"message": "no such order"}))),
        }
    }

    /// Adds an order shipping to `city`; returns its id and address.
    fn add(&self, city: &str) -> (Uuid, Value) {
        let id = Uuid::new_v4();
        let address = json!({
            "name": "Ada", "streetAddress": "1 Main St", "city": city,
            "country": "FR", "phoneNumber": "+33123456789",
        });
        let order = common::order_json(
            id,
            json!({"status": "PACKAGED", "address": address, "total": 1000}),
        );
        self.orders.lock().unwrap().insert(id, order);
        (id, address)
    }
}

async fn run<F, Fut>(test: F)
where
    F: Fn(TestApp, Orders) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let orders = Orders::default();
    let url = orders.serve().await;
    on_each_storage_with(&["users", "delivery"], &[("orders", &url)], |app| {
        // Each storage's run starts with orders answering.
        *orders.down.lock().unwrap() = false;
        test(app, orders.clone())
    })
    .await;
}

/// Delivery's staff operations, on the app's database.
async fn staff(app: &TestApp) -> Deliveries {
    Deliveries::with(app.db("delivery").await, Outbox::new())
}

fn package_created(order_id: Uuid) -> Event {
    let detail = json!({ "orderId": order_id, "products": [{"productId": Uuid::new_v4(), "quantity": 1}] });
    Event::new(
        sources::WAREHOUSE,
        "PackageCreated",
        vec![order_id.to_string()],
        detail,
    )
}

/// Publishes a PackageCreated for `order_id` and waits until it is applied.
async fn packaged(app: &TestApp, order_id: Uuid) -> Event {
    let event = package_created(order_id);
    app.publish(std::slice::from_ref(&event)).await;
    app.handled("delivery", ON_PACKAGE_CREATED, &event).await;
    event
}

/// (status, address) of a delivery, or the status code when there is none.
async fn read(d: &Deliveries, order_id: Uuid) -> Result<(String, Value), u16> {
    api::delivery(d, order_id)
        .await
        .map(|d| (d.status.to_owned(), serde_json::to_value(&d.address).unwrap()))
        .map_err(|e| e.status().as_u16())
}

fn code(result: Result<(), ecom_runtime::ApiError>) -> Result<(), u16> {
    result.map_err(|e| e.status().as_u16())
}

/// An outcome of the delivery of `order_id` (not its `DeliveryStarted`).
fn from_delivery(order_id: Uuid) -> impl Fn(&Event) -> bool {
    move |e| {
        e.source == sources::DELIVERY
            && e.resources == [order_id.to_string()]
            && e.detail_type != "DeliveryStarted"
    }
}

#[tokio::test]
async fn a_package_created_event_makes_a_new_delivery_to_the_orders_address() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let (order_id, address) = orders.add("Lyon");
        packaged(&app, order_id).await;

        assert_eq!(read(&d, order_id).await, Ok(("NEW".to_owned(), address.clone())));
        let page = api::new_deliveries(&d, None, None).await.unwrap();
        let listed = serde_json::to_value(&page).unwrap();
        assert_eq!(
            listed,
            json!({"deliveries": [{"orderId": order_id, "address": address, "status": "NEW"}], "nextToken": null})
        );
    })
    .await;
}

#[tokio::test]
async fn a_package_whose_order_cannot_be_fetched_yet_is_retried_until_it_can() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let (order_id, address) = orders.add("Nantes");
        *orders.down.lock().unwrap() = true;
        let event = package_created(order_id);
        app.publish(std::slice::from_ref(&event)).await;
        // The handler fails and nothing is stored; the bus tries again. A
        // second refused call means the first attempt is over (rolled back).
        let before = orders.refused.load(Ordering::SeqCst);
        app.eventually("the handler to be refused twice by a down orders", || async {
            orders.refused.load(Ordering::SeqCst) >= before + 2
        })
        .await;
        assert_eq!(read(&d, order_id).await, Err(404));

        *orders.down.lock().unwrap() = false;
        app.handled("delivery", ON_PACKAGE_CREATED, &event).await;
        assert_eq!(read(&d, order_id).await, Ok(("NEW".to_owned(), address)));
        assert!(app
            .bus
            .dead_letters(Some(ON_PACKAGE_CREATED))
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn another_package_for_an_order_does_not_reset_its_started_delivery() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let (order_id, address) = orders.add("Lille");
        packaged(&app, order_id).await;
        api::start_delivery(&d, order_id).await.unwrap();

        // A second package for the order, while orders does not answer:
        // a delivery under way does not need it.
        *orders.down.lock().unwrap() = true;
        packaged(&app, order_id).await;
        assert_eq!(read(&d, order_id).await, Ok(("IN_PROGRESS".to_owned(), address)));
        assert!(api::new_deliveries(&d, None, None)
            .await
            .unwrap()
            .deliveries
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn completing_a_started_delivery_emits_delivery_completed_with_the_address() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let (order_id, address) = orders.add("Paris");
        packaged(&app, order_id).await;
        api::start_delivery(&d, order_id).await.unwrap();
        api::complete_delivery(&d, order_id).await.unwrap();

        let event = app
            .wait_for_event("DeliveryCompleted", from_delivery(order_id))
            .await;
        assert_eq!(event.detail_type, "DeliveryCompleted");
        assert_eq!(event.detail, json!({ "orderId": order_id, "address": address }));
        assert_eq!(read(&d, order_id).await.map(|r| r.0), Ok("COMPLETED".to_owned()));
        // Starting it gave it a tracking id, announced once.
        let started: Vec<Event> = app
            .events()
            .into_iter()
            .filter(|e| e.detail_type == "DeliveryStarted" && e.resources == [order_id.to_string()])
            .collect();
        assert_eq!(started.len(), 1, "{started:?}");
        let tracking = started[0].detail.value()["trackingId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            started[0].detail,
            json!({ "orderId": order_id, "trackingId": tracking })
        );
        assert_eq!(tracking.len(), 12);
    })
    .await;
}

#[tokio::test]
async fn failing_a_started_delivery_emits_delivery_failed_with_the_address() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let (order_id, address) = orders.add("Brest");
        packaged(&app, order_id).await;
        api::start_delivery(&d, order_id).await.unwrap();
        api::fail_delivery(&d, order_id).await.unwrap();

        let event = app
            .wait_for_event("DeliveryFailed", from_delivery(order_id))
            .await;
        assert_eq!(event.detail_type, "DeliveryFailed");
        assert_eq!(event.detail, json!({ "orderId": order_id, "address": address }));
        assert_eq!(read(&d, order_id).await.map(|r| r.0), Ok("FAILED".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn transitions_from_the_wrong_state_are_refused_with_409() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let (order_id, _) = orders.add("Metz");
        packaged(&app, order_id).await;

        assert_eq!(code(api::complete_delivery(&d, order_id).await), Err(409));
        assert_eq!(code(api::fail_delivery(&d, order_id).await), Err(409));
        assert_eq!(code(api::start_delivery(&d, order_id).await), Ok(()));
        let twice = api::start_delivery(&d, order_id).await.unwrap_err();
        assert_eq!(twice.status().as_u16(), 409);
        assert!(
            twice.message().contains("it is IN_PROGRESS"),
            "{}",
            twice.message()
        );
        assert_eq!(code(api::complete_delivery(&d, order_id).await), Ok(()));
        assert_eq!(code(api::fail_delivery(&d, order_id).await), Err(409));
        assert_eq!(code(api::complete_delivery(&d, order_id).await), Err(409));

        assert_eq!(code(api::start_delivery(&d, Uuid::new_v4()).await), Err(404));
    })
    .await;
}

#[tokio::test]
async fn deleting_a_delivery_without_an_outcome_emits_delivery_failed() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        // (status reached before deletion, whether DeliveryFailed is emitted)
        for (steps, emits) in [(0, true), (1, true), (2, false)] {
            let (order_id, address) = orders.add("Caen");
            packaged(&app, order_id).await;
            if steps >= 1 {
                api::start_delivery(&d, order_id).await.unwrap();
            }
            if steps >= 2 {
                api::complete_delivery(&d, order_id).await.unwrap();
            }
            api::delete_delivery(&d, order_id).await.unwrap();
            assert_eq!(read(&d, order_id).await, Err(404));

            // The outbox relays in commit order: once a delivery completed
            // after the deletion is seen, any DeliveryFailed has been too.
            let (marker, _) = orders.add("Marker");
            packaged(&app, marker).await;
            api::start_delivery(&d, marker).await.unwrap();
            api::complete_delivery(&d, marker).await.unwrap();
            app.wait_for_event("the marker", from_delivery(marker)).await;
            let failed: Vec<Event> = app
                .events()
                .into_iter()
                .filter(|e| from_delivery(order_id)(e) && e.detail_type == "DeliveryFailed")
                .collect();
            let expected = json!({ "orderId": order_id, "address": address });
            let details: Vec<Value> = failed.into_iter().map(|e| e.detail.value()).collect();
            assert_eq!(
                details,
                if emits { vec![expected] } else { vec![] },
                "after {steps} steps"
            );
        }
        assert_eq!(code(api::delete_delivery(&d, Uuid::new_v4()).await), Err(404));
    })
    .await;
}

#[tokio::test]
async fn new_deliveries_come_a_page_at_a_time_oldest_first() {
    run(|app, orders| async move {
        let d = staff(&app).await;
        let mut expected = Vec::new();
        for city in ["A", "B", "C"] {
            let (order_id, _) = orders.add(city);
            packaged(&app, order_id).await;
            expected.push(order_id);
        }
        let first = api::new_deliveries(&d, None, Some(2)).await.unwrap();
        let token = first.next_token.clone().expect("a second page");
        let second = api::new_deliveries(&d, Some(&token), Some(2)).await.unwrap();
        let seen: Vec<Uuid> = first
            .deliveries
            .iter()
            .chain(&second.deliveries)
            .map(|d| d.order_id)
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(second.next_token, None);
    })
    .await;
}

/// (who, groups or `None` for anonymous, status of: list, read, start /
/// complete / fail, delete)
type Caller = (&'static str, Option<&'static [&'static str]>, u16, u16, u16, u16);

#[tokio::test]
async fn delivery_routes_need_the_groups_the_spec_names() {
    run(|app, _| async move {
        let unknown = Uuid::new_v4();
        let body = json!({ "orderId": unknown });
        // Reading: admin, delivery. Moving a delivery: also warehouse.
        // Deleting: admin. Allowed callers get 200 on the list and 404 for
        // the unknown order.
        let callers: [Caller; 6] = [
            ("anonymous", None, 401, 401, 401, 401),
            ("a shopper", Some(&[]), 403, 403, 403, 403),
            ("warehouse staff", Some(&["warehouse"]), 403, 403, 404, 403),
            ("delivery staff", Some(&["delivery"]), 200, 404, 404, 403),
            ("an admin", Some(&["admin"]), 200, 404, 404, 404),
            (
                "warehouse and delivery staff",
                Some(&["warehouse", "delivery"]),
                200,
                404,
                404,
                403,
            ),
        ];
        for (who, groups, list, read, moves, delete) in callers {
            let token = match groups {
                Some(groups) => app.user_token(groups).await,
                None => String::new(),
            };
            let one = format!("/delivery/deliveries/{unknown}");
            let (status, answer) = app.get_with_token("/delivery/deliveries", &token).await;
            assert_eq!(status.as_u16(), list, "{who} lists: {answer}");
            let (status, answer) = app.get_with_token(&one, &token).await;
            assert_eq!(status.as_u16(), read, "{who} reads: {answer}");
            for op in ["startDelivery", "completeDelivery", "failDelivery"] {
                let (status, answer) = app
                    .post_with_token(&format!("/delivery/{op}"), &token, &body)
                    .await;
                assert_eq!(status.as_u16(), moves, "{who} runs {op}: {answer}");
            }
            let (status, answer) = app.delete_with_token(&one, &token).await;
            assert_eq!(status.as_u16(), delete, "{who} deletes: {answer}");
            assert!(answer["message"].is_string(), "{answer}");
        }
    })
    .await;
}

#[tokio::test]
async fn staff_deliver_an_order_over_http() {
    run(|app, orders| async move {
        let driver = app.user_token(&["delivery"]).await;
        let packer = app.user_token(&["warehouse"]).await;
        let (order_id, address) = orders.add("Rennes");
        let series = |e: &str| format!("ecom_deliveries_total{{event=\"{e}\"}}");
        let (created_before, completed_before) = (
            app.metric(&series("created")).await,
            app.metric(&series("completed")).await,
        );
        packaged(&app, order_id).await;

        let (status, page) = app.get_with_token("/delivery/deliveries", &driver).await;
        assert_eq!(status, StatusCode::OK);
        let expected = json!({ "orderId": order_id, "address": address, "status": "NEW" });
        assert_eq!(page, json!({ "deliveries": [expected], "nextToken": null }));
        let one = format!("/delivery/deliveries/{order_id}");
        assert_eq!(
            app.get_with_token(&one, &driver).await,
            (StatusCode::OK, expected)
        );

        let body = json!({ "orderId": order_id });
        let (status, answer) = app
            .post_with_token("/delivery/completeDelivery", &driver, &body)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            answer["message"].as_str().unwrap().contains("it is NEW"),
            "{answer}"
        );
        // As in the original, warehouse staff may hand the package over.
        let ok = (StatusCode::OK, json!({ "success": true }));
        assert_eq!(
            app.post_with_token("/delivery/startDelivery", &packer, &body)
                .await,
            ok
        );
        assert_eq!(
            app.post_with_token("/delivery/completeDelivery", &driver, &body)
                .await,
            ok
        );

        let event = app
            .wait_for_event("DeliveryCompleted", from_delivery(order_id))
            .await;
        assert_eq!(event.detail_type, "DeliveryCompleted");
        assert_eq!(event.detail, json!({ "orderId": order_id, "address": address }));
        let (_, delivery) = app.get_with_token(&one, &driver).await;
        assert_eq!(delivery["status"], "COMPLETED");
        assert!(app.metric(&series("created")).await > created_before);
        assert!(app.metric(&series("completed")).await > completed_before);
    })
    .await;
}

#[tokio::test]
async fn an_admin_deleting_a_delivery_under_way_over_http_emits_delivery_failed() {
    run(|app, orders| async move {
        let admin = app.user_token(&["admin"]).await;
        let (order_id, address) = orders.add("Tours");
        packaged(&app, order_id).await;
        let one = format!("/delivery/deliveries/{order_id}");
        let ok = (StatusCode::OK, json!({ "success": true }));
        assert_eq!(app.delete_with_token(&one, &admin).await, ok);

        let event = app
            .wait_for_event("DeliveryFailed", from_delivery(order_id))
            .await;
        assert_eq!(event.detail_type, "DeliveryFailed");
        assert_eq!(event.detail, json!({ "orderId": order_id, "address": address }));
        assert_eq!(app.get_with_token(&one, &admin).await.0, StatusCode::NOT_FOUND);
    })
    .await;
}
