//! Warehouse: packaging requests follow order events while NEW; staff
//! start, adjust and complete them; the outcome leaves as an event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage_with, Storage, TestApp};
use ecom_model::Timestamp;
use ecom_platform::event::sources;
use ecom_platform::{Event, Outbox};
use ecom_warehouse::api::{self, Warehouse};
use ecom_warehouse::events::{
    self, ON_ORDER_CREATED, ON_ORDER_DELETED, ON_ORDER_MODIFIED, ON_PAYMENT_FAILED,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// The services these tests run (users for staff tokens).
const SERVICES: &[&str] = &["users", "warehouse"];

async fn run<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    on_each_storage_with(SERVICES, &[], test).await;
}

/// The warehouse's staff operations, on the app's database.
async fn staff(app: &TestApp) -> Warehouse {
    Warehouse::with(app.db("warehouse").await, Outbox::new())
}

fn at(second: u32) -> Timestamp {
    Timestamp::parse(&format!("2026-03-01T10:00:{second:02}Z")).unwrap()
}

/// An order as orders emits it: the whole order, which the warehouse
/// decodes as the contracts' `Order`.
fn order(id: Uuid, lines: &[(Uuid, i64)], modified: u32) -> Value {
    let products: Vec<Value> = lines
        .iter()
        .map(|(p, q)| {
            json!({"productId": p, "name": "Shoe", "price": 500, "quantity": q,
                   "package": {"width": 1, "length": 1, "height": 1, "weight": 1}})
        })
        .collect();
    common::order_json(
        id,
        json!({
            "products": products, "createdDate": at(0), "modifiedDate": at(modified), "total": 1000,
        }),
    )
}

fn created(id: Uuid, lines: &[(Uuid, i64)], modified: u32) -> Event {
    Event::new(
        sources::ORDERS,
        "OrderCreated",
        vec![id.to_string()],
        order(id, lines, modified),
    )
}

fn modified(id: Uuid, old: (&[(Uuid, i64)], u32), new: (&[(Uuid, i64)], u32)) -> Event {
    let detail = json!({
        "old": order(id, old.0, old.1), "new": order(id, new.0, new.1),
        "changed": ["modifiedDate", "products", "total"],
    });
    Event::new(sources::ORDERS, "OrderModified", vec![id.to_string()], detail)
}

fn deleted(id: Uuid, lines: &[(Uuid, i64)], modified: u32) -> Event {
    Event::new(
        sources::ORDERS,
        "OrderDeleted",
        vec![id.to_string()],
        order(id, lines, modified),
    )
}

/// Publishes `event` and waits until `rule` has applied it.
async fn deliver(app: &TestApp, rule: &str, event: &Event) {
    app.publish(std::slice::from_ref(event)).await;
    app.handled("warehouse", rule, event).await;
}

/// The request as staff read it: (status, lines sorted by product), or the
/// status code when there is none.
async fn read(w: &Warehouse, id: Uuid) -> Result<(String, Vec<(Uuid, i64)>), u16> {
    api::packaging_request(w, id)
        .await
        .map(|r| {
            let lines = r.products.iter().map(|l| (l.product_id, l.quantity)).collect();
            (r.status.to_owned(), lines)
        })
        .map_err(|e| e.status().as_u16())
}

fn sorted(mut lines: Vec<(Uuid, i64)>) -> Vec<(Uuid, i64)> {
    lines.sort();
    lines
}

fn ids<const N: usize>() -> [Uuid; N] {
    std::array::from_fn(|_| Uuid::new_v4())
}

#[tokio::test]
async fn an_order_created_event_makes_a_new_request_with_one_line_per_product() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, shoe, hat] = ids();
        deliver(
            &app,
            ON_ORDER_CREATED,
            &created(order_id, &[(shoe, 2), (hat, 1)], 1),
        )
        .await;

        assert_eq!(
            read(&w, order_id).await,
            Ok(("NEW".to_owned(), sorted(vec![(shoe, 2), (hat, 1)])))
        );
        let listed = api::new_request_ids(&w, None, None).await.unwrap();
        assert_eq!(listed.packaging_request_ids, vec![order_id]);
        assert_eq!(listed.next_token, None);
    })
    .await;
}

#[tokio::test]
async fn an_order_event_replaces_a_new_request_only_when_it_is_newer() {
    run(|app| async move {
        let w = staff(&app).await;
        let [shoe] = ids();
        // (modifiedDate of the second OrderCreated, quantity expected after it)
        for (second, expected) in [(4, 1), (5, 1), (6, 3)] {
            let order_id = Uuid::new_v4();
            deliver(&app, ON_ORDER_CREATED, &created(order_id, &[(shoe, 1)], 5)).await;
            deliver(&app, ON_ORDER_CREATED, &created(order_id, &[(shoe, 3)], second)).await;
            assert_eq!(
                read(&w, order_id).await,
                Ok(("NEW".to_owned(), vec![(shoe, expected)])),
                "second event at :{second:02}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn an_order_of_thousands_of_lines_is_stored_whole_and_modified_whole() {
    run(|app| async move {
        let w = staff(&app).await;
        let order_id = Uuid::new_v4();
        // As one statement, 9,000 lines would need 36,000 parameters: more
        // than SQLite allows (32,766); lines go 100 to a statement. Orders
        // allow 500 lines, but warehouse must not depend on that. NATS
        // carries at most 1 MB a message, so there the order is smaller.
        let on_nats = app.storage == Storage::Postgres && std::env::var("ECOM_TEST_BUS_URL").is_ok();
        let count = if on_nats { 2_500 } else { 9_000 };
        let before: Vec<(Uuid, i64)> = (1..=count).map(|q| (Uuid::new_v4(), q)).collect();
        deliver(&app, ON_ORDER_CREATED, &created(order_id, &before, 1)).await;
        assert_eq!(
            read(&w, order_id).await,
            Ok(("NEW".to_owned(), sorted(before.clone())))
        );

        // Keep 20 (half of them changed), remove the rest, add 120.
        let mut after: Vec<(Uuid, i64)> = before[..20]
            .iter()
            .enumerate()
            .map(|(i, &(id, q))| (id, if i % 2 == 0 { q } else { q + 1000 }))
            .collect();
        after.extend((1..=120).map(|q| (Uuid::new_v4(), q)));
        deliver(
            &app,
            ON_ORDER_MODIFIED,
            &modified(order_id, (&before, 1), (&after, 2)),
        )
        .await;
        assert_eq!(read(&w, order_id).await, Ok(("NEW".to_owned(), sorted(after))));
    })
    .await;
}

#[tokio::test]
async fn an_order_modified_event_adds_changes_and_removes_lines_of_a_new_request() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, kept, changed, removed, added] = ids();
        let before: &[(Uuid, i64)] = &[(kept, 1), (changed, 1), (removed, 1)];
        let after: &[(Uuid, i64)] = &[(kept, 1), (changed, 4), (added, 2)];
        deliver(&app, ON_ORDER_CREATED, &created(order_id, before, 1)).await;
        deliver(
            &app,
            ON_ORDER_MODIFIED,
            &modified(order_id, (before, 1), (after, 2)),
        )
        .await;

        assert_eq!(
            read(&w, order_id).await,
            Ok(("NEW".to_owned(), sorted(after.to_vec())))
        );
    })
    .await;
}

#[tokio::test]
async fn an_order_modified_event_is_ignored_when_older_or_once_packaging_started() {
    run(|app| async move {
        let w = staff(&app).await;
        let [older, started, shoe] = ids();
        let one: &[(Uuid, i64)] = &[(shoe, 1)];
        let five: &[(Uuid, i64)] = &[(shoe, 5)];

        deliver(&app, ON_ORDER_CREATED, &created(older, one, 5)).await;
        deliver(&app, ON_ORDER_MODIFIED, &modified(older, (one, 3), (five, 4))).await;
        assert_eq!(read(&w, older).await, Ok(("NEW".to_owned(), vec![(shoe, 1)])));

        deliver(&app, ON_ORDER_CREATED, &created(started, one, 1)).await;
        api::start_packaging(&w, started).await.unwrap();
        deliver(&app, ON_ORDER_MODIFIED, &modified(started, (one, 1), (five, 2))).await;
        assert_eq!(
            read(&w, started).await,
            Ok(("IN_PROGRESS".to_owned(), vec![(shoe, 1)]))
        );
    })
    .await;
}

#[tokio::test]
async fn an_order_modified_event_that_overtakes_its_creation_makes_the_request() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, shoe, hat] = ids();
        let first: &[(Uuid, i64)] = &[(shoe, 1)];
        let second: &[(Uuid, i64)] = &[(shoe, 2), (hat, 1)];
        deliver(
            &app,
            ON_ORDER_MODIFIED,
            &modified(order_id, (first, 1), (second, 2)),
        )
        .await;
        deliver(&app, ON_ORDER_CREATED, &created(order_id, first, 1)).await;

        assert_eq!(
            read(&w, order_id).await,
            Ok(("NEW".to_owned(), sorted(second.to_vec())))
        );
    })
    .await;
}

#[tokio::test]
async fn an_order_deleted_event_drops_a_new_request_but_not_one_being_packed() {
    run(|app| async move {
        let w = staff(&app).await;
        let [dropped, kept, shoe] = ids();
        let one: &[(Uuid, i64)] = &[(shoe, 1)];

        deliver(&app, ON_ORDER_CREATED, &created(dropped, one, 1)).await;
        deliver(&app, ON_ORDER_DELETED, &deleted(dropped, one, 1)).await;
        assert_eq!(read(&w, dropped).await, Err(404));
        assert!(api::new_request_ids(&w, None, None)
            .await
            .unwrap()
            .packaging_request_ids
            .is_empty());
        // A late copy of its creation does not bring it back.
        deliver(&app, ON_ORDER_CREATED, &created(dropped, one, 1)).await;
        assert_eq!(read(&w, dropped).await, Err(404));

        deliver(&app, ON_ORDER_CREATED, &created(kept, one, 1)).await;
        api::start_packaging(&w, kept).await.unwrap();
        deliver(&app, ON_ORDER_DELETED, &deleted(kept, one, 1)).await;
        assert_eq!(
            read(&w, kept).await,
            Ok(("IN_PROGRESS".to_owned(), vec![(shoe, 1)]))
        );
    })
    .await;
}

fn payment_failed(id: Uuid) -> Event {
    Event::new(
        sources::PAYMENT,
        "PaymentFailed",
        vec![id.to_string()],
        json!({"orderId": id, "reason": "the payment was cancelled at the card processor"}),
    )
}

#[tokio::test]
async fn a_payment_failed_event_drops_a_new_request_but_not_one_being_packed() {
    run(|app| async move {
        let w = staff(&app).await;
        let [dropped, early, kept] = ids();
        let shoe = Uuid::new_v4();
        let one: &[(Uuid, i64)] = &[(shoe, 1)];

        deliver(&app, ON_ORDER_CREATED, &created(dropped, one, 1)).await;
        deliver(&app, ON_PAYMENT_FAILED, &payment_failed(dropped)).await;
        assert_eq!(read(&w, dropped).await, Err(404));

        // The failure may overtake the creation (no global order): the
        // creation arriving later does not make a request.
        deliver(&app, ON_PAYMENT_FAILED, &payment_failed(early)).await;
        deliver(&app, ON_ORDER_CREATED, &created(early, one, 1)).await;
        assert_eq!(read(&w, early).await, Err(404));
        assert!(api::new_request_ids(&w, None, None)
            .await
            .unwrap()
            .packaging_request_ids
            .is_empty());

        deliver(&app, ON_ORDER_CREATED, &created(kept, one, 1)).await;
        api::start_packaging(&w, kept).await.unwrap();
        deliver(&app, ON_PAYMENT_FAILED, &payment_failed(kept)).await;
        assert_eq!(
            read(&w, kept).await,
            Ok(("IN_PROGRESS".to_owned(), vec![(shoe, 1)]))
        );
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_order_event_is_applied_once() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, shoe, hat] = ids();
        let first: &[(Uuid, i64)] = &[(shoe, 1)];
        let second: &[(Uuid, i64)] = &[(shoe, 1), (hat, 1)];
        let creation = created(order_id, first, 1);
        deliver(&app, ON_ORDER_CREATED, &creation).await;
        let change = modified(order_id, (first, 1), (second, 2));
        deliver(&app, ON_ORDER_MODIFIED, &change).await;
        // Staff lower a line; redeliveries of either event (the bus delivers
        // at least once) must not undo it.
        api::start_packaging(&w, order_id).await.unwrap();
        api::update_packaging_product(&w, order_id, hat, 0).await.unwrap();
        for _ in 0..2 {
            events::on_order_created(&w, &creation).await.unwrap();
            events::on_order_modified(&w.db, &change).await.unwrap();
        }

        assert_eq!(
            read(&w, order_id).await,
            Ok(("IN_PROGRESS".to_owned(), vec![(shoe, 1)]))
        );
    })
    .await;
}

#[tokio::test]
async fn transitions_from_the_wrong_state_are_refused_with_409() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, shoe] = ids();
        deliver(&app, ON_ORDER_CREATED, &created(order_id, &[(shoe, 1)], 1)).await;
        let status = |r: Result<(), ecom_runtime::ApiError>| {
            r.map_err(|e| (e.status().as_u16(), e.message().to_owned()))
        };

        let early = status(api::complete_packaging(&w, order_id).await);
        assert_eq!(early.as_ref().map_err(|e| e.0), Err(409));
        assert!(early.unwrap_err().1.contains("it is NEW"));
        assert_eq!(
            status(api::update_packaging_product(&w, order_id, shoe, 1).await).map_err(|e| e.0),
            Err(409)
        );

        assert_eq!(status(api::start_packaging(&w, order_id).await), Ok(()));
        let twice = status(api::start_packaging(&w, order_id).await);
        assert_eq!(twice.as_ref().map_err(|e| e.0), Err(409));
        assert!(twice.unwrap_err().1.contains("it is IN_PROGRESS"));

        assert_eq!(status(api::complete_packaging(&w, order_id).await), Ok(()));
        assert_eq!(
            status(api::complete_packaging(&w, order_id).await).map_err(|e| e.0),
            Err(409)
        );
        assert_eq!(
            status(api::update_packaging_product(&w, order_id, shoe, 0).await).map_err(|e| e.0),
            Err(409)
        );
        assert_eq!(
            read(&w, order_id).await,
            Ok(("COMPLETED".to_owned(), vec![(shoe, 1)]))
        );

        let unknown = Uuid::new_v4();
        assert_eq!(
            status(api::start_packaging(&w, unknown).await).map_err(|e| e.0),
            Err(404)
        );
    })
    .await;
}

#[tokio::test]
async fn lowering_lines_then_completing_emits_package_created_with_what_remains() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, shoe, hat, sock] = ids();
        deliver(
            &app,
            ON_ORDER_CREATED,
            &created(order_id, &[(shoe, 3), (hat, 1), (sock, 2)], 1),
        )
        .await;
        api::start_packaging(&w, order_id).await.unwrap();
        api::update_packaging_product(&w, order_id, shoe, 2)
            .await
            .unwrap();
        api::update_packaging_product(&w, order_id, hat, 0).await.unwrap();

        // Refused: unknown product, more than ordered, negative.
        let code = |r: Result<(), ecom_runtime::ApiError>| r.map_err(|e| e.status().as_u16());
        assert_eq!(
            code(api::update_packaging_product(&w, order_id, Uuid::new_v4(), 1).await),
            Err(404)
        );
        assert_eq!(
            code(api::update_packaging_product(&w, order_id, sock, 3).await),
            Err(400)
        );
        assert_eq!(
            code(api::update_packaging_product(&w, order_id, sock, -1).await),
            Err(400)
        );
        assert_eq!(
            read(&w, order_id).await,
            Ok(("IN_PROGRESS".to_owned(), sorted(vec![(shoe, 2), (sock, 2)])))
        );

        api::complete_packaging(&w, order_id).await.unwrap();
        let event = app
            .wait_for_event("the packaging outcome", |e| {
                e.source == sources::WAREHOUSE && e.resources == [order_id.to_string()]
            })
            .await;
        assert_eq!(event.source, "ecommerce.warehouse");
        assert_eq!(event.detail_type, "PackageCreated");
        let mut products = event.detail.value()["products"].as_array().unwrap().clone();
        products.sort_by_key(|p| p["productId"].as_str().unwrap().to_owned());
        let mut expected = vec![
            json!({"productId": shoe, "quantity": 2}),
            json!({"productId": sock, "quantity": 2}),
        ];
        expected.sort_by_key(|p| p["productId"].as_str().unwrap().to_owned());
        assert_eq!(event.detail.value()["orderId"], json!(order_id));
        assert_eq!(products, expected);
    })
    .await;
}

#[tokio::test]
async fn completing_with_every_line_removed_emits_packaging_failed() {
    run(|app| async move {
        let w = staff(&app).await;
        let [order_id, shoe] = ids();
        deliver(&app, ON_ORDER_CREATED, &created(order_id, &[(shoe, 1)], 1)).await;
        api::start_packaging(&w, order_id).await.unwrap();
        api::update_packaging_product(&w, order_id, shoe, 0)
            .await
            .unwrap();
        api::complete_packaging(&w, order_id).await.unwrap();

        let event = app
            .wait_for_event("the packaging outcome", |e| {
                e.source == sources::WAREHOUSE && e.resources == [order_id.to_string()]
            })
            .await;
        assert_eq!(event.detail_type, "PackagingFailed");
        assert_eq!(event.detail, json!({ "orderId": order_id }));
        assert_eq!(read(&w, order_id).await, Ok(("COMPLETED".to_owned(), vec![])));
    })
    .await;
}

#[tokio::test]
async fn new_request_ids_come_a_page_at_a_time_oldest_first() {
    run(|app| async move {
        let w = staff(&app).await;
        let [a, b, c, shoe] = ids();
        for id in [a, b, c] {
            deliver(&app, ON_ORDER_CREATED, &created(id, &[(shoe, 1)], 1)).await;
        }
        api::start_packaging(&w, b).await.unwrap();
        deliver(&app, ON_ORDER_CREATED, &created(Uuid::new_v4(), &[(shoe, 1)], 1)).await;

        let first = api::new_request_ids(&w, None, Some(2)).await.unwrap();
        assert_eq!(first.packaging_request_ids[..], [a, c]);
        let token = first.next_token.expect("a second page");
        let second = api::new_request_ids(&w, Some(&token), Some(2)).await.unwrap();
        assert_eq!(second.packaging_request_ids.len(), 1);
        assert_eq!(second.next_token, None);

        let bad = api::new_request_ids(&w, Some("not-a-token"), None).await;
        assert_eq!(bad.map_err(|e| e.status().as_u16()).err(), Some(400));
    })
    .await;
}

#[tokio::test]
async fn staff_routes_need_the_admin_or_warehouse_group() {
    run(|app| async move {
        let unknown = Uuid::new_v4();
        let body = json!({ "orderId": unknown, "productId": unknown, "quantity": 1 });
        // (caller, token, status of a list, status of an operation on an unknown order)
        let callers = [
            ("anonymous", None, 401, 401),
            ("a shopper", Some(app.user_token(&[]).await), 403, 403),
            (
                "delivery staff",
                Some(app.user_token(&["delivery"]).await),
                403,
                403,
            ),
            (
                "warehouse staff",
                Some(app.user_token(&["warehouse"]).await),
                200,
                404,
            ),
            ("an admin", Some(app.user_token(&["admin"]).await), 200, 404),
        ];
        for (who, token, list, operation) in callers {
            let token = token.unwrap_or_default();
            let (status, answer) = app.get_with_token("/warehouse/packaging-requests", &token).await;
            assert_eq!(status.as_u16(), list, "{who} lists: {answer}");
            let read = format!("/warehouse/packaging-requests/{unknown}");
            let (status, answer) = app.get_with_token(&read, &token).await;
            assert_eq!(status.as_u16(), operation, "{who} reads: {answer}");
            for op in ["startPackaging", "updatePackagingProduct", "completePackaging"] {
                let (status, answer) = app
                    .post_with_token(&format!("/warehouse/{op}"), &token, &body)
                    .await;
                assert_eq!(status.as_u16(), operation, "{who} runs {op}: {answer}");
                assert!(answer["message"].is_string(), "{answer}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn warehouse_staff_pack_an_order_over_http() {
    run(|app| async move {
        let token = app.user_token(&["warehouse"]).await;
        let [order_id, shoe, hat] = ids();
        let packages = r#"ecom_warehouse_packages_total{outcome="created"}"#;
        let packages_before = app.metric(packages).await;
        deliver(
            &app,
            ON_ORDER_CREATED,
            &created(order_id, &[(shoe, 2), (hat, 1)], 1),
        )
        .await;
        let post = |op: &'static str, body: Value| {
            let (app, token) = (&app, &token);
            async move {
                app.post_with_token(&format!("/warehouse/{op}"), token, &body)
                    .await
            }
        };

        let (status, page) = app.get_with_token("/warehouse/packaging-requests", &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            page,
            json!({ "packagingRequestIds": [order_id], "nextToken": null })
        );
        let path = format!("/warehouse/packaging-requests/{order_id}");
        let (status, request) = app.get_with_token(&path, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(request["orderId"], json!(order_id));
        assert_eq!(request["status"], "NEW");
        assert_eq!(request["products"].as_array().map(Vec::len), Some(2));

        let (status, answer) = post("completePackaging", json!({ "orderId": order_id })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            answer["message"].as_str().unwrap().contains("it is NEW"),
            "{answer}"
        );
        let (status, answer) = post("startPackaging", json!({ "orderId": order_id })).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({ "success": true })));
        let (status, _) = post("startPackaging", json!({ "orderId": order_id })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let line = json!({ "orderId": order_id, "productId": hat, "quantity": 0 });
        let (status, answer) = post("updatePackagingProduct", line).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({ "success": true })));
        let (status, answer) = post("completePackaging", json!({ "orderId": order_id })).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({ "success": true })));

        let event = app
            .wait_for_event("PackageCreated", |e| {
                e.source == sources::WAREHOUSE && e.resources == [order_id.to_string()]
            })
            .await;
        assert_eq!(event.detail_type, "PackageCreated");
        assert_eq!(
            event.detail,
            json!({ "orderId": order_id, "products": [{ "productId": shoe, "quantity": 2 }] })
        );
        let (_, request) = app.get_with_token(&path, &token).await;
        assert_eq!(request["status"], "COMPLETED");
        assert!(app.metric(packages).await > packages_before);
    })
    .await;
}

#[tokio::test]
async fn malformed_staff_requests_are_refused_with_400_naming_the_field() {
    run(|app| async move {
        let token = app.user_token(&["warehouse"]).await;
        let id = Uuid::new_v4();
        let cases = [
            (
                "/warehouse/startPackaging",
                json!({ "orderId": "nope" }),
                "orderId",
            ),
            ("/warehouse/completePackaging", json!({}), "orderId"),
            (
                "/warehouse/updatePackagingProduct",
                json!({ "orderId": id, "productId": id, "quantity": "two" }),
                "quantity",
            ),
            (
                "/warehouse/updatePackagingProduct",
                json!({ "orderId": id, "productId": id, "quantity": -1 }),
                "quantity",
            ),
        ];
        for (path, body, field) in cases {
            let (status, answer) = app.post_with_token(path, &token, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
            assert!(answer["message"].as_str().unwrap().contains(field), "{answer}");
        }
        let (status, answer) = app
            .get_with_token("/warehouse/packaging-requests?nextToken=zz", &token)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("nextToken"),
            "{answer}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_malformed_order_event_goes_to_the_dead_letter_queue_without_retries() {
    run(|app| async move {
        let bad = Event::new(
            sources::ORDERS,
            "OrderCreated",
            vec![],
            json!({ "orderId": "nope" }),
        );
        app.publish(std::slice::from_ref(&bad)).await;
        app.eventually("the dead letter", || async {
            !app.bus
                .dead_letters(Some(ON_ORDER_CREATED))
                .await
                .unwrap()
                .is_empty()
        })
        .await;
        let letters = app.bus.dead_letters(Some(ON_ORDER_CREATED)).await.unwrap();
        assert_eq!(letters[0].event.id, bad.id);
        assert_eq!(letters[0].attempts, 1);
        assert!(
            letters[0].last_error.contains("OrderCreated detail is malformed"),
            "{}",
            letters[0].last_error
        );
    })
    .await;
}
