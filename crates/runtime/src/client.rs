//! Typed calls from one service to another's `/backend/` routes.
//!
//! A [`BackendClient`] speaks to one service. When that service runs in the
//! same process the request goes straight into the shared router (no
//! socket), through the same credential check and handlers as over HTTP, so
//! the two deployments behave alike. Otherwise it goes over HTTP to the
//! service's base URL, or to one of several: a service's address may list
//! its replicas separated by commas (`http://a:8080,http://b:8080`).
//!
//! Replicas: calls take the replicas in turn (round robin). A call that
//! cannot connect to one (nothing was sent) goes to the next, whatever its
//! method, and that replica is passed over for [`DOWN_FOR`]. A GET (and a
//! POST marked [`BackendClient::idempotent`]) also goes to the next replica
//! when the connection fails after sending or the replica answers 502, 503
//! or 504. Any other POST is not sent twice: it may have taken effect.

use crate::ServiceKey;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ecom_contracts::Service;
use http_body_util::BodyExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service could not be reached or did not answer in time.
    #[error("could not reach {service}: {reason}")]
    Unreachable {
        /// Callee.
        service: Service,
        /// What went wrong.
        reason: String,
    },
    /// The service answered with an error status.
    #[error("{service} answered {status}: {message}")]
    Status {
        /// Callee.
        service: Service,
        /// Status answered.
        status: StatusCode,
        /// Its `message`, if any.
        message: String,
        /// Its stable `code`, if it gave one.
        code: Option<String>,
    },
    /// The answer was not the JSON expected.
    #[error("{service} answered something unexpected: {reason}")]
    Decode {
        /// Callee.
        service: Service,
        /// Parse error.
        reason: String,
    },
}

impl ClientError {
    /// The status the callee answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The router of this process, set once every service is built.
pub type LocalRouter = Arc<OnceLock<Router>>;

/// How long a replica that refused a connection is passed over (it is
/// still tried when every replica is passed over).
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// Longest wait for a connection to a replica: a replica that is gone
/// without refusing (a host down) costs this much, not the whole call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The replicas of one service: base URLs, whose turn it is, and which
/// refused a connection lately.
struct Replicas {
    bases: Vec<String>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Replicas {
    /// Parses `http://a:8080,http://b:8080` (one URL or several separated
    /// by commas; trailing slashes dropped).
    fn parse(urls: &str) -> Replicas {
        let bases: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Replicas {
            down_until: Mutex::new(vec![None; bases.len()]),
            bases,
            next: AtomicUsize::new(0),
        }
    }

    /// The order in which a call tries the replicas: from the next one in
    /// turn, those not passed over first.
    fn order(&self) -> Vec<usize> {
        let n = self.bases.len();
        if n <= 1 {
            return (0..n).collect();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        let is_down = |i: usize| down.get(i).copied().flatten().is_some_and(|until| until > now);
        let turn = (0..n).map(|k| (start + k) % n);
        let (up, passed_over): (Vec<usize>, Vec<usize>) = turn.partition(|i| !is_down(*i));
        up.into_iter().chain(passed_over).collect()
    }

    fn mark_down(&self, i: usize) {
        if let Some(slot) = self
            .down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(i)
        {
            *slot = Some(Instant::now() + DOWN_FOR);
        }
    }

    fn mark_up(&self, i: usize) {
        if let Some(slot) = self
            .down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(i)
        {
            *slot = None;
        }
    }
}

/// Hands out clients for services. Cheap to clone.
///
/// Configuration names services by text (`[services]`, `ECOM_<SERVICE>_URL`,
/// the services run in this process); code asks for a [`Service`], so a
/// misspelt one fails to compile rather than at the first call.
#[derive(Clone)]
pub struct Clients {
    key: ServiceKey,
    caller: String,
    local: Arc<BTreeSet<String>>,
    router: LocalRouter,
    urls: Arc<BTreeMap<String, Arc<Replicas>>>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Clients {
    /// Clients for `caller`: services in `local` are called in process
    /// through `router`; the others at their base URL in `urls` (several
    /// replicas' URLs separated by commas).
    pub fn new(
        key: ServiceKey,
        caller: &str,
        local: BTreeSet<String>,
        router: LocalRouter,
        urls: BTreeMap<String, String>,
    ) -> Clients {
        let urls = urls
            .into_iter()
            .map(|(service, urls)| (service, Arc::new(Replicas::parse(&urls))))
            .filter(|(_, replicas)| !replicas.bases.is_empty())
            .collect();
        Clients {
            key,
            caller: caller.to_owned(),
            local: Arc::new(local),
            router,
            urls: Arc::new(urls),
            // Idle connections are dropped before the servers' header
            // timeout (10 s by default) closes them, so a call never goes
            // out on a connection the server is closing.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The same clients, acting for another calling service.
    pub fn for_caller(&self, caller: &str) -> Clients {
        Clients {
            caller: caller.to_owned(),
            ..self.clone()
        }
    }

    /// The same clients with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Clients {
        self.timeout = timeout;
        self
    }

    /// A client for `service`, or an error saying how to configure it.
    pub fn get(&self, service: Service) -> anyhow::Result<BackendClient> {
        let name = service.name();
        let target = if self.local.contains(name) {
            Target::Local(self.router.clone())
        } else if let Some(replicas) = self.urls.get(name) {
            Target::Http {
                http: self.http.clone(),
                replicas: replicas.clone(),
            }
        } else {
            anyhow::bail!(
                "no address for service '{service}': run it in this process or set ECOM_{}_URL",
                name.to_uppercase().replace('-', "_")
            );
        };
        Ok(BackendClient {
            service,
            caller: self.caller.clone(),
            key: self.key.clone(),
            target,
            timeout: self.timeout,
            credential: Credential::Service,
            idempotent: false,
        })
    }

    /// The services called over HTTP (not run in this process), by name.
    pub fn remote_services(&self) -> Vec<String> {
        self.urls
            .keys()
            .filter(|s| !self.local.contains(*s))
            .cloned()
            .collect()
    }

    /// Whether at least one replica of the remote `service` is ready: its
    /// process answers `GET /readyz?local` (its own database and bus, not
    /// what it calls in turn) with 200 within `timeout`. The error names
    /// each replica's problem.
    pub async fn probe(&self, service: &str, timeout: Duration) -> Result<(), String> {
        let Some(replicas) = self.urls.get(service) else {
            return Err(format!("no address for {service}"));
        };
        let checks = replicas.bases.iter().map(|base| async move {
            let url = format!("{base}/readyz?local");
            let answer = tokio::time::timeout(timeout, self.http.get(&url).send()).await;
            match answer {
                Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
                Ok(Ok(resp)) => Err(format!("{base} answers {}", resp.status())),
                Ok(Err(e)) => Err(format!("{base}: {}", short_reason(&e))),
                Err(_) => Err(format!("{base} does not answer within {timeout:?}")),
            }
        });
        let results = futures::future::join_all(checks).await;
        if results.iter().any(Result::is_ok) {
            return Ok(());
        }
        let reasons: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        Err(format!(
            "no replica of {service} is ready ({})",
            reasons.join("; ")
        ))
    }
}

/// A transport error in a few words (reqwest's Display nests its causes).
fn short_reason(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    }
}

#[derive(Clone)]
enum Target {
    Local(LocalRouter),
    Http {
        http: reqwest::Client,
        replicas: Arc<Replicas>,
    },
}

/// What a call sends in `Authorization`.
#[derive(Clone)]
enum Credential {
    /// A fresh service credential naming the caller (the default).
    Service,
    /// An end user's token, passed on for routes that check the user.
    User(String),
    /// Nothing: the route is public.
    Anonymous,
}

/// Calls one service's routes with a credential of the caller.
#[derive(Clone)]
pub struct BackendClient {
    service: Service,
    caller: String,
    key: ServiceKey,
    target: Target,
    timeout: Duration,
    credential: Credential,
    /// Whether a POST may be sent to another replica after a failure that
    /// may have reached the first (GETs always may).
    idempotent: bool,
}

impl BackendClient {
    /// The same client, for a POST that can be repeated without effect
    /// (a computation or a check): after a failure that may have reached a
    /// replica, it is sent to the next one as a GET would be.
    pub fn idempotent(mut self) -> BackendClient {
        self.idempotent = true;
        self
    }

    /// The same client sending an end user's token (`Bearer <token>`)
    /// instead of the service credential: for staff routes that check the
    /// user's groups themselves, so the user's rights, not the caller's,
    /// decide.
    pub fn as_user(mut self, token: &str) -> BackendClient {
        self.credential = Credential::User(token.to_owned());
        self
    }

    /// The same client sending no credential, for public routes (saves
    /// signing a credential nobody checks).
    pub fn anonymous(mut self) -> BackendClient {
        self.credential = Credential::Anonymous;
        self
    }

    /// POSTs JSON to `path` (below the service's prefix, e.g.
    /// `/backend/pricing`) and decodes the JSON answer.
    pub async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.decode_error(e))?;
        self.call(Method::POST, path, Some(bytes)).await
    }

    /// PUTs JSON to `path` and decodes the JSON answer.
    pub async fn put<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.decode_error(e))?;
        self.call(Method::PUT, path, Some(bytes)).await
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, ClientError> {
        self.call(Method::GET, path, None).await
    }

    async fn call<Resp: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Resp, ClientError> {
        let token = match &self.credential {
            Credential::Service => Some(self.key.issue(&self.caller).map_err(|e| self.unreachable(e))?),
            Credential::User(token) => Some(token.clone()),
            Credential::Anonymous => None,
        };
        let uri = format!("/{}{}", self.service, path);
        // With traces on, a client span whose context the callee continues
        // (`traceparent`); with them off, neither span nor header.
        let span = if crate::telemetry::tracing_enabled() {
            tracing::info_span!(
                "call",
                otel.name = %format_args!("{method} {}", self.service),
                otel.kind = "client",
                peer.service = %self.service,
                url.path = %uri,
            )
        } else {
            tracing::Span::none()
        };
        let traceparent = span.in_scope(crate::telemetry::traceparent);
        let fut = async {
            match &self.target {
                Target::Local(router) => {
                    let router = router
                        .get()
                        .cloned()
                        .ok_or_else(|| self.unreachable("the local router is not ready yet"))?;
                    let mut req = Request::builder()
                        .method(method)
                        .uri(&uri)
                        .extension(crate::server::InProcess)
                        .header(header::CONTENT_TYPE, "application/json");
                    if let Some(token) = &token {
                        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
                    }
                    if let Some(traceparent) = &traceparent {
                        req = req.header("traceparent", traceparent);
                    }
                    let req = req
                        .body(body.map(Body::from).unwrap_or_else(Body::empty))
                        .map_err(|e| self.unreachable(e))?;
                    let resp = router.oneshot(req).await.map_err(|e| self.unreachable(e))?;
                    let status = resp.status();
                    let bytes = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| self.unreachable(e))?
                        .to_bytes();
                    Ok::<_, ClientError>((status, bytes.to_vec()))
                }
                Target::Http { http, replicas } => {
                    let repeatable = self.idempotent || method == Method::GET;
                    let order = replicas.order();
                    let mut tried = order.iter().peekable();
                    loop {
                        let Some(&i) = tried.next() else {
                            return Err(self.unreachable("no address"));
                        };
                        let more = tried.peek().is_some();
                        let url = format!("{}{uri}", replicas.bases[i]);
                        let mut req = http.request(method.clone(), url);
                        if let Some(token) = &token {
                            req = req.bearer_auth(token);
                        }
                        if let Some(traceparent) = &traceparent {
                            req = req.header("traceparent", traceparent);
                        }
                        if let Some(body) = &body {
                            req = req
                                .header(header::CONTENT_TYPE, "application/json")
                                .body(body.clone());
                        }
                        let sent = async {
                            let resp = req.send().await?;
                            let status = resp.status();
                            let bytes = resp.bytes().await?;
                            Ok::<_, reqwest::Error>((status, bytes.to_vec()))
                        }
                        .await;
                        match sent {
                            Ok((status, _)) if more && repeatable && matches!(status.as_u16(), 502..=504) => {
                                tracing::debug!(service = %self.service, %status, "replica unavailable; trying the next");
                            }
                            Ok(answer) => {
                                replicas.mark_up(i);
                                break Ok(answer);
                            }
                            // Nothing was sent: any call may go elsewhere.
                            Err(e) if e.is_connect() => {
                                replicas.mark_down(i);
                                if !more {
                                    break Err(self.unreachable(e));
                                }
                                tracing::debug!(service = %self.service, error = %e, "replica refused the connection; trying the next");
                            }
                            Err(e) if more && repeatable => {
                                tracing::debug!(service = %self.service, error = %e, "call to a replica failed; trying the next");
                            }
                            Err(e) => break Err(self.unreachable(e)),
                        }
                    }
                }
            }
        };
        let (status, bytes) = tracing::Instrument::instrument(tokio::time::timeout(self.timeout, fut), span)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {:?}", self.timeout)))??;
        if !status.is_success() {
            let body = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let text = |field: &str| {
                body.as_ref()
                    .and_then(|v| v.get(field).and_then(|m| m.as_str()).map(str::to_owned))
            };
            return Err(ClientError::Status {
                service: self.service,
                status,
                message: text("message").unwrap_or_default(),
                code: text("code"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| self.decode_error(e))
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            service: self.service,
            reason: reason.to_string(),
        }
    }

    fn decode_error(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Decode {
            service: self.service,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::atomic::AtomicU32;
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    /// A replica that answers `{"n": <its count>}` on GET and POST
    /// `/products/echo` (a stand-in for the products service), counting the calls it received.
    async fn replica() -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let handler = move || {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                axum::Json(serde_json::json!({ "n": n }))
            }
        };
        let app = Router::new().route("/products/echo", get(handler.clone()).post(handler));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), calls)
    }

    /// An address where nothing listens (connections are refused).
    async fn refusing() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    /// A replica that reads a request and closes the connection without
    /// answering, as a process killed mid-call does; counts requests read.
    async fn vanishing() -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reads = Arc::new(AtomicU32::new(0));
        let counter = reads.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                if socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                drop(socket);
            }
        });
        (format!("http://{addr}"), reads)
    }

    fn clients(urls: &str) -> Clients {
        Clients::new(
            ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            "tests",
            BTreeSet::new(),
            LocalRouter::default(),
            [("products".to_owned(), urls.to_owned())].into(),
        )
    }

    #[tokio::test]
    async fn calls_take_the_replicas_in_turn() {
        let (a, a_calls) = replica().await;
        let (b, b_calls) = replica().await;
        let svc = clients(&format!("{a}, {b}/")).get(Service::Products).unwrap();
        for _ in 0..6 {
            let _: serde_json::Value = svc.get("/echo").await.unwrap();
        }
        assert_eq!(
            (a_calls.load(Ordering::SeqCst), b_calls.load(Ordering::SeqCst)),
            (3, 3)
        );
    }

    #[tokio::test]
    async fn a_refused_connection_sends_any_call_to_the_next_replica() {
        let dead = refusing().await;
        let (live, calls) = replica().await;
        let svc = clients(&format!("{dead},{live}")).get(Service::Products).unwrap();
        for _ in 0..4 {
            let answer: Result<serde_json::Value, _> = svc.post("/echo", &serde_json::json!({})).await;
            assert!(answer.is_ok(), "{answer:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // With every replica refusing, the caller is told the service is unreachable.
        let none = clients(&refusing().await).get(Service::Products).unwrap();
        let err = none.get::<serde_json::Value>("/echo").await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_post_that_may_have_arrived_is_not_sent_again_but_a_get_or_an_idempotent_post_is() {
        let (vanish, reads) = vanishing().await;
        let (live, calls) = replica().await;
        let urls = format!("{vanish},{live}");
        // Each call on fresh clients starts at the first replica.
        let post = clients(&urls).get(Service::Products).unwrap();
        let err = post
            .post::<_, serde_json::Value>("/echo", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the POST was sent twice");

        let get = clients(&urls).get(Service::Products).unwrap();
        assert!(get.get::<serde_json::Value>("/echo").await.is_ok());
        let checked = clients(&urls).get(Service::Products).unwrap().idempotent();
        assert!(checked
            .post::<_, serde_json::Value>("/echo", &serde_json::json!({}))
            .await
            .is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_service_is_ready_when_one_of_its_replicas_is() {
        let app = Router::new().route("/readyz", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dead = refusing().await;
        let timeout = Duration::from_secs(1);
        assert_eq!(
            clients(&format!("{dead},http://{addr}"))
                .probe("products", timeout)
                .await,
            Ok(())
        );
        let err = clients(&dead).probe("products", timeout).await.unwrap_err();
        assert!(err.contains("no replica of products is ready"), "{err}");
    }

    #[test]
    fn replicas_passed_over_are_tried_last() {
        let replicas = Replicas::parse("http://a/,http://b,http://c");
        assert_eq!(replicas.bases, ["http://a", "http://b", "http://c"]);
        replicas.mark_down(1);
        assert_eq!(replicas.order(), [0, 2, 1]);
        assert_eq!(replicas.order(), [2, 0, 1]);
        replicas.mark_up(1);
        assert_eq!(replicas.order(), [2, 0, 1]);
    }
}
