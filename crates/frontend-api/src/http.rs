//! The HTTP face of the gateway: `POST /graphql` runs a GraphQL request,
//! `GET /graphql` serves the GraphiQL IDE, or, as a WebSocket upgrade with
//! the `graphql-transport-ws` subprotocol, carries subscriptions
//! ([`crate::live`]).
//!
//! A small handler rather than async-graphql-axum's extractor: that one
//! answers a malformed body with a plain-text 400, while here every failure
//! — a body too large or not JSON, a query that does not parse or fit the
//! schema — is a GraphQL error with a code, in one JSON shape.

use crate::auth::Caller;
use crate::error;
use crate::live::{ConnectionSlots, Live, MAX_CONNECTIONS};
use crate::orders::IdempotencyKey;
use crate::GatewaySchema;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt as _, StreamExt as _};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// `/graphql`, to be mounted at the root of the listener.
pub fn router(schema: GatewaySchema, live: Arc<Live>) -> Router {
    Router::new()
        .route("/graphql", get(ide_or_socket).post(execute))
        .route("/graphql/assets/{name}", get(asset))
        .with_state(Gql { schema, live })
}

/// The route's state.
#[derive(Clone)]
struct Gql {
    schema: GatewaySchema,
    live: Arc<Live>,
}

/// The WebSocket subprotocol of subscriptions.
pub const SUBPROTOCOL: &str = "graphql-transport-ws";
/// How long a new connection has to send `connection_init` (then closed
/// with 4408, as the protocol says).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server pings an open subscription connection.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// A connection the client has said nothing on (not even a pong) for this
/// long is closed: the client has gone without closing it.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(90);
/// How long a message may wait for a client to take it before the
/// connection is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The IDE page: GraphiQL from the binary's own assets, nothing fetched
/// from elsewhere (`assets/graphiql/README.md` says where they come from).
const IDE_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ecom GraphQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql.min.css">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading the GraphQL IDE…</div>
<script src="/graphql/assets/react.production.min.js"></script>
<script src="/graphql/assets/react-dom.production.min.js"></script>
<script src="/graphql/assets/graphiql.min.js"></script>
<script src="/graphql/assets/ide.js"></script>
</body>
</html>
"#;

/// Starts GraphiQL on `/graphql`; a signed-in user can put
/// `{"Authorization": "Bearer …"}` in the IDE's headers tab.
const IDE_SCRIPT: &str = r##"const fetcher = GraphiQL.createFetcher({ url: "/graphql" });
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(React.createElement(GraphiQL, {
  fetcher,
  defaultEditorToolsVisibility: true,
  defaultQuery: `# Welcome to ecom's GraphQL API.
{
  getProducts {
    products { productId name price category }
    nextToken
  }
}
`,
}));
"##;

/// `GET /graphql`: the IDE, or the subscriptions' WebSocket when the
/// request asks for an upgrade.
async fn ide_or_socket(
    State(gql): State<Gql>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !headers.contains_key(header::UPGRADE) {
        return ide().await;
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                error::BAD_USER_INPUT,
                &format!("not a WebSocket upgrade: {rejection}"),
            )
        }
    };
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offered {
        return refuse(
            StatusCode::BAD_REQUEST,
            error::BAD_USER_INPUT,
            &format!("subscriptions speak the {SUBPROTOCOL} protocol: ask for it in Sec-WebSocket-Protocol"),
        );
    }
    if gql.live.shutdown.is_cancelled() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            error::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let Ok(slot) = gql.live.connections.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            error::TOO_MANY_SUBSCRIPTIONS,
            &format!(
                "the server has {MAX_CONNECTIONS} subscription connections open already: try again later"
            ),
        );
    };
    // A client that can set headers may authenticate the upgrade request
    // instead; `connection_init`'s payload wins.
    let upgrade_token = Caller::from_headers(&headers).token().map(str::to_owned);
    ws.protocols([SUBPROTOCOL])
        .max_message_size(MAX_BODY)
        .max_frame_size(MAX_BODY)
        .on_upgrade(move |socket| session(socket, gql, upgrade_token, slot))
}

/// The token a client put in `connection_init`'s payload:
/// `{"Authorization": "Bearer …"}` (or `authorization`, or `token`), or the
/// payload itself as a string; `Bearer ` may be left out.
fn init_token(payload: &serde_json::Value) -> Option<String> {
    let value = match payload {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(map) => ["Authorization", "authorization", "token"]
            .iter()
            .find_map(|k| map.get(*k).and_then(|v| v.as_str())),
        _ => None,
    };
    Caller::from_authorization(value).token().map(str::to_owned)
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One subscription connection: async-graphql's `graphql-transport-ws`
/// state machine between the socket's two halves, plus what it leaves out:
/// the `connection_init` deadline, pings to notice a client that vanished,
/// a bound on how long a message waits for a client that stopped reading,
/// and a close (1001) when the server shuts down. Every subscription of
/// the connection ends with it.
async fn session(socket: WebSocket, gql: Gql, upgrade_token: Option<String>, _slot: OwnedSemaphorePermit) {
    let (mut sink, source) = socket.split();
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));
    let heard_in = heard.clone();
    let input = source
        .take_while(|m| std::future::ready(matches!(m, Ok(m) if !matches!(m, Message::Close(_)))))
        .filter_map(move |m| {
            heard_in.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            std::future::ready(match m {
                Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });
    let mut connection = async_graphql::Data::default();
    connection.insert(ConnectionSlots::default());
    let mut messages =
        async_graphql::http::WebSocket::new(gql.schema.clone(), input, WebSocketProtocols::GraphQLWS)
            .connection_data(connection)
            .on_connection_init(|payload| async move {
                // The payload's token, else the upgrade request's.
                let token = init_token(&payload).or(upgrade_token);
                let mut data = async_graphql::Data::default();
                data.insert(Caller::from_authorization(token.as_deref()));
                Ok(data)
            });
    let mut acked = false;
    // Whether the server, not the client, ended the session.
    let mut drain = false;
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    let mut ping = tokio::time::interval_at(started + PING_EVERY, PING_EVERY);
    loop {
        let last = tokio::select! {
            out = messages.next() => match out {
                Some(WsMessage::Text(text)) => {
                    acked = acked || text.contains("\"connection_ack\"");
                    if deliver(&mut sink, Message::Text(text.into())).await {
                        continue;
                    }
                    None
                }
                Some(WsMessage::Close(code, reason)) => Some(close(code, &reason)),
                // The client closed the socket or went away.
                None => None,
            },
            () = &mut init_deadline, if !acked => {
                drain = true;
                Some(close(4408, "Connection initialisation timeout"))
            }
            _ = ping.tick() => {
                let silent = started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(heard.load(Ordering::Relaxed)));
                if silent <= SILENCE_LIMIT && deliver(&mut sink, Message::Ping(Default::default())).await {
                    continue;
                }
                drain = true;
                Some(close(1001, "the client stopped answering"))
            }
            () = gql.live.shutdown.cancelled() => {
                drain = true;
                Some(close(1001, "the server is shutting down"))
            }
        };
        if let Some(last) = last {
            deliver(&mut sink, last).await;
        }
        break;
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
    if drain {
        // The server closed: read until the client's close reply (or a
        // second), so the socket is not dropped with bytes unread. The
        // kernel would answer those with a reset, and a reset discards
        // whatever the client had not read yet, the close frame included.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while messages.next().await.is_some() {}
        })
        .await;
    }
}

/// Sends one message; false when the client is gone or has not taken it
/// within [`SEND_TIMEOUT`] (a client that stops reading would otherwise
/// hold its connection, and the server's shutdown, forever).
async fn deliver(sink: &mut futures::stream::SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

async fn ide() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, IDE_CSP),
        ],
        IDE_PAGE,
    )
        .into_response()
}

/// Same-origin only: the page may load nothing from elsewhere. GraphiQL's
/// editor needs inline styles and `eval`-free scripts only.
const IDE_CSP: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'";

/// The IDE's files, by name.
fn ide_asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    let js = "text/javascript; charset=utf-8";
    Some(match name {
        "graphiql.min.js" => (
            js,
            include_bytes!("../assets/graphiql/graphiql.min.js").as_slice(),
        ),
        "graphiql.min.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/graphiql/graphiql.min.css").as_slice(),
        ),
        "react.production.min.js" => (
            js,
            include_bytes!("../assets/graphiql/react.production.min.js").as_slice(),
        ),
        "react-dom.production.min.js" => (
            js,
            include_bytes!("../assets/graphiql/react-dom.production.min.js").as_slice(),
        ),
        "ide.js" => (js, IDE_SCRIPT.as_bytes()),
        _ => return None,
    })
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ide_asset(&name) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                // The files change only with the binary.
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            bytes,
        )
            .into_response(),
        None => refuse(StatusCode::NOT_FOUND, error::NOT_FOUND, "no such IDE file"),
    }
}

async fn execute(State(Gql { schema, .. }): State<Gql>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                error::BAD_USER_INPUT,
                &format!("the request body is larger than {MAX_BODY} bytes"),
            )
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                error::BAD_USER_INPUT,
                &format!(
                    "the body must be a JSON object {{\"query\", \"variables\"?, \"operationName\"?}}: {e}"
                ),
            )
        }
    };
    if request.query.trim().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            error::BAD_USER_INPUT,
            "query: the body must name the GraphQL document to run",
        );
    }
    let mut request = request.data(Caller::from_headers(&headers));
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        request = request.data(IdempotencyKey(key.to_owned()));
    }
    let mut response = schema.execute(request).await;
    // Errors async-graphql raises while running (a variable of the wrong
    // type, a missing argument) carry no code: they are the caller's.
    for e in &mut response.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", error::BAD_USER_INPUT);
        }
    }
    axum::Json(response).into_response()
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }],
    });
    (status, axum::Json(body)).into_response()
}

/// Gives the errors of documents that cannot run a code: parse failures
/// and validation failures (unknown fields, wrong types, too deep). Also
/// keeps the documents that parsed, by their text: a client sends the same
/// few operations with different variables, and parsing each anew was a
/// visible part of a createOrder's cost through the gateway. Validation
/// still runs for every request (it depends on the variables).
#[derive(Default, Clone)]
pub struct ErrorCodes {
    parsed: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

/// Parsed documents kept (all are dropped when full).
const PARSED_CAPACITY: usize = 256;
/// Longer query texts are parsed every time rather than kept.
const PARSED_MAX_TEXT: usize = 16 * 1024;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

impl ErrorCodes {
    fn parsed(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn coded(mut e: ServerError, code: &str) -> ServerError {
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    e
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.parsed().get(query) {
            return Ok(document.clone());
        }
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| coded(e, error::PARSE_FAILED))?;
        if query.len() <= PARSED_MAX_TEXT {
            let mut parsed = self.parsed();
            if parsed.len() >= PARSED_CAPACITY {
                parsed.clear();
            }
            parsed.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| coded(e, error::VALIDATION_FAILED))
                .collect()
        })
    }
}
