//! The listener: a WebSocket (`/platform/listener`) where a client registers
//! for sources and then receives every event of those sources as JSON, as
//! the bus carries them. For tests and developers watching the bus; not a
//! delivery mechanism (no retry, nothing kept for a client that is away).
//!
//! Client → server: `{"action":"register","serviceName":"ecommerce.orders"}`
//! (several on one socket add up; `"*"` means every source) and
//! `{"action":"unregister","serviceName":…}`. Server → client: one event
//! per text message; a message the server cannot use is answered with
//! `{"message":"…"}` and the socket stays open.
//!
//! Events carry addresses, emails and payment tokens, so the listener is
//! for staff: the upgrade request must carry, in `Authorization: Bearer …`,
//! a service credential (what `ecom events tail` sends) or the ID token of
//! a user in the `admin` group. Anyone else, shoppers included, gets 401
//! before any upgrade.
//!
//! A browser cannot set headers on a WebSocket, so the console offers the
//! same bearer as subprotocols instead: `new WebSocket(url, ["ecom.listener",
//! "bearer." + idToken])` (the Kubernetes API server's way). The server
//! answers with `ecom.listener`, never echoing the token. The check happens
//! before the upgrade, as for the header; a token in the first message
//! would have meant accepting every stranger's socket first. The binary leaves the route out when the operator
//! turns the listener off (`--event-listener off`), which answers 404.

use crate::Bus;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Extension, Router};
use ecom_contracts::Group;
use ecom_runtime::auth::Verifier;
use ecom_runtime::{ApiError, ServiceKey};
use serde::Deserialize;
use std::collections::BTreeSet;
use tokio::sync::broadcast::error::RecvError;

/// The subprotocol the server selects when the client offers one (a
/// browser fails the connection when it offered some and none is selected).
pub const PROTOCOL: &str = "ecom.listener";
/// Prefix of the subprotocol that carries a bearer token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

#[derive(Clone)]
struct Listener {
    bus: Bus,
    key: ServiceKey,
}

/// The route `/platform/listener`, to merge into the app's router (which
/// carries the `Verifier` extension, as for every route).
pub fn router(bus: Bus, key: ServiceKey) -> Router {
    Router::new().route(
        "/platform/listener",
        get(upgrade).with_state(Listener { bus, key }),
    )
}

async fn upgrade(
    State(listener): State<Listener>,
    verifier: Option<Extension<Verifier>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(e) = staff(&listener.key, verifier.map(|v| v.0), &headers).await {
        return e.into_response();
    }
    match ws {
        Ok(ws) => ws
            .protocols([PROTOCOL])
            .on_upgrade(move |socket| serve(socket, listener.bus)),
        Err(rejection) => rejection.into_response(),
    }
}

/// Ok for a service credential or an admin's ID token; 401 otherwise (a
/// valid token of a non-admin included: the listener does not exist for
/// them, so it does not say "forbidden").
async fn staff(key: &ServiceKey, verifier: Option<Verifier>, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::unauthorized(
            "the listener is for staff: send an admin's ID token or a service credential as 'Authorization: Bearer …'",
        )
    };
    let token = ecom_runtime::credentials::bearer(headers)
        .or_else(|| protocol_bearer(headers))
        .ok_or_else(refused)?;
    if key.verify(token).is_ok() {
        return Ok(());
    }
    let verifier = verifier.ok_or_else(refused)?;
    match verifier.verify(token).await {
        Ok(claims) if claims.belongs_to(Group::ADMINS) => Ok(()),
        Ok(_) => Err(refused()),
        // 503 (keys unavailable) stays 503; any other failure is a refusal.
        Err(e) if e.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE => Err(e),
        Err(_) => Err(refused()),
    }
}

/// The token a browser offers as the subprotocol `bearer.<token>`.
fn protocol_bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        .filter(|t| !t.is_empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    action: String,
    service_name: String,
}

fn error_message(text: &str) -> Message {
    Message::Text(serde_json::json!({ "message": text }).to_string().into())
}

/// What a client message asks for, or why it cannot be used.
fn parse(text: &str) -> Result<(bool, String), String> {
    let req: Request = serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"action\":\"register\",\"serviceName\":\"<source>\"}}: {e}"))?;
    if req.service_name.trim().is_empty() {
        return Err("serviceName must name a source, e.g. ecommerce.orders, or \"*\"".to_owned());
    }
    match req.action.as_str() {
        "register" => Ok((true, req.service_name)),
        "unregister" => Ok((false, req.service_name)),
        other => Err(format!(
            "unknown action '{other}': use \"register\" or \"unregister\""
        )),
    }
}

async fn serve(mut socket: WebSocket, bus: Bus) {
    // Subscribe first, so nothing published after the client registers is missed.
    let mut feed = bus.feed();
    let mut sources: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(text))) => match parse(&text) {
                        Ok((true, source)) => { sources.insert(source); None }
                        Ok((false, source)) => { sources.remove(&source); None }
                        Err(e) => Some(error_message(&e)),
                    },
                    Some(Ok(Message::Binary(_))) => Some(error_message("send JSON as text messages")),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => None,
                };
                if let Some(reply) = reply {
                    if socket.send(reply).await.is_err() {
                        return;
                    }
                }
            }
            event = feed.recv() => {
                let message = match event {
                    Ok(event) if sources.contains("*") || sources.contains(&event.source) => {
                        match serde_json::to_string(&*event) {
                            Ok(text) => Message::Text(text.into()),
                            Err(_) => continue,
                        }
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => error_message(&format!("{n} events skipped: the client reads too slowly")),
                    Err(RecvError::Closed) => return,
                };
                if socket.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_is_read_from_the_offered_subprotocols() {
        let offered = |v: &str| {
            let mut h = HeaderMap::new();
            if let Ok(v) = v.parse() {
                h.insert(axum::http::header::SEC_WEBSOCKET_PROTOCOL, v);
            }
            h
        };
        assert_eq!(
            protocol_bearer(&offered("ecom.listener, bearer.abc.def")),
            Some("abc.def")
        );
        assert_eq!(protocol_bearer(&offered("bearer.x")), Some("x"));
        assert_eq!(protocol_bearer(&offered("ecom.listener")), None);
        assert_eq!(protocol_bearer(&offered("ecom.listener, bearer.")), None);
        assert_eq!(protocol_bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn client_messages_are_understood_or_refused_with_a_reason() {
        let cases = [
            (
                r#"{"action":"register","serviceName":"ecommerce.orders"}"#,
                Ok((true, "ecommerce.orders")),
            ),
            (r#"{"action":"unregister","serviceName":"*"}"#, Ok((false, "*"))),
            (
                r#"{"action":"subscribe","serviceName":"x"}"#,
                Err("unknown action 'subscribe'"),
            ),
            (
                r#"{"action":"register","serviceName":" "}"#,
                Err("serviceName must name"),
            ),
            (r#"{"action":"register"}"#, Err("missing field `serviceName`")),
            ("not json", Err("expected {")),
        ];
        for (input, want) in cases {
            match (parse(input), want) {
                (Ok((reg, src)), Ok((want_reg, want_src))) => {
                    assert_eq!((reg, src.as_str()), (want_reg, want_src), "{input}")
                }
                (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
