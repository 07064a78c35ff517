//! Log lines carry the span of the request they were written for
//! (`request{request_id, method, route}`, docs/operations.md "Logs"). With
//! traces off, a call between services in one process gets no span of its
//! own: what the callee logs carries its caller's span, so one createOrder
//! is one request id in the log, and the internal calls do not pay for
//! spans. A request from outside the process always gets its span.
//!
//! The subscriber is process-wide, so this binary installs one for its
//! only test: a layer that records every `request` span's fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

/// `route` and `request_id` of a `request` span.
#[derive(Debug, Clone, Default)]
struct RequestSpan {
    route: String,
    request_id: String,
}

impl tracing::field::Visit for RequestSpan {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "route" => self.route = format!("{value:?}").trim_matches('"').to_owned(),
            "request_id" => self.request_id = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "route" => self.route = value.to_owned(),
            "request_id" => self.request_id = value.to_owned(),
            _ => {}
        }
    }
}

/// Records the `request` spans made.
struct Recorder(Arc<Mutex<Vec<RequestSpan>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "request" {
            let mut span = RequestSpan::default();
            attrs.record(&mut span);
            self.0.lock().unwrap().push(span);
        }
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
    let spans: Arc<Mutex<Vec<RequestSpan>>> = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Recorder(spans.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    assert!(!ecom_runtime::telemetry::tracing_enabled(), "traces are off here");

    on_each_storage(|app| {
        let spans = spans.clone();
        async move {
            spans.lock().unwrap().clear();
            create_order(&app, "log-context-1").await;
            let made = spans.lock().unwrap().clone();
            // The gateway's request, with the caller's id: and no span for
            // the gateway's call to orders, nor for orders' checks with
            // products, delivery-pricing, payment and the warehouse.
            let mine: Vec<&str> = made
                .iter()
                .filter(|s| s.request_id == "log-context-1")
                .map(|s| s.route.as_str())
                .collect();
            assert_eq!(mine, ["/graphql"], "{made:?}");
            for internal in [
                "/orders/backend/orders",
                "/products/backend/validate",
                "/delivery-pricing/backend/pricing",
                "/payment/backend/validate",
                "/warehouse/backend/reservations",
            ] {
                assert!(
                    !made.iter().any(|s| s.route == internal),
                    "{internal} got a span of its own: {made:?}"
                );
            }

            // The same route called from outside the process has its span.
            spans.lock().unwrap().clear();
            let (status, body) = app
                .get_with_token(
                    "/orders/backend/users/someone/orders",
                    &app.service_token("gateway"),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let made = spans.lock().unwrap().clone();
            assert!(
                made.iter()
                    .any(|s| s.route == "/orders/backend/users/{user_id}/orders"),
                "{made:?}"
            );
            app.stop().await;
        }
    })
    .await;
}
