//! Issue 2: the platform skeleton, payment-3p and delivery-pricing, over
//! real HTTP, on SQLite and (when configured) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn preauth(app: &TestApp, amount: i64) -> String {
    let (status, body) = app
        .post(
            "/payment-3p/preauth",
            &json!({"cardNumber": "1234567890123456", "amount": amount}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["paymentToken"].as_str().unwrap().to_owned()
}

fn address(country: &str) -> Value {
    json!({"name": "Ada", "streetAddress": "1 Main St", "city": "Town", "country": country, "phoneNumber": "+100"})
}

fn product(w: i64, l: i64, h: i64, weight: i64, quantity: i64) -> Value {
    json!({
        "productId": "f380305b-99fe-45ba-b1ab-ba6349d141a2",
        "name": "Box", "price": 100,
        "package": {"width": w, "length": l, "height": h, "weight": weight},
        "quantity": quantity
    })
}

mod platform {
    use super::*;

    #[tokio::test]
    async fn health_and_readiness_answer_ok() {
        on_each_storage(|app| async move {
            assert_eq!(
                app.get("/healthz").await,
                (StatusCode::OK, json!({"status": "ok"}))
            );
            assert_eq!(
                app.get("/readyz").await,
                (StatusCode::OK, json!({"status": "ready"}))
            );
            let text = app.http.get(app.url("/metrics")).send().await.unwrap();
            assert_eq!(text.status(), StatusCode::OK);
            // And its figures follow the traffic: three more answered
            // listings count three more (at least: tests share the process).
            let series = "ecom_http_requests_total{method=\"GET\",route=\"/products/products\",service=\"products\",status=\"2xx\"}";
            let before = app.metric(series).await;
            for _ in 0..3 {
                assert_eq!(app.get("/products/products").await.0, StatusCode::OK);
            }
            let after = app.metric(series).await;
            assert!(after >= before + 3, "{series}: {before} → {after}");
        })
        .await;
    }

    #[tokio::test]
    async fn unknown_routes_answer_json_404() {
        on_each_storage(|app| async move {
            let (status, body) = app.get("/nowhere").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["message"], "no route for GET /nowhere");
        })
        .await;
    }

    #[tokio::test]
    async fn backend_routes_refuse_callers_without_a_service_credential() {
        on_each_storage(|app| async move {
            let body = json!({"products": [], "address": address("SE")});
            let (status, err) = app.post("/delivery-pricing/backend/pricing", &body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(err["message"].as_str().unwrap().contains("service credential"));

            let (status, _) = app
                .post_with_token("/delivery-pricing/backend/pricing", "garbage", &body)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);

            // A credential signed by another platform's key is refused too.
            let foreign = ecom_runtime::ServiceKey::from_secret(b"another-platform-secret-key-0000");
            let token = foreign.issue("orders").unwrap();
            let (status, _) = app
                .post_with_token("/delivery-pricing/backend/pricing", &token, &body)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);

            let (status, _) = app
                .post_as_service("/delivery-pricing/backend/pricing", &body)
                .await;
            assert_eq!(status, StatusCode::OK);
        })
        .await;
    }
}

mod payment_3p {
    use super::*;

    #[tokio::test]
    async fn a_preauthorised_token_covers_its_amount_and_no_more() {
        on_each_storage(|app| async move {
            let token = preauth(&app, 5000).await;
            for (amount, ok) in [(0, true), (4999, true), (5000, true), (5001, false)] {
                let (status, body) = app
                    .post_as_service(
                        "/payment-3p/check",
                        &json!({"paymentToken": token, "amount": amount}),
                    )
                    .await;
                assert_eq!(
                    (status, body),
                    (StatusCode::OK, json!({"ok": ok})),
                    "amount {amount}"
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_preauthorisations_each_get_their_own_token_and_amount() {
        on_each_storage(|app| async move {
            let amounts: Vec<i64> = (1..=40).map(|i| i * 100).collect();
            let tokens = futures::future::join_all(amounts.iter().map(|a| preauth(&app, *a))).await;
            let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
            assert_eq!(
                distinct.len(),
                amounts.len(),
                "every pre-authorisation has its own token"
            );
            for (token, amount) in tokens.iter().zip(&amounts) {
                let held = json!({"paymentToken": token, "amount": amount});
                assert_eq!(
                    app.post_as_service("/payment-3p/check", &held).await.1,
                    json!({"ok": true})
                );
                let more = json!({"paymentToken": token, "amount": amount + 1});
                assert_eq!(
                    app.post_as_service("/payment-3p/check", &more).await.1,
                    json!({"ok": false})
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn update_amount_only_lowers_the_held_amount() {
        on_each_storage(|app| async move {
            let token = preauth(&app, 5000).await;
            let update = |amount: i64| {
                let app = &app;
                let token = token.clone();
                async move {
                    app.post_as_service(
                        "/payment-3p/updateAmount",
                        &json!({"paymentToken": token, "amount": amount}),
                    )
                    .await
                }
            };
            assert_eq!(update(6000).await.1, json!({"ok": false}));
            assert_eq!(update(3000).await.1, json!({"ok": true}));
            let (_, body) = app
                .post_as_service(
                    "/payment-3p/check",
                    &json!({"paymentToken": token, "amount": 3001}),
                )
                .await;
            assert_eq!(body, json!({"ok": false}), "the held amount is now 3000");
            assert_eq!(
                update(4000).await.1,
                json!({"ok": false}),
                "cannot go back above the held amount"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn processing_consumes_the_token() {
        on_each_storage(|app| async move {
            let token = preauth(&app, 100).await;
            let body = json!({"paymentToken": token});
            assert_eq!(
                app.post_as_service("/payment-3p/processPayment", &body).await.1,
                json!({"ok": true})
            );
            assert_eq!(
                app.post_as_service("/payment-3p/processPayment", &body).await.1,
                json!({"ok": false})
            );
            assert_eq!(
                app.post_as_service("/payment-3p/cancelPayment", &body).await.1,
                json!({"ok": false})
            );
            let check = json!({"paymentToken": token, "amount": 0});
            assert_eq!(
                app.post_as_service("/payment-3p/check", &check).await.1,
                json!({"ok": false})
            );
        })
        .await;
    }

    #[tokio::test]
    async fn cancelling_consumes_the_token() {
        on_each_storage(|app| async move {
            let token = preauth(&app, 100).await;
            let body = json!({"paymentToken": token});
            assert_eq!(
                app.post_as_service("/payment-3p/cancelPayment", &body).await.1,
                json!({"ok": true})
            );
            assert_eq!(
                app.post_as_service("/payment-3p/processPayment", &body).await.1,
                json!({"ok": false})
            );
        })
        .await;
    }

    #[tokio::test]
    async fn unknown_tokens_answer_ok_false() {
        on_each_storage(|app| async move {
            let unknown = "63fa7809-a708-461f-99e8-13c48bbb5dbb";
            for path in ["/payment-3p/processPayment", "/payment-3p/cancelPayment"] {
                assert_eq!(
                    app.post_as_service(path, &json!({"paymentToken": unknown})).await,
                    (StatusCode::OK, json!({"ok": false}))
                );
            }
            for path in ["/payment-3p/check", "/payment-3p/updateAmount"] {
                let body = json!({"paymentToken": "not-even-a-uuid", "amount": 1});
                assert_eq!(
                    app.post_as_service(path, &body).await,
                    (StatusCode::OK, json!({"ok": false}))
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn two_concurrent_payments_on_one_token_succeed_once() {
        on_each_storage(|app| async move {
            for _ in 0..5 {
                let token = preauth(&app, 100).await;
                let body = json!({"paymentToken": token});
                let calls = (0..8).map(|_| app.post_as_service("/payment-3p/processPayment", &body));
                let results = futures::future::join_all(calls).await;
                let wins = results.iter().filter(|(_, b)| b["ok"] == true).count();
                assert!(results.iter().all(|(s, _)| *s == StatusCode::OK));
                assert_eq!(wins, 1, "{results:?}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_400_naming_the_field() {
        on_each_storage(|app| async move {
            let cases: &[(&str, &str, &str)] = &[
                (
                    "/payment-3p/preauth",
                    "not json",
                    "request body is not valid JSON",
                ),
                ("/payment-3p/preauth", "", "request body is empty"),
                (
                    "/payment-3p/preauth",
                    r#"{"amount": 5}"#,
                    "missing field `cardNumber`",
                ),
                (
                    "/payment-3p/preauth",
                    r#"{"cardNumber": "1234567890123456"}"#,
                    "missing field `amount`",
                ),
                (
                    "/payment-3p/preauth",
                    r#"{"cardNumber": "123456789012345", "amount": 5}"#,
                    "cardNumber: must be a string of 16 digits",
                ),
                (
                    "/payment-3p/preauth",
                    r#"{"cardNumber": 1234567890123456, "amount": 5}"#,
                    "cardNumber: invalid type",
                ),
                (
                    "/payment-3p/preauth",
                    r#"{"cardNumber": "1234567890123456", "amount": -5}"#,
                    "amount: must be a non-negative integer",
                ),
                (
                    "/payment-3p/preauth",
                    r#"{"cardNumber": "1234567890123456", "amount": 1.5}"#,
                    "amount: invalid type",
                ),
                (
                    "/payment-3p/preauth",
                    r#"{"cardNumber": "1234567890123456", "amount": "5"}"#,
                    "amount: invalid type",
                ),
                (
                    "/payment-3p/check",
                    r#"{"paymentToken": "x"}"#,
                    "missing field `amount`",
                ),
                (
                    "/payment-3p/check",
                    r#"{"paymentToken": 5, "amount": 1}"#,
                    "paymentToken: invalid type",
                ),
                (
                    "/payment-3p/updateAmount",
                    r#"{"paymentToken": "x", "amount": -1}"#,
                    "amount: must be a non-negative integer",
                ),
                (
                    "/payment-3p/processPayment",
                    r#"{}"#,
                    "missing field `paymentToken`",
                ),
                ("/payment-3p/cancelPayment", r#"[1,2]"#, "invalid type"),
            ];
            for (path, body, want) in cases {
                // Merchant routes check the credential first: send one.
                let (status, answer) = common::send(
                    app.http
                        .post(app.url(path))
                        .bearer_auth(app.service_token("tests"))
                        .body(body.to_string()),
                )
                .await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
                let message = answer["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains(want),
                    "{path} {body}: got '{message}', want '{want}'"
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn tokens_survive_a_restart() {
        // SQLite only: the data dir is what persists across restarts.
        let dir = tempfile::tempdir().unwrap();
        let args = ecom_runtime::ConfigArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let config = || {
            ecom_runtime::Config::merge(&args, ecom_runtime::ConfigFile::default(), &[], |_| None).unwrap()
        };
        let mut token = String::new();
        for round in 0..2 {
            let app = ecom::App::build(config(), &[]).await.unwrap();
            let base = format!("http://{}", app.addr().unwrap());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(app.run(async move {
                let _ = rx.await;
            }));
            let http = reqwest::Client::new();
            if round == 0 {
                let req = http
                    .post(format!("{base}/payment-3p/preauth"))
                    .json(&json!({"cardNumber": "1234567890123456", "amount": 700}));
                let (_, body) = common::send(req).await;
                token = body["paymentToken"].as_str().unwrap().to_owned();
            } else {
                let merchant = ecom_runtime::ServiceKey::load_or_create(None, dir.path())
                    .unwrap()
                    .issue("tests")
                    .unwrap();
                let req = http
                    .post(format!("{base}/payment-3p/check"))
                    .bearer_auth(merchant)
                    .json(&json!({"paymentToken": token, "amount": 700}));
                assert_eq!(common::send(req).await.1, json!({"ok": true}));
            }
            tx.send(()).unwrap();
            handle.await.unwrap().unwrap();
        }
    }
}

mod delivery_pricing {
    use super::*;

    async fn price(app: &TestApp, products: Value, country: &str) -> (StatusCode, Value) {
        app.post_as_service(
            "/delivery-pricing/backend/pricing",
            &json!({"products": products, "address": address(country)}),
        )
        .await
    }

    #[tokio::test]
    async fn pricing_counts_boxes_by_volume_and_weight_and_quantity() {
        on_each_storage(|app| async move {
            let cases = [
                (json!([product(100, 100, 100, 100, 1)]), "US", 1500),
                (json!([product(500, 500, 500, 1, 3)]), "DE", 3000),
                (json!([product(10, 10, 10, 5000, 5)]), "JP", 7500),
                (json!([product(500, 500, 500, 1, 2)]), "PL", 2000),
                (json!([product(500, 500, 500, 1, 2)]), "se", 0),
                (
                    json!([product(400, 400, 400, 100, 1), product(400, 400, 400, 100, 1)]),
                    "CA",
                    3000,
                ),
                (json!([]), "US", 0),
            ];
            for (products, country, want) in cases {
                let (status, body) = price(&app, products.clone(), country).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body, json!({"pricing": want}), "{products} to {country}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn quantity_defaults_to_one() {
        on_each_storage(|app| async move {
            let mut p = product(500, 500, 500, 1, 1);
            p.as_object_mut().unwrap().remove("quantity");
            assert_eq!(price(&app, json!([p]), "US").await.1, json!({"pricing": 1500}));
        })
        .await;
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_400_naming_the_field() {
        on_each_storage(|app| async move {
            let cases = [
                (json!({"address": address("US")}), "missing field `products`"),
                (json!({"products": []}), "missing field `address`"),
                (
                    json!({"products": [product(1, 1, 1, 1, 0)], "address": address("US")}),
                    "products[0].quantity",
                ),
                (
                    json!({"products": [product(-1, 1, 1, 1, 1)], "address": address("US")}),
                    "products[0].package.width",
                ),
                (
                    json!({"products": [], "address": address("USA")}),
                    "address.country",
                ),
                (
                    json!({"products": "none", "address": address("US")}),
                    "products: invalid type",
                ),
                (
                    json!({"products": [{"quantity": 1}], "address": address("US")}),
                    "missing field `package`",
                ),
            ];
            for (body, want) in cases {
                let (status, answer) = app
                    .post_as_service("/delivery-pricing/backend/pricing", &body)
                    .await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
                let message = answer["message"].as_str().unwrap_or_default();
                assert!(message.contains(want), "{body}: got '{message}', want '{want}'");
            }
        })
        .await;
    }
}
