//! Issue 16, traces: one createOrder is one trace, from the GraphQL
//! request through orders, the bus and the handlers it triggers, in one
//! process and across processes (HTTP and NATS between them); and every
//! request has an id, answered in `x-request-id`.
//!
//! Spans go to an OTLP/HTTP receiver inside this test binary. The tracing
//! subscriber is process-wide, so this binary installs it once for all its
//! tests (`telemetry::init_with`, no environment variables) and each test
//! finds its own trace by the `traceparent` it sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, Storage, TestApp};
use ecom_runtime::telemetry::{self, Telemetry, TraceExport};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Spans received, and the telemetry handle that flushes the exporter.
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    telemetry: Telemetry,
}

/// The receiver and the subscriber exporting to it, set up by the first
/// test that asks. The receiver runs on a thread of its own: each test has
/// its own runtime, gone when that test ends.
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = spans.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let sink = sink.clone();
                        async move {
                            let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                                return StatusCode::BAD_REQUEST;
                            };
                            let mut spans = sink.lock().unwrap();
                            for resource in request.resource_spans {
                                for scope in resource.scope_spans {
                                    spans.extend(scope.spans);
                                }
                            }
                            StatusCode::OK
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        let telemetry = telemetry::init_with(
            ecom_runtime::LogFormat::Human,
            Some(TraceExport {
                endpoint: Some(format!("http://{addr}/v1/traces")),
            }),
        );
        assert!(
            telemetry::tracing_enabled(),
            "another subscriber was installed first"
        );
        Collector { spans, telemetry }
    })
}

/// A trace of this test's own: the `traceparent` it sends, its trace id
/// and the id of the (imaginary) caller span, in hex.
fn new_trace() -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(span: &Span) -> SpanKind {
    SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified)
}

/// The spans of one trace, by span id.
struct Trace(Vec<Span>);

impl Trace {
    fn find(&self, what: impl Fn(&Span) -> bool) -> Option<&Span> {
        self.0.iter().find(|s| what(s))
    }

    fn parent(&self, span: &Span) -> Option<&Span> {
        self.0.iter().find(|s| s.span_id == span.parent_span_id)
    }

    /// Whether `ancestor` is on the path from `span` to the root (each
    /// link a recorded parent).
    fn descends_from(&self, span: &Span, ancestor: &Span) -> bool {
        let mut at = span;
        while let Some(parent) = self.parent(at) {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            at = parent;
        }
        false
    }

    fn names(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| format!("{} ({:?}, parent {})", s.name, kind(s), hex(&s.parent_span_id)))
            .collect()
    }
}

/// Waits until the spans of `trace_id` hold everything `complete` wants,
/// flushing the exporter as it goes; the trace then.
async fn wait_for_trace(trace_id: &str, complete: impl Fn(&Trace) -> bool) -> Trace {
    let collector = collector();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        collector.telemetry.flush().await;
        let spans: Vec<Span> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        let trace = Trace(spans);
        if complete(&trace) {
            return trace;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("the trace is incomplete after 20 s: {:#?}", trace.names());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A catalogue product with stock, as an order line of one.
async fn product(app: &TestApp, admin: &str) -> Value {
    let package = json!({"width": 100, "length": 100, "height": 100, "weight": 500});
    let (status, body) = app
        .post_with_token(
            "/products/admin/products",
            admin,
            &json!({"name": "Teapot", "price": 700, "package": package}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["productId"].as_str().unwrap().to_owned();
    let (status, body) = app
        .put_with_token(&format!("/warehouse/stock/{id}"), admin, &json!({"onHand": 5}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json!({"productId": id, "name": "Teapot", "price": 700, "package": package, "quantity": 1})
}

/// createOrder through the gateway at `base`, sent with `traceparent`;
/// the order id.
async fn create_order(app: &TestApp, base: &str, traceparent: &str) -> String {
    collector();
    let admin = app.user_token(&["admin"]).await;
    let shopper = app.user_token(&[]).await;
    let line = product(app, &admin).await;
    let payment_token = app.preauth(700).await;
    let address = json!({"name": "Ada", "streetAddress": "Storgatan 1", "city": "Umeå", "country": "SE", "phoneNumber": "+46 1"});
    let req = app
        .http
        .post(format!("{base}/graphql"))
        .bearer_auth(&shopper)
        .header("traceparent", traceparent)
        .json(&json!({
            "query": "mutation($o: CreateOrderRequest!) { createOrder(order: $o) { success errors order { orderId } } }",
            "variables": {"o": {"products": [line], "address": address, "deliveryPrice": 0, "paymentToken": payment_token}},
        }));
    let (status, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["createOrder"]["success"], true, "{body}");
    body["data"]["createOrder"]["order"]["orderId"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn is_server(span: &Span, name: &str) -> bool {
    kind(span) == SpanKind::Server && span.name == name
}

fn is_orders_server(span: &Span) -> bool {
    kind(span) == SpanKind::Server && span.name.starts_with("POST /orders/")
}

fn is_handler(span: &Span, rule: &str) -> bool {
    kind(span) == SpanKind::Consumer && span.name == format!("{rule} OrderCreated")
}

/// The rules that handle `OrderCreated`.
const ON_ORDER_CREATED: [&str; 2] = ["warehouse.on-order-created", "payment.on-order-created"];

/// Checks the shape of a createOrder's trace: the gateway's request span
/// is the child of the caller's span, orders' server span descends from
/// it through a client span, and each `OrderCreated` handler descends from
/// orders' span (it wrote the event).
fn assert_create_order_trace(trace: &Trace, caller_span_id: &str) {
    let graphql = trace.find(|s| is_server(s, "POST /graphql")).unwrap();
    assert_eq!(
        hex(&graphql.parent_span_id),
        caller_span_id,
        "{:#?}",
        trace.names()
    );
    let orders = trace.find(is_orders_server).unwrap();
    assert!(trace.descends_from(orders, graphql), "{:#?}", trace.names());
    let call = trace.parent(orders).unwrap();
    assert_eq!(kind(call), SpanKind::Client, "{:#?}", trace.names());
    for rule in ON_ORDER_CREATED {
        let handler = trace.find(|s| is_handler(s, rule)).unwrap();
        assert!(
            trace.descends_from(handler, orders),
            "{rule}: {:#?}",
            trace.names()
        );
    }
}

fn complete(trace: &Trace) -> bool {
    trace.find(|s| is_server(s, "POST /graphql")).is_some()
        && trace.find(is_orders_server).is_some()
        && ON_ORDER_CREATED
            .iter()
            .all(|rule| trace.find(|s| is_handler(s, rule)).is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_order_is_one_trace_from_the_graphql_request_through_orders_and_the_bus_handlers() {
    collector();
    on_each_storage(|app| async move {
        let (traceparent, trace_id, caller) = new_trace();
        create_order(&app, &app.base, &traceparent).await;
        let trace = wait_for_trace(&trace_id, complete).await;
        assert_create_order_trace(&trace, &caller);
        // The events carry the trace in their envelope.
        let created = app
            .wait_for_event("OrderCreated", |e| e.detail_type == "OrderCreated")
            .await;
        assert!(
            created
                .traceparent
                .as_deref()
                .is_some_and(|t| t.contains(&trace_id)),
            "{created:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_order_sent_to_a_gateway_in_another_process_is_one_trace_over_http_and_nats() {
    collector();
    let storages = common::storages();
    if !storages.contains(&Storage::Postgres) || std::env::var("ECOM_TEST_BUS_URL").is_err() {
        eprintln!("note: PostgreSQL or NATS not configured: multi-process trace skipped");
        return;
    }
    let app = TestApp::spawn(Storage::Postgres).await;
    // The gateway alone in the replica: it reaches orders over HTTP, and
    // the events travel through NATS to the handlers of the first.
    let replica = app.spawn_replica(&["frontend-api"]).await;
    let (traceparent, trace_id, caller) = new_trace();
    create_order(&app, &replica.base, &traceparent).await;
    let trace = wait_for_trace(&trace_id, complete).await;
    assert_create_order_trace(&trace, &caller);
    replica.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_the_callers_own_when_it_sent_one() {
    collector();
    let app = TestApp::spawn(Storage::Sqlite).await;
    let mine = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "checkout-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.headers()["x-request-id"], "checkout-42");
    // None sent, or one that would forge a log line: a fresh one.
    let made = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let first = app.http.get(app.url("/healthz")).send().await.unwrap();
    let forged = app
        .http
        .get(app.url("/no/such/route"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    let (first, forged) = (made(&first), made(&forged));
    assert_eq!(first.len(), 32, "{first}");
    assert_ne!(first, forged);
    assert_ne!(forged, "a b");
    app.stop().await;
}
