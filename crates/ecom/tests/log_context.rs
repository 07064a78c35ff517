//! Log lines carry the request they were written for
//! (`request{request_id, method, route}`, docs/operations.md "Logs"). With
//! traces off, a call between services in one process keeps its caller's
//! context: what the callee logs names its caller's request, so one
//! createOrder is one request id in the log. A request from outside the
//! process always has its own.
//!
//! The subscriber is process-wide, so this binary installs one for its
//! only test: a layer that records, for every `answered` line (written at
//! `debug` for each answer, enabled here, where nothing filters), the URI
//! it is for and the request the log names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, TestApp};
use ecom_runtime::logs::CurrentRequest;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

/// An `answered` line: the URI it is for, and the request the log names.
#[derive(Debug, Clone)]
struct Line {
    uri: String,
    request: Option<CurrentRequest>,
}

/// The `uri` field of a line.
struct Uri(String);

impl tracing::field::Visit for Uri {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "uri" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Records the `answered` lines.
struct Recorder(Arc<Mutex<Vec<Line>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "ecom_runtime::server" {
            return;
        }
        let mut uri = Uri(String::new());
        event.record(&mut uri);
        if uri.0.is_empty() {
            return;
        }
        self.0.lock().unwrap().push(Line {
            uri: uri.0,
            request: ecom_runtime::logs::current_request(),
        });
    }
}

async fn create_order(app: &TestApp, request_id: &str) {
    let admin = app.user_token(&["admin"]).await;
    let shopper = app.user_token(&[]).await;
    let package = json!({"width": 100, "length": 100, "height": 100, "weight": 500});
    let (status, body) = app
        .post_with_token(
            "/products/admin/products",
            &admin,
            &json!({"name": "Teapot", "price": 700, "package": package}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let line = json!({"productId": body["productId"], "name": "Teapot", "price": 700, "package": package, "quantity": 1});
    let payment_token = app.preauth(700).await;
    let address = json!({"name": "Ada", "streetAddress": "Storgatan 1", "city": "Umeå", "country": "SE", "phoneNumber": "+46 1"});
    let req = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&shopper)
        .header("x-request-id", request_id)
        .json(&json!({
            "query": "mutation($o: CreateOrderRequest!) { createOrder(order: $o) { success errors } }",
            "variables": {"o": {"products": [line], "address": address, "deliveryPrice": 0, "paymentToken": payment_token}},
        }));
    let (status, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["createOrder"]["success"], true, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_between_services_in_one_process_log_under_their_callers_request() {
    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Recorder(lines.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    assert!(!ecom_runtime::telemetry::tracing_enabled(), "traces are off here");

    on_each_storage(|app| {
        let lines = lines.clone();
        async move {
            lines.lock().unwrap().clear();
            create_order(&app, "log-context-1").await;
            let written = lines.lock().unwrap().clone();
            // The gateway's request, and its calls to orders, and orders'
            // checks with products, delivery-pricing, payment and the
            // warehouse: every line names the gateway's request, with the
            // caller's id.
            for uri in [
                "/graphql",
                "/orders/backend/orders",
                "/products/backend/validate",
                "/delivery-pricing/backend/pricing",
                "/payment/backend/validate",
                "/warehouse/backend/reservations",
            ] {
                let about: Vec<&Line> = written.iter().filter(|l| l.uri.ends_with(uri)).collect();
                assert!(!about.is_empty(), "no line about {uri}: {written:?}");
                for line in about {
                    let request = line.request.as_ref().expect("a line inside a request names it");
                    assert_eq!(request.request_id, "log-context-1", "{line:?}");
                    assert_eq!(request.route, "/graphql", "{line:?}");
                    assert_eq!(request.method, "POST", "{line:?}");
                }
            }

            // The same route called from outside the process is a request
            // of its own, with an id of its own.
            lines.lock().unwrap().clear();
            let (status, body) = app
                .get_with_token(
                    "/orders/backend/users/someone/orders",
                    &app.service_token("gateway"),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let written = lines.lock().unwrap().clone();
            let about: Vec<&Line> = written
                .iter()
                .filter(|l| l.uri.ends_with("/orders/backend/users/someone/orders"))
                .collect();
            assert!(!about.is_empty(), "{written:?}");
            for line in about {
                let request = line.request.as_ref().expect("a line inside a request names it");
                assert_eq!(
                    request.route, "/orders/backend/users/{user_id}/orders",
                    "{line:?}"
                );
                assert_eq!(request.method, "GET", "{line:?}");
                assert_ne!(request.request_id, "log-context-1", "{line:?}");
            }
            app.stop().await;
        }
    })
    .await;
}
