//! Every log line written while answering a request carries the request's
//! id (the caller's `x-request-id`, or a fresh one), and the answer carries
//! it back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn app() -> Router {
    ecom_runtime::server::finish(
        Router::new()
            .route(
                "/orders/backend/{id}",
                get(|| async {
                    tracing::info!("reading the order");
                    "ok"
                }),
            )
            .route(
                "/orders/broken",
                get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
            ),
    )
}

fn request(id: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/orders/backend/o-1");
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    req.body(Body::empty()).unwrap()
}

// A current-thread runtime: the subscriber set below sees every poll.
#[tokio::test]
async fn log_lines_inside_a_request_carry_its_id_and_the_answer_returns_it() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry().with(ecom_runtime::logs::layer(
        ecom_runtime::LogFormat::Human,
        false,
        move || writer.clone(),
    ));
    let _guard = tracing::subscriber::set_default(subscriber);

    let answer = app().oneshot(request(Some("checkout-42"))).await.unwrap();
    assert_eq!(answer.headers()["x-request-id"], "checkout-42");
    let log = lines.text();
    let line = log.lines().find(|l| l.contains("reading the order")).unwrap();
    assert!(line.contains("request_id=checkout-42"), "{line}");
    assert!(line.contains(r#"route="/orders/backend/{id}""#), "{line}");

    // Without one (or with one that would forge a log line), a fresh id,
    // the same in the answer and in the log.
    for sent in [None, Some("two words INFO forged")] {
        let answer = app().oneshot(request(sent)).await.unwrap();
        let id = answer.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(
            lines.text().contains(&format!("request_id={id}")),
            "{}",
            lines.text()
        );
    }
    assert!(!lines.text().contains("forged"));

    // A server error is a line of its own, at `error`, naming the request.
    let broken = Request::get("/orders/broken")
        .header("x-request-id", "broken-1")
        .body(Body::empty())
        .unwrap();
    let answer = app().oneshot(broken).await.unwrap();
    assert_eq!(answer.status(), 503);
    let log = lines.text();
    let line = log
        .lines()
        .find(|l| l.contains("answered with a server error"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("request_id=broken-1"), "{line}");
    assert!(line.contains("status=503"), "{line}");
}
