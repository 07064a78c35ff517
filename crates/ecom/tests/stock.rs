//! Inventory (issue 14): the warehouse keeps stock per product, createOrder
//! reserves it atomically, and the reservation follows the order's life —
//! on SQLite + the embedded bus and PostgreSQL + NATS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, storages, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// A product in the catalogue, made by an admin; the stored product.
async fn product(app: &TestApp, admin: &str, price: i64) -> Value {
    let (status, body) = app
        .post_with_token(
            "/products/admin/products",
            admin,
            &json!({"name": "Lamp", "price": price, "category": "home",
                    "package": {"width": 100, "length": 100, "height": 100, "weight": 500}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn set_stock(app: &TestApp, staff: &str, product_id: &str, body: Value) -> (StatusCode, Value) {
    app.put_with_token(&format!("/warehouse/stock/{product_id}"), staff, &body)
        .await
}

async fn stock(app: &TestApp, staff: &str, product_id: &str) -> Value {
    let (status, body) = app
        .get_with_token(&format!("/warehouse/stock/{product_id}"), staff)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Waits until the product's stock is `(on_hand, reserved)`.
async fn wait_for_stock(app: &TestApp, staff: &str, product_id: &str, on_hand: i64, reserved: i64) {
    app.eventually(
        &format!("stock of {product_id} becomes {on_hand}/{reserved}"),
        || async {
            let s = stock(app, staff, product_id).await;
            s["onHand"] == on_hand && s["reserved"] == reserved && s["available"] == on_hand - reserved
        },
    )
    .await;
}

fn address() -> Value {
    json!({"name": "Ada Lovelace", "streetAddress": "Storgatan 1", "city": "Umeå",
           "country": "SE", "phoneNumber": "+46 1"})
}

/// createOrder through the orders backend (as the gateway calls it), free
/// delivery to Sweden; the answer.
async fn create_order(app: &TestApp, lines: &[(&Value, i64)], delivery_price: i64) -> Value {
    let products: Vec<Value> = lines
        .iter()
        .map(|(p, q)| {
            json!({"productId": p["productId"], "name": p["name"], "package": p["package"],
                   "price": p["price"], "quantity": q})
        })
        .collect();
    let total: i64 = lines
        .iter()
        .map(|(p, q)| p["price"].as_i64().unwrap() * q)
        .sum::<i64>()
        + delivery_price;
    let token = app.preauth(total.max(0)).await;
    let (status, body) = app
        .post_as_service(
            "/orders/backend/orders",
            &json!({"userId": "shopper-1", "order": {"products": products, "address": address(),
                    "deliveryPrice": delivery_price, "paymentToken": token}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn ordered(app: &TestApp, lines: &[(&Value, i64)]) -> String {
    let body = create_order(app, lines, 0).await;
    assert_eq!(body["success"], true, "{body}");
    body["order"]["orderId"].as_str().unwrap().to_owned()
}

async fn staff_call(app: &TestApp, staff: &str, path: &str, body: Value) {
    let (status, answer) = app.post_with_token(path, staff, &body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
}

/// Waits for the packaging request, then starts it.
async fn start_packaging(app: &TestApp, staff: &str, order_id: &str) {
    app.eventually("the packaging request appears", || async {
        let path = format!("/warehouse/packaging-requests/{order_id}");
        app.get_with_token(&path, staff).await.0 == StatusCode::OK
    })
    .await;
    staff_call(
        app,
        staff,
        "/warehouse/startPackaging",
        json!({"orderId": order_id}),
    )
    .await;
}

mod reservations {
    use super::*;

    #[tokio::test]
    async fn fifty_concurrent_orders_for_ten_units_give_exactly_ten_orders() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            let (status, body) = set_stock(&app, &admin, &id, json!({"onHand": 10})).await;
            assert_eq!(status, StatusCode::OK, "{body}");

            let answers = futures::future::join_all(
                (0..50).map(|_| async { create_order(&app, &[(&lamp, 1)], 0).await }),
            )
            .await;
            let won = answers.iter().filter(|a| a["success"] == true).count();
            assert_eq!(won, 10, "exactly the ten units are sold");
            for refused in answers.iter().filter(|a| a["success"] != true) {
                assert_eq!(
                    refused["errors"],
                    json!([format!("Out of stock: {id}")]),
                    "{refused}"
                );
            }
            let s = stock(&app, &admin, &id).await;
            assert_eq!(
                (
                    s["onHand"].as_i64(),
                    s["reserved"].as_i64(),
                    s["available"].as_i64()
                ),
                (Some(10), Some(10), Some(0))
            );
            // Asking again for what is left: refused, nothing moves.
            let again = create_order(&app, &[(&lamp, 1)], 0).await;
            assert_eq!(again["errors"], json!([format!("Out of stock: {id}")]));
        })
        .await;
    }

    #[tokio::test]
    async fn asking_again_for_an_orders_hold_holds_nothing_more() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let mug = product(&app, &admin, 300).await;
            let (lamp_id, mug_id) = (lamp["productId"].clone(), mug["productId"].clone());
            for id in [&lamp_id, &mug_id] {
                let (status, body) =
                    set_stock(&app, &admin, id.as_str().unwrap(), json!({"onHand": 5})).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            let order_id = Uuid::now_v7();
            let hold = json!({"orderId": order_id, "products": [{"productId": lamp_id, "quantity": 2}]});
            // The caller's retries, four at once, then one more: one hold.
            let answers = futures::future::join_all(
                (0..4).map(|_| app.post_as_service("/warehouse/backend/reservations", &hold)),
            )
            .await;
            for (status, body) in answers {
                assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{body}");
            }
            let (status, body) = app
                .post_as_service("/warehouse/backend/reservations", &hold)
                .await;
            assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{body}");
            // The same order asking for more lines changes nothing either.
            let more = json!({"orderId": order_id, "products": [
                {"productId": lamp_id, "quantity": 2}, {"productId": mug_id, "quantity": 1}]});
            let (status, body) = app
                .post_as_service("/warehouse/backend/reservations", &more)
                .await;
            assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{body}");
            let lamp_stock = stock(&app, &admin, lamp_id.as_str().unwrap()).await;
            assert_eq!(
                (lamp_stock["reserved"].as_i64(), lamp_stock["available"].as_i64()),
                (Some(2), Some(3))
            );
            assert_eq!(stock(&app, &admin, mug_id.as_str().unwrap()).await["reserved"], 0);

            // Another order for the lamp (known tracked by now) and an
            // untracked product: the lamp is held, the other needs nothing.
            let vase = product(&app, &admin, 900).await;
            let mixed = json!({"orderId": Uuid::now_v7(), "products": [
                {"productId": lamp_id, "quantity": 3}, {"productId": vase["productId"], "quantity": 7}]});
            let (status, body) = app
                .post_as_service("/warehouse/backend/reservations", &mixed)
                .await;
            assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{body}");
            assert_eq!(
                stock(&app, &admin, lamp_id.as_str().unwrap()).await["available"],
                0
            );
            let path = format!("/warehouse/stock/{}", vase["productId"].as_str().unwrap());
            assert_eq!(app.get_with_token(&path, &admin).await.0, StatusCode::NOT_FOUND);
            // ...and one more is refused for the lamp alone.
            let (status, body) = app
                .post_as_service(
                    "/warehouse/backend/reservations",
                    &json!({
                "orderId": Uuid::now_v7(), "products": [
                    {"productId": vase["productId"], "quantity": 1}, {"productId": lamp_id, "quantity": 1}]}),
                )
                .await;
            assert_eq!(
                (status, &body["outOfStock"]),
                (StatusCode::OK, &json!([lamp_id])),
                "{body}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn two_warehouse_replicas_on_postgresql_never_hold_more_than_there_is() {
        if !storages().contains(&common::Storage::Postgres) {
            eprintln!("SKIPPED: replicas need ECOM_TEST_DATABASE_URL");
            return;
        }
        let app = TestApp::spawn(common::Storage::Postgres).await;
        let replica = app.spawn_replica(&["warehouse"]).await;
        let admin = app.user_token(&["admin"]).await;
        let lamp = product(&app, &admin, 1500).await;
        let id = lamp["productId"].as_str().unwrap().to_owned();
        set_stock(&app, &admin, &id, json!({"onHand": 10})).await;

        // 50 holds of one unit, every other one through the second replica.
        let token = app.service_token("orders");
        let holds = (0..50).map(|i| {
            let base = if i % 2 == 0 {
                app.base.clone()
            } else {
                replica.base.clone()
            };
            let req = app
                .http
                .post(format!("{base}/warehouse/backend/reservations"))
                .bearer_auth(&token)
                .json(&json!({"orderId": Uuid::now_v7(), "products": [{"productId": id, "quantity": 1}]}));
            async move { common::send(req).await }
        });
        let answers = futures::future::join_all(holds).await;
        assert!(
            answers.iter().all(|(status, _)| *status == StatusCode::OK),
            "{answers:?}"
        );
        let held = answers.iter().filter(|(_, a)| a["ok"] == true).count();
        assert_eq!(held, 10, "{answers:?}");
        for (_, refused) in answers.iter().filter(|(_, a)| a["ok"] != true) {
            assert_eq!(refused["outOfStock"], json!([id]));
        }
        let s = stock(&app, &admin, &id).await;
        assert_eq!(
            (s["onHand"].as_i64(), s["reserved"].as_i64()),
            (Some(10), Some(10))
        );
        replica.stop().await;
        app.stop().await;
    }

    #[tokio::test]
    async fn an_order_refused_for_another_reason_gives_its_stock_back() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &admin, &id, json!({"onHand": 2})).await;

            // Sweden's delivery is free: 500 is the wrong price.
            let body = create_order(&app, &[(&lamp, 2)], 500).await;
            assert_eq!(body["success"], false, "{body}");
            assert_eq!(
                body["errors"],
                json!(["Wrong delivery price: got 500, expected 0"])
            );
            wait_for_stock(&app, &admin, &id, 2, 0).await;
            let released = app
                .metric("ecom_stock_reservations_total{outcome=\"released\"}")
                .await;
            assert!(released >= 1, "the release is counted");
            // The units can be bought at once.
            ordered(&app, &[(&lamp, 2)]).await;
            assert_eq!(stock(&app, &admin, &id).await["available"], 0);
        })
        .await;
    }

    #[tokio::test]
    async fn untracked_products_never_run_out_and_hold_nothing() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            ordered(&app, &[(&lamp, 1000)]).await;
            let (status, body) = app
                .get_with_token(&format!("/warehouse/stock/{id}"), &admin)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            assert!(body["message"].as_str().unwrap().contains("untracked"), "{body}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_reservation_whose_order_never_arrives_expires() {
        for storage in storages() {
            let app = TestApp::spawn_with_config(storage, |config| {
                config.reservation_ttl = std::time::Duration::from_secs(1);
            })
            .await;
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &admin, &id, json!({"onHand": 5})).await;

            // The caller reserves, then crashes before storing its order.
            let (status, body) = app
                .post_as_service(
                    "/warehouse/backend/reservations",
                    &json!({"orderId": Uuid::now_v7(), "products": [{"productId": id, "quantity": 3}]}),
                )
                .await;
            assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{body}");
            assert_eq!(stock(&app, &admin, &id).await["available"], 2);

            wait_for_stock(&app, &admin, &id, 5, 0).await;
            assert!(
                app.metric("ecom_stock_reservations_total{outcome=\"expired\"}")
                    .await
                    >= 1
            );

            // A real order's hold is confirmed by OrderCreated and outlives
            // the TTL: a hold made after it, never confirmed, expires while
            // the order's stays.
            let order_id = ordered(&app, &[(&lamp, 4)]).await;
            app.eventually("the warehouse handled OrderCreated", || async {
                let path = format!("/warehouse/packaging-requests/{order_id}");
                app.get_with_token(&path, &admin).await.0 == StatusCode::OK
            })
            .await;
            let (status, body) = app
                .post_as_service(
                    "/warehouse/backend/reservations",
                    &json!({"orderId": Uuid::now_v7(), "products": [{"productId": id, "quantity": 1}]}),
                )
                .await;
            assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{body}");
            assert_eq!(stock(&app, &admin, &id).await["reserved"], 5);
            wait_for_stock(&app, &admin, &id, 5, 4).await;
            app.stop().await;
        }
    }

    /// The sweeper finds expired holds in the expiry index (which keeps
    /// only holds not yet confirmed), not by reading every hold on each
    /// sweep, as SQLite's plan for the query it had (`DISTINCT order_id`)
    /// did. SQLite only: PostgreSQL's plan depends on its statistics.
    #[tokio::test]
    async fn the_sweeper_reads_expired_holds_from_the_expiry_index() {
        use ecom_storage::sqlx::{self, Row as _};
        let app = TestApp::spawn(common::Storage::Sqlite).await;
        let db = app.open_db("warehouse").await;
        let plan: Vec<String> = sqlx::query(&format!(
            "EXPLAIN QUERY PLAN {}",
            ecom_warehouse::stock::EXPIRED_HOLDS_SQL
        ))
        .bind(0i64)
        .bind(10i64)
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(3))
        .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("INDEX stock_reservations_by_expiry")),
            "{plan:?}"
        );
        app.stop().await;
    }
}

/// Migration 4 rebuilt the stock tables (as `WITHOUT ROWID` on SQLite):
/// what a warehouse held before it is there after, on both backends.
#[tokio::test]
async fn the_rebuilt_stock_tables_keep_their_rows() {
    use ecom_storage::sqlx::{self, Row as _};
    use ecom_storage::{Db, StorageTarget};
    let dir = tempfile::tempdir().unwrap();
    for storage in storages() {
        let prefix = format!("t{}_", &Uuid::new_v4().simple().to_string()[..10]);
        let target = storage.target(dir.path(), &prefix);
        let db = Db::open(&target, "warehouse").await.unwrap();
        let before = &ecom_warehouse::MIGRATIONS[..3];
        db.migrate("warehouse", before).await.unwrap();
        for sql in [
            "INSERT INTO stock (product_id, on_hand, reserved, modified_at) VALUES ('p', 10, 3, 't')",
            "INSERT INTO stock_reservations (order_id, product_id, quantity, expires_micros) VALUES ('o1', 'p', 2, NULL), ('o2', 'p', 1, 99)",
            "INSERT INTO stock_shipped (order_id, product_id, quantity) VALUES ('o0', 'p', 4)",
        ] {
            sqlx::query(sql).execute(db.writer()).await.unwrap();
        }
        db.migrate("warehouse", ecom_warehouse::MIGRATIONS).await.unwrap();
        let rows = |sql: &'static str| {
            let db = db.clone();
            async move {
                sqlx::query(sql)
                    .fetch_all(db.reader())
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<String, _>(i)
                                    .or_else(|_| r.try_get::<i64, _>(i).map(|v| v.to_string()))
                                    .unwrap_or_else(|_| "NULL".into())
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            rows("SELECT product_id, on_hand, reserved, modified_at FROM stock").await,
            ["p 10 3 t"],
            "{target:?}"
        );
        assert_eq!(
            rows("SELECT order_id, product_id, quantity, expires_micros FROM stock_reservations ORDER BY order_id").await,
            ["o1 p 2 NULL", "o2 p 1 99"],
            "{target:?}"
        );
        assert_eq!(
            rows("SELECT order_id, product_id, quantity FROM stock_shipped").await,
            ["o0 p 4"],
            "{target:?}"
        );
        if let StorageTarget::Sqlite { .. } = target {
            let tables = rows("SELECT sql FROM sqlite_master WHERE name IN ('stock', 'stock_reservations', 'stock_shipped')").await;
            assert_eq!(tables.len(), 3);
            assert!(tables.iter().all(|t| t.ends_with("WITHOUT ROWID")), "{tables:?}");
        }
        // The checks came along: reserved cannot pass onHand.
        assert!(
            sqlx::query("UPDATE stock SET reserved = 11 WHERE product_id = 'p'")
                .execute(db.writer())
                .await
                .is_err()
        );
        db.close().await;
        if let StorageTarget::Postgres {
            url, schema_prefix, ..
        } = &target
        {
            ecom_storage::drop_schemas(url, schema_prefix).await.unwrap();
        }
    }
}

mod following_the_order {
    use super::*;

    #[tokio::test]
    async fn packing_a_lowered_line_takes_what_was_packed_and_gives_the_rest_back() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let warehouse = app.user_token(&["warehouse"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &warehouse, &id, json!({"onHand": 10})).await;
            let order_id = ordered(&app, &[(&lamp, 3)]).await;
            wait_for_stock(&app, &warehouse, &id, 10, 3).await;

            start_packaging(&app, &warehouse, &order_id).await;
            staff_call(
                &app,
                &warehouse,
                "/warehouse/updatePackagingProduct",
                json!({"orderId": order_id, "productId": id, "quantity": 2}),
            )
            .await;
            staff_call(
                &app,
                &warehouse,
                "/warehouse/completePackaging",
                json!({"orderId": order_id}),
            )
            .await;
            wait_for_stock(&app, &warehouse, &id, 8, 0).await;
            let changed = app
                .wait_for_event("StockChanged after packing", |e| {
                    e.detail_type == "StockChanged" && e.detail.value()["onHand"] == 8
                })
                .await;
            assert_eq!(changed.source, "ecommerce.warehouse");
            assert_eq!(
                changed.detail,
                json!({"productId": id, "onHand": 8, "reserved": 0, "available": 8})
            );
        })
        .await;
    }

    #[tokio::test]
    async fn packaging_that_fails_releases_the_reservation() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &admin, &id, json!({"onHand": 4})).await;
            let order_id = ordered(&app, &[(&lamp, 4)]).await;
            start_packaging(&app, &admin, &order_id).await;
            staff_call(
                &app,
                &admin,
                "/warehouse/updatePackagingProduct",
                json!({"orderId": order_id, "productId": id, "quantity": 0}),
            )
            .await;
            staff_call(
                &app,
                &admin,
                "/warehouse/completePackaging",
                json!({"orderId": order_id}),
            )
            .await;
            wait_for_stock(&app, &admin, &id, 4, 0).await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_failed_delivery_puts_the_goods_back_once_even_when_redelivered() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &admin, &id, json!({"onHand": 6})).await;
            let order_id = ordered(&app, &[(&lamp, 2)]).await;
            start_packaging(&app, &admin, &order_id).await;
            staff_call(
                &app,
                &admin,
                "/warehouse/completePackaging",
                json!({"orderId": order_id}),
            )
            .await;
            wait_for_stock(&app, &admin, &id, 4, 0).await;

            app.eventually("the delivery appears", || async {
                let path = format!("/delivery/deliveries/{order_id}");
                app.get_with_token(&path, &admin).await.0 == StatusCode::OK
            })
            .await;
            staff_call(
                &app,
                &admin,
                "/delivery/startDelivery",
                json!({"orderId": order_id}),
            )
            .await;
            staff_call(
                &app,
                &admin,
                "/delivery/failDelivery",
                json!({"orderId": order_id}),
            )
            .await;
            wait_for_stock(&app, &admin, &id, 6, 0).await;

            // The same DeliveryFailed again (redelivery), and a new event for
            // the same order (replay under another id): nothing more moves.
            let failed = app
                .wait_for_event("DeliveryFailed", |e| {
                    e.detail_type == "DeliveryFailed" && e.resources.contains(&order_id)
                })
                .await;
            let mut replayed = failed.clone();
            replayed.id = Uuid::now_v7();
            app.publish(&[failed.clone(), replayed.clone()]).await;
            app.handled("warehouse", "warehouse.on-delivery-failed", &replayed)
                .await;
            assert_eq!(stock(&app, &admin, &id).await["onHand"], 6);
        })
        .await;
    }

    #[tokio::test]
    async fn a_replayed_order_created_or_deleted_moves_nothing_twice() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &admin, &id, json!({"onHand": 9})).await;
            let order_id = ordered(&app, &[(&lamp, 3)]).await;
            let created = app
                .wait_for_event("OrderCreated", |e| {
                    e.detail_type == "OrderCreated" && e.resources.contains(&order_id)
                })
                .await;
            let mut again = created.clone();
            again.id = Uuid::now_v7();
            app.publish(&[again.clone()]).await;
            app.handled("warehouse", "warehouse.on-order-created", &again)
                .await;
            wait_for_stock(&app, &admin, &id, 9, 3).await;

            // The order is deleted (an OrderDeleted with the order as it was),
            // delivered twice under two ids: released once.
            let deleted = ecom_platform::Event::new(
                "ecommerce.orders",
                "OrderDeleted",
                vec![order_id.clone()],
                created.detail.value(),
            );
            let mut deleted_again = deleted.clone();
            deleted_again.id = Uuid::now_v7();
            app.publish(&[deleted.clone(), deleted_again.clone()]).await;
            app.handled("warehouse", "warehouse.on-order-deleted", &deleted)
                .await;
            app.handled("warehouse", "warehouse.on-order-deleted", &deleted_again)
                .await;
            wait_for_stock(&app, &admin, &id, 9, 0).await;
        })
        .await;
    }
}

mod staff {
    use super::*;

    #[tokio::test]
    async fn bad_stock_values_are_refused_naming_the_field_and_change_nothing() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            set_stock(&app, &admin, &id, json!({"onHand": 3})).await;
            ordered(&app, &[(&lamp, 2)]).await;

            for (body, needle) in [
                (json!({"onHand": -1}), "onHand: must be between 0"),
                (json!({"onHand": 2.5}), "onHand: must be a whole number"),
                (json!({"onHand": "7"}), "onHand: must be a whole number"),
                (json!({}), "onHand: missing field"),
                (json!({"onHand": 1}), "onHand: 2 units"),
            ] {
                let (status, answer) = set_stock(&app, &admin, &id, body.clone()).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
                let message = answer["message"].as_str().unwrap();
                assert!(message.contains(needle), "{body}: {message}");
            }
            let unknown = Uuid::new_v4();
            let (status, answer) = set_stock(&app, &admin, &unknown.to_string(), json!({"onHand": 1})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
            assert!(answer["message"]
                .as_str()
                .unwrap()
                .contains("productId: the catalogue has no product"));
            let (status, _) = set_stock(&app, &admin, "not-an-id", json!({"onHand": 1})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);

            let s = stock(&app, &admin, &id).await;
            assert_eq!((s["onHand"].as_i64(), s["reserved"].as_i64()), (Some(3), Some(2)));
            let (status, _) = app
                .get_with_token(&format!("/warehouse/stock/{unknown}"), &admin)
                .await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "nothing was made for the unknown product"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn graphql_staff_set_and_read_stock_and_shoppers_see_availability() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let warehouse = app.user_token(&["warehouse"]).await;
            let shopper = app.user_token(&[]).await;
            let lamp = product(&app, &admin, 1500).await;
            let other = product(&app, &admin, 900).await;
            let id = lamp["productId"].as_str().unwrap().to_owned();
            let gql = |token: Option<String>, query: &'static str, variables: Value| {
                let app = &app;
                async move {
                    let mut req = app.http.post(app.url("/graphql")).json(&json!({"query": query, "variables": variables}));
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    common::send(req).await.1
                }
            };
            const SET: &str = "mutation($id: ID!, $n: Int!) { setStock(productId: $id, onHand: $n) { productId onHand reserved available } }";
            const GET: &str = "query($id: ID!) { getStock(productId: $id) { onHand available } }";

            let body = gql(Some(warehouse.clone()), SET, json!({"id": id, "n": 7})).await;
            assert_eq!(
                body["data"]["setStock"],
                json!({"productId": id, "onHand": 7, "reserved": 0, "available": 7}),
                "{body}"
            );
            let body = gql(Some(shopper.clone()), SET, json!({"id": id, "n": 70})).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
            let body = gql(Some(admin.clone()), SET, json!({"id": id, "n": -3})).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
            let body = gql(Some(admin.clone()), SET, json!({"id": Uuid::new_v4(), "n": 3})).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");

            let body = gql(Some(admin.clone()), GET, json!({"id": id})).await;
            assert_eq!(body["data"]["getStock"], json!({"onHand": 7, "available": 7}), "{body}");
            let body = gql(Some(admin.clone()), GET, json!({"id": other["productId"]})).await;
            assert_eq!(body["data"]["getStock"], Value::Null, "untracked: {body}");
            let body = gql(None, GET, json!({"id": id})).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{body}");

            ordered(&app, &[(&lamp, 2)]).await;
            let body = gql(
                None,
                "query($id: ID!) { getProduct(productId: $id) { productId available } }",
                json!({"id": id}),
            )
            .await;
            assert_eq!(body["data"]["getProduct"]["available"], 5, "{body}");
            let body = gql(None, "{ getProductsByCategory(category: \"home\") { products { productId available } } }", json!({})).await;
            let products = body["data"]["getProductsByCategory"]["products"].as_array().unwrap().clone();
            let available = |pid: &Value| {
                products
                    .iter()
                    .find(|p| &p["productId"] == pid)
                    .map(|p| p["available"].clone())
            };
            assert_eq!(available(&lamp["productId"]), Some(json!(5)), "{body}");
            assert_eq!(available(&other["productId"]), Some(Value::Null), "untracked: {body}");
        })
        .await;
    }

    #[tokio::test]
    async fn the_cli_sets_stock_and_an_import_file_may_carry_it() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let lamp = product(&app, &admin, 1500).await;
            let id: Uuid = lamp["productId"].as_str().unwrap().parse().unwrap();
            let target = app.storage_target();
            let stock_now = ecom::cli::stock::set(&target, id, 12).await.unwrap();
            assert_eq!((stock_now.on_hand, stock_now.available), (12, 12));
            let err = ecom::cli::stock::set(&target, Uuid::new_v4(), 1)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("the catalogue has no product"), "{err}");
            let err = ecom::cli::stock::set(&target, id, -1).await.unwrap_err();
            assert!(err.to_string().contains("must be between 0"), "{err}");

            let new_id = Uuid::new_v4();
            let file = json!([
                {"productId": new_id, "name": "Vase", "price": 2000, "category": "home",
                 "package": {"width": 100, "length": 100, "height": 300, "weight": 900}, "stock": 3},
                {"productId": Uuid::new_v4(), "name": "Bowl", "price": 900,
                 "package": {"width": 100, "length": 100, "height": 100, "weight": 300}, "stock": -2}
            ])
            .to_string();
            ecom::cli::products::import_text(&target, &file).await.unwrap();
            let report = ecom::cli::products::import_stock(&target, &file).await.unwrap();
            assert_eq!(report.set, 1);
            assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
            assert!(
                report.refused[0].starts_with("[1]: stock:"),
                "{:?}",
                report.refused
            );
            app.eventually("the imported stock is visible", || async {
                let path = format!("/warehouse/stock/{new_id}");
                let (status, body) = app.get_with_token(&path, &admin).await;
                status == StatusCode::OK && body["onHand"] == 3
            })
            .await;
            // The CLI's StockChanged leaves through the outbox to the bus.
            app.wait_for_event("StockChanged from the CLI", |e| {
                e.detail_type == "StockChanged" && e.detail.value()["productId"] == json!(new_id)
            })
            .await;
        })
        .await;
    }
}
