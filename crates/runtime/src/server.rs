//! The HTTP server: common layers, JSON fallbacks, timeouts and connection
//! caps, graceful shutdown.

use crate::error::message_response;
use crate::limits::{ServerSettings, TrustedProxies};
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

/// Adds what every router of the platform has: JSON 404s and 405s, a
/// panic guard that answers 500 as JSON instead of dropping the
/// connection, request tracing, metrics and the request's log context.
pub fn finish(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(ObserveLayer)
        // Turns every handler into its route now: a router whose handlers
        // still wait for their state (`()` here) makes them into routes on
        // every request, cloning and boxing each time (`axum::serve` does
        // this too, in `into_make_service`; our server and the in-process
        // clients call the router directly).
        .with_state(())
}

/// The request id header: taken from the caller when it sends a usable
/// one (a proxy's, or the calling service's), made up otherwise, and
/// always answered.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name (made once, not parsed per request).
static REQUEST_ID_HEADER: axum::http::HeaderName = axum::http::HeaderName::from_static(REQUEST_ID);

/// What every request goes through, outermost: its log context, its
/// metrics ([`RouteMetrics`]) and its `x-request-id`.
///
/// Every line logged while answering a request names it,
/// `request{request_id, method, route}` ([`crate::logs`]), and the answer
/// carries the id in `x-request-id`. With traces off the context is a
/// task-local value that costs nothing until a line is written; with
/// traces on it is a span, the request's server span (named
/// `<METHOD> <route>`), the child of the caller's `traceparent` when it
/// sent one.
///
/// A call from another service in this process ([`InProcess`]) with traces
/// off keeps its caller's context: its lines then carry the id of the
/// request that caused it (one id for a whole createOrder). Its metrics
/// are counted all the same.
///
/// With `debug` logs on, each answer is a line (`answered uri=… status=…
/// latency_us=…`); a server error (5xx) is always one, at `error`.
///
/// A tower layer of its own rather than `axum::middleware::from_fn`, which
/// clones and boxes the inner service and boxes two futures per request:
/// this wraps the route's future as it is.
#[derive(Debug, Clone, Copy)]
struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Debug, Clone)]
struct Observe<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<axum::extract::MatchedPath>().cloned();
        let metrics = RouteMetrics::of(route.as_ref().map_or("unmatched", |p| p.as_str()));
        let method = method_index(req.method());
        let started = std::time::Instant::now();
        let traced = crate::telemetry::tracing_enabled();
        // Kept only when the line that names it will be written.
        let uri = tracing::enabled!(tracing::Level::DEBUG).then(|| req.uri().clone());
        if req.extensions().get::<InProcess>().is_some() && !traced {
            return Observed {
                answer: Answer::Plain {
                    answer: self.inner.call(req),
                },
                metrics,
                method,
                started,
                id: None,
                uri,
            };
        }
        let id = req
            .headers()
            .get(&REQUEST_ID_HEADER)
            .filter(|v| usable_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        let answer = if traced {
            let span = request_span(&req, &id, route.as_ref());
            let answer = tracing::Instrument::instrument(self.inner.call(req), span.clone());
            let recorded = span.clone();
            Answer::Traced {
                answer: Box::pin(async move {
                    let response = answer.await;
                    if let Ok(response) = &response {
                        recorded.record("http.response.status_code", response.status().as_u16());
                    }
                    response
                }),
                span,
            }
        } else {
            let context = crate::logs::RequestContext {
                id: id.clone(),
                method: req.method().clone(),
                route,
            };
            Answer::InContext {
                answer: crate::logs::scope(context, self.inner.call(req)),
            }
        };
        Observed {
            answer,
            metrics,
            method,
            started,
            id: Some(id),
            uri,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Observe`]: the route's, counted, with its
    /// `x-request-id`.
    struct Observed<F> {
        #[pin]
        answer: Answer<F>,
        metrics: Arc<RouteMetrics>,
        method: usize,
        started: std::time::Instant,
        // `None` for a call within this process with traces off.
        id: Option<axum::http::HeaderValue>,
        // `Some` when `debug` lines are written.
        uri: Option<axum::http::Uri>,
    }
}

pin_project_lite::pin_project! {
    #[project = AnswerProjection]
    enum Answer<F> {
        // A call within this process, with traces off: its caller's context.
        Plain { #[pin] answer: F },
        // Traces off: the request in the task's log context.
        InContext { #[pin] answer: tokio::task::futures::TaskLocalFuture<crate::logs::RequestContext, F> },
        // Traces on: the request's span.
        Traced { answer: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>, span: tracing::Span },
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The answer, and what its own lines are written in: the request's
        // context (back from the task-local, which ends with the answer)
        // or its span.
        let (answer, context, span) = match this.answer.project() {
            AnswerProjection::Plain { answer } => (answer.poll(cx), None, None),
            AnswerProjection::InContext { mut answer } => {
                let polled = answer.as_mut().poll(cx);
                let context = if polled.is_ready() {
                    answer.take_value()
                } else {
                    None
                };
                (polled, context, None)
            }
            AnswerProjection::Traced { answer, span } => (answer.as_mut().poll(cx), None, Some(span)),
        };
        let Poll::Ready(Ok(mut response)) = answer else {
            return answer;
        };
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID_HEADER.clone(), id);
        }
        let status = response.status();
        this.metrics.count(*this.method, status, *this.started);
        let uri = this.uri.take();
        if uri.is_some() || status.is_server_error() {
            let started = *this.started;
            let lines = move || {
                if let Some(uri) = uri {
                    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    tracing::debug!(%uri, status = status.as_u16(), latency_us, "answered");
                }
                if status.is_server_error() {
                    tracing::error!(status = status.as_u16(), "answered with a server error");
                }
            };
            match (context, span) {
                (Some(context), _) => crate::logs::within(context, lines),
                (None, Some(span)) => span.in_scope(lines),
                (None, None) => lines(),
            }
        }
        Poll::Ready(Ok(response))
    }
}

/// The span of a request, with traces on.
fn request_span(
    req: &Request,
    id: &axum::http::HeaderValue,
    route: Option<&axum::extract::MatchedPath>,
) -> tracing::Span {
    let route = route.map_or("unmatched", |p| p.as_str());
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or("?"),
        method = %req.method(),
        route,
        otel.name = format!("{} {route}", req.method()),
        otel.kind = "server",
        service = service_of(route),
        http.response.status_code = tracing::field::Empty,
    );
    let parent = req.headers().get("traceparent").and_then(|v| v.to_str().ok());
    crate::telemetry::follow(&span, parent);
    span
}

/// Marks a request that a service's client made of another service in
/// this process (an extension no request from outside can carry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InProcess;

/// A request id for a request that came without one: 32 hex digits, a
/// random half drawn once per process and a counter. Unique without
/// asking the operating system for randomness on every request (as a
/// random UUID per request did).
fn new_request_id() -> axum::http::HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = (u128::from(prefix) << 64) | u128::from(n);
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((id >> (4 * (31 - i))) & 0xf) as usize];
    }
    // Hex digits are a valid header value.
    axum::http::HeaderValue::from_bytes(&text).unwrap_or(axum::http::HeaderValue::from_static("0"))
}

/// Whether a request id sent by a caller can be logged and answered as it
/// is: short, and visible ASCII only (no spaces, no control characters
/// that would forge log lines).
fn usable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= 128 && id.iter().all(u8::is_ascii_graphic)
}

/// Methods counted by name; any other is counted as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(method: &axum::http::Method) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(7)
}

/// Every request is counted and timed, per service and route (the route as
/// declared, `{param}`s and all, so the number of series stays small):
/// `ecom_http_requests_total{service, route, method, status}` and
/// `ecom_http_request_duration_seconds{service, route}`. Calls between
/// services in one process are counted too.
///
/// One declared route's metrics, looked up once per request under a read
/// lock with no allocation: asking the registry (a global mutex, the label
/// strings copied) on every request cost more than the request's own
/// routing. Routes are the declared ones (`MatchedPath`), so the map stays
/// small; each counter is made on its first use.
struct RouteMetrics {
    route: String,
    duration: crate::metrics::Histogram,
    requests: [[OnceLock<Arc<crate::metrics::Counter>>; 5]; 8],
}

impl RouteMetrics {
    /// Counts an answer with `status` to a request with the method of
    /// index `method`, begun at `started`.
    fn count(&self, method: usize, status: StatusCode, started: std::time::Instant) {
        self.duration.observe_duration(started.elapsed());
        let status = match status.as_u16() {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.requests[method][status]
            .get_or_init(|| {
                crate::metrics::counter(
                    "ecom_http_requests_total",
                    "HTTP requests answered, per service, route, method and status class.",
                    &[
                        ("service", service_of(&self.route)),
                        ("route", &self.route),
                        ("method", METHODS[method]),
                        ("status", STATUS_CLASSES[status]),
                    ],
                )
            })
            .inc();
    }

    fn of(route: &str) -> Arc<RouteMetrics> {
        static ROUTES: OnceLock<RwLock<HashMap<String, Arc<RouteMetrics>>>> = OnceLock::new();
        let routes = ROUTES.get_or_init(Default::default);
        if let Some(found) = routes.read().unwrap_or_else(|e| e.into_inner()).get(route) {
            return found.clone();
        }
        let mut routes = routes.write().unwrap_or_else(|e| e.into_inner());
        routes
            .entry(route.to_owned())
            .or_insert_with(|| {
                Arc::new(RouteMetrics {
                    route: route.to_owned(),
                    duration: crate::metrics::histogram(
                        "ecom_http_request_duration_seconds",
                        "Time to answer an HTTP request, per service and route.",
                        &[("service", service_of(route)), ("route", route)],
                        crate::metrics::DURATION_BUCKETS,
                    ),
                    requests: Default::default(),
                })
            })
            .clone()
    }
}

/// The service a route belongs to: its first path segment (`/graphql` is
/// the gateway's; `/healthz`, `/metrics` and the pages are the process's).
fn service_of(route: &str) -> &str {
    match route.trim_start_matches('/').split('/').next().unwrap_or("") {
        "graphql" => "frontend-api",
        s @ ("users" | "products" | "orders" | "payment" | "payment-3p" | "delivery-pricing"
        | "warehouse" | "delivery" | "platform") => s,
        _ => "ecom",
    }
}

async fn not_found(req: Request) -> Response {
    message_response(
        StatusCode::NOT_FOUND,
        &format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    message_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {} is not allowed on {}", req.method(), req.uri().path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({"message": "internal error"})),
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests
/// in flight finish before returning.
///
/// HTTP/1.1 through hyper's own connection builder rather than
/// `axum::serve`, which offers no settings: a client gets
/// `settings.header_timeout` to send a request's headers (a half-sent
/// request, or an idle keep-alive connection, is closed after it), a request
/// gets `settings.request_timeout` until its answer starts (503 after), and
/// at most `settings.max_connections` connections are served at once, at
/// most `settings.max_connections_per_address` from one client address
/// (trusted proxies exempt). A connection past a cap is answered `503` with
/// `Retry-After: 1` and closed at once, so it never waits holding a file
/// descriptor; the cap is lowered to fit the process's open-file limit.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = fit_to_file_limit(settings.max_connections);
    let slots = Arc::new(Slots {
        total: Arc::new(Semaphore::new(max)),
        per_address: Mutex::new(HashMap::new()),
        per_address_max: settings.max_connections_per_address,
        proxies: settings.trusted_proxies.clone(),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let request_timeout = settings.request_timeout;
    // Each connection task holds a receiver; shutdown drops the sender's
    // interest and waits until every receiver is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a reset before accept:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = slots.take(peer.ip()) else {
            refuse(&stream);
            continue;
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                // Handlers see the client address as with axum::serve.
                req.extensions_mut().insert(ConnectInfo(peer));
                let call = app.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    match tokio::time::timeout(request_timeout, call).await {
                        Ok(answer) => answer,
                        Err(_) => Ok(message_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("the request took longer than {} s", request_timeout.as_secs()),
                        )),
                    }
                }
            });
        let conn = http
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

/// Connection slots: a total and a count per client address.
struct Slots {
    total: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    per_address_max: usize,
    proxies: TrustedProxies,
}

/// A connection's place; given back when dropped.
struct Slot {
    _total: OwnedSemaphorePermit,
    address: Option<(Arc<Slots>, IpAddr)>,
}

impl Slots {
    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let ip = ip.to_canonical();
        if self.proxies.contains(ip) {
            return Some(Slot {
                _total: total,
                address: None,
            });
        }
        let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.per_address_max {
            return None;
        }
        *count += 1;
        Some(Slot {
            _total: total,
            address: Some((self.clone(), ip)),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((slots, ip)) = &self.address {
            let mut counts = slots.per_address.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}

/// The answer to a connection past a cap, written without waiting (the
/// socket's buffer takes it) before the connection is dropped.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 57\r\n\
\r\n\
{\"message\":\"too many connections: try again in a second\"}";

fn refuse(stream: &tokio::net::TcpStream) {
    tracing::debug!("refusing a connection: the connection cap is reached");
    let _ = stream.try_write(REFUSAL);
}

/// `wanted`, lowered when the process may not open that many files (with
/// room kept for databases, outgoing calls and refusing connections).
fn fit_to_file_limit(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        const RESERVED: u64 = 256;
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        if let Some(limit) = limit {
            let room =
                usize::try_from(limit.saturating_sub(RESERVED).max(RESERVED / 4)).unwrap_or(usize::MAX);
            if room < wanted {
                tracing::warn!(
                    max_connections = wanted,
                    open_file_limit = limit,
                    serving = room,
                    "the open-file limit is too low for --max-connections: serving fewer (raise `ulimit -n`)"
                );
                return room;
            }
        }
        wanted
    }
    #[cfg(not(unix))]
    {
        wanted
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
