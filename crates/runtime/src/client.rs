//! Typed calls from one service to another's `/backend/` routes.
//!
//! A [`BackendClient`] speaks to one service. When that service runs in the
//! same process the request goes straight into the shared router (no
//! socket), through the same credential check and handlers as over HTTP, so
//! the two deployments behave alike. Otherwise it goes over HTTP to the
//! service's base URL.

use crate::ServiceKey;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt as _;

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service could not be reached or did not answer in time.
    #[error("could not reach {service}: {reason}")]
    Unreachable {
        /// Callee.
        service: String,
        /// What went wrong.
        reason: String,
    },
    /// The service answered with an error status.
    #[error("{service} answered {status}: {message}")]
    Status {
        /// Callee.
        service: String,
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
        service: String,
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

/// Hands out clients for services by name. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    key: ServiceKey,
    caller: String,
    local: Arc<BTreeSet<String>>,
    router: LocalRouter,
    urls: Arc<BTreeMap<String, String>>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Clients {
    /// Clients for `caller`: services in `local` are called in process
    /// through `router`; the others at their base URL in `urls`.
    pub fn new(
        key: ServiceKey,
        caller: &str,
        local: BTreeSet<String>,
        router: LocalRouter,
        urls: BTreeMap<String, String>,
    ) -> Clients {
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
    pub fn get(&self, service: &str) -> anyhow::Result<BackendClient> {
        let target = if self.local.contains(service) {
            Target::Local(self.router.clone())
        } else if let Some(base) = self.urls.get(service) {
            Target::Http {
                http: self.http.clone(),
                base: base.clone(),
            }
        } else {
            anyhow::bail!(
                "no address for service '{service}': run it in this process or set ECOM_{}_URL",
                service.to_uppercase().replace('-', "_")
            );
        };
        Ok(BackendClient {
            service: service.to_owned(),
            caller: self.caller.clone(),
            key: self.key.clone(),
            target,
            timeout: self.timeout,
            credential: Credential::Service,
        })
    }
}

#[derive(Clone)]
enum Target {
    Local(LocalRouter),
    Http { http: reqwest::Client, base: String },
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
    service: String,
    caller: String,
    key: ServiceKey,
    target: Target,
    timeout: Duration,
    credential: Credential,
}

impl BackendClient {
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
                        .header(header::CONTENT_TYPE, "application/json");
                    if let Some(token) = &token {
                        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
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
                Target::Http { http, base } => {
                    let mut req = http.request(method, format!("{base}{uri}"));
                    if let Some(token) = &token {
                        req = req.bearer_auth(token);
                    }
                    if let Some(body) = body {
                        req = req.header(header::CONTENT_TYPE, "application/json").body(body);
                    }
                    let resp = req.send().await.map_err(|e| self.unreachable(e))?;
                    let status = resp.status();
                    let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
                    Ok((status, bytes.to_vec()))
                }
            }
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {:?}", self.timeout)))??;
        if !status.is_success() {
            let body = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let text = |field: &str| {
                body.as_ref()
                    .and_then(|v| v.get(field).and_then(|m| m.as_str()).map(str::to_owned))
            };
            return Err(ClientError::Status {
                service: self.service.clone(),
                status,
                message: text("message").unwrap_or_default(),
                code: text("code"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| self.decode_error(e))
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            service: self.service.clone(),
            reason: reason.to_string(),
        }
    }

    fn decode_error(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Decode {
            service: self.service.clone(),
            reason: reason.to_string(),
        }
    }
}
