//! The bus as an admin meets it over HTTP (what the console's bus page
//! uses): rules with their dead-letter counts, dead letters listed,
//! redriven and purged under `/platform/…`, and the listener opened with an
//! admin's ID token offered as a WebSocket subprotocol, as a browser must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, on_each_storage_configured, send, TestApp};
use ecom_platform::Event;
use futures::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// The rule that lowers a held payment when an order's total changes: it
/// fails (and retries) while payment has not seen the order's creation.
const TOTAL_RULE: &str = "payment.on-order-total-modified";

async fn get(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    app.get_with_token(path, token).await
}

async fn post(app: &TestApp, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
    send(
        app.http
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

fn order_image(order_id: Uuid, token: &str, total: i64) -> Value {
    common::order_json(
        order_id,
        json!({"paymentToken": token, "total": total, "modifiedDate": ecom_model::Timestamp::now()}),
    )
}

#[tokio::test]
async fn an_admin_lists_a_dead_letter_redrives_it_once_it_can_be_handled_and_purges_the_rest() {
    // One attempt: a failed delivery is a dead letter at once.
    on_each_storage_configured(
        |c| c.bus.max_attempts = 1,
        |app| async move {
            let admin = app.user_token(&["admin"]).await;
            let order_id = Uuid::now_v7();
            let token = app.preauth(5000).await;
            // The total changes before payment has heard of the order (the
            // bus keeps no order between events): the handler cannot apply it.
            let modified = Event::new(
                "ecommerce.orders",
                "OrderModified",
                vec![order_id.to_string()],
                json!({"old": order_image(order_id, &token, 5000), "new": order_image(order_id, &token, 3000),
                       "changed": ["total"]}),
            );
            app.publish(std::slice::from_ref(&modified)).await;
            app.eventually("the dead letter", || async {
                let (_, body) = get(&app, &format!("/platform/dead-letters?rule={TOTAL_RULE}"), &admin).await;
                body["deadLetters"].as_array().is_some_and(|l| !l.is_empty())
            })
            .await;

            let (status, body) =
                get(&app, &format!("/platform/dead-letters?rule={TOTAL_RULE}"), &admin).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["more"], false);
            let letter = &body["deadLetters"][0];
            assert_eq!(letter["rule"], TOTAL_RULE);
            assert_eq!(letter["event"]["id"], modified.id.to_string());
            assert_eq!(letter["event"]["detail-type"], "OrderModified");
            assert_eq!(letter["attempts"], 1);
            assert!(
                letter["lastError"]
                    .as_str()
                    .unwrap()
                    .contains("no payment known yet"),
                "{letter}"
            );
            let (status, rules) = get(&app, "/platform/rules", &admin).await;
            assert_eq!(status, StatusCode::OK, "{rules}");
            let row = rules["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == TOTAL_RULE)
                .cloned()
                .unwrap_or_else(|| panic!("no {TOTAL_RULE} in {rules}"));
            assert_eq!(row["deadLetters"], 1, "{row}");
            assert!(
                row["pattern"].as_str().unwrap().contains("OrderModified"),
                "{row}"
            );
            assert_eq!(rules["countsComplete"], true);

            // Payment hears of the order; now the dead letter can be applied.
            let created = Event::new(
                "ecommerce.orders",
                "OrderCreated",
                vec![order_id.to_string()],
                order_image(order_id, &token, 5000),
            );
            app.publish(std::slice::from_ref(&created)).await;
            app.handled("payment", "payment.on-order-created", &created).await;

            let (status, body) = post(
                &app,
                "/platform/dead-letters/redrive",
                &admin,
                &json!({"rule": TOTAL_RULE}).to_string(),
            )
            .await;
            assert_eq!((status, body), (StatusCode::OK, json!({"redriven": 1})));
            app.handled("payment", TOTAL_RULE, &modified).await;
            // The held amount was lowered to the new total.
            assert_eq!(app.processor_status(&token).await["authorisedAmount"], 3000);
            let (_, body) = get(&app, &format!("/platform/dead-letters?rule={TOTAL_RULE}"), &admin).await;
            assert_eq!(body["deadLetters"], json!([]), "{body}");

            // Messages that are not events dead-letter for every rule on
            // OrderCreated; purging every rule's empties the queue.
            for _ in 0..2 {
                app.bus
                    .backend()
                    .publish_raw("ecommerce.orders", "OrderCreated", b"not an event")
                    .await
                    .unwrap();
            }
            app.eventually("the undecodable messages are dead letters", || async {
                let (_, body) = get(
                    &app,
                    "/platform/dead-letters?rule=warehouse.on-order-created",
                    &admin,
                )
                .await;
                body["deadLetters"].as_array().is_some_and(|l| l.len() == 2)
            })
            .await;
            let (_, body) = get(&app, "/platform/dead-letters?limit=1", &admin).await;
            assert_eq!(body["deadLetters"].as_array().unwrap().len(), 1);
            assert_eq!(body["more"], true);
            let (status, body) = post(&app, "/platform/dead-letters/purge", &admin, "").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body["purged"].as_u64().unwrap() >= 2, "{body}");
            let (_, body) = get(&app, "/platform/dead-letters", &admin).await;
            assert_eq!(body, json!({"deadLetters": [], "more": false}));
            let (_, rules) = get(&app, "/platform/rules", &admin).await;
            assert!(
                rules["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["deadLetters"] == 0),
                "{rules}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn bad_input_to_the_bus_routes_is_a_400_or_404_that_says_what_is_wrong() {
    on_each_storage(|app| async move {
        let admin = app.user_token(&["admin"]).await;
        let long = "r".repeat(201);
        let gets = [
            ("/platform/dead-letters?limit=0", 400, "limit:"),
            ("/platform/dead-letters?limit=501", 400, "limit:"),
            ("/platform/dead-letters?limit=ten", 400, "limit:"),
            ("/platform/dead-letters?rule=", 400, "rule:"),
            (&*format!("/platform/dead-letters?rule={long}"), 400, "rule:"),
            ("/platform/dead-letters?rules=x", 400, "unknown field"),
            (
                "/platform/dead-letters?rule=nobody.rule",
                404,
                "unknown rule 'nobody.rule'",
            ),
        ];
        for (path, want, fragment) in gets {
            let (status, body) = get(&app, path, &admin).await;
            assert_eq!(status.as_u16(), want, "{path}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(fragment),
                "{path}: {body}"
            );
        }
        for action in ["redrive", "purge"] {
            let path = format!("/platform/dead-letters/{action}");
            let posts = [
                ("{oops", 400, "not valid JSON"),
                ("[1]", 400, ""),
                (r#"{"rules":"x"}"#, 400, "unknown field"),
                (r#"{"rule":42}"#, 400, "rule"),
                (r#"{"rule":" "}"#, 400, "rule:"),
                (r#"{"rule":"nobody.rule"}"#, 404, "unknown rule 'nobody.rule'"),
            ];
            for (body, want, fragment) in posts {
                let (status, answer) = post(&app, &path, &admin, body).await;
                assert_eq!(status.as_u16(), want, "{path} {body}: {answer}");
                assert!(
                    answer["message"].as_str().unwrap().contains(fragment),
                    "{path} {body}: {answer}"
                );
            }
        }
        // With nothing dead, redriving and purging every rule do nothing.
        let (status, body) = post(&app, "/platform/dead-letters/redrive", &admin, "{}").await;
        assert_eq!((status, body), (StatusCode::OK, json!({"redriven": 0})));
        let (status, body) = post(&app, "/platform/dead-letters/purge", &admin, "{}").await;
        assert_eq!((status, body), (StatusCode::OK, json!({"purged": 0})));
    })
    .await;
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the listener as a browser does: the token offered as the
/// subprotocol `bearer.<token>` beside `ecom.listener`. The socket and the
/// subprotocol the server chose, or the HTTP status of the refusal.
async fn listen_as_browser(app: &TestApp, token: &str) -> Result<(Socket, String), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Error;
    let url = format!("{}/platform/listener", app.base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("ecom.listener, bearer.{token}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, resp)) => {
            let chosen = resp
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok((socket, chosen))
        }
        Err(Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("the listener neither opened nor refused: {e}"),
    }
}

#[tokio::test]
async fn the_listener_takes_an_admins_token_as_a_subprotocol_and_refuses_anyone_elses() {
    on_each_storage(|app| async move {
        let shopper = app.user_token(&[]).await;
        let warehouse = app.user_token(&["warehouse"]).await;
        for token in [shopper.as_str(), warehouse.as_str(), "not-a-token"] {
            assert_eq!(listen_as_browser(&app, token).await.err(), Some(401));
        }
        let admin = app.user_token(&["admin"]).await;
        let (mut socket, chosen) = listen_as_browser(&app, &admin).await.unwrap();
        // The server names the protocol, never the token.
        assert_eq!(chosen, "ecom.listener");
        let register = json!({"action": "register", "serviceName": "ecommerce.delivery"});
        socket
            .send(Message::Text(register.to_string().into()))
            .await
            .unwrap();
        // A bad message after it is answered in order: the registration is read.
        let bad = json!({"action": "ping", "serviceName": "x"});
        socket.send(Message::Text(bad.to_string().into())).await.unwrap();
        let reply = next(&mut socket).await;
        assert!(
            reply["message"].as_str().unwrap().contains("unknown action"),
            "{reply}"
        );
        let event = Event::new("ecommerce.delivery", "DeliveryCompleted", vec![], json!({"n": 1}));
        app.bus.publish(std::slice::from_ref(&event)).await.unwrap();
        let seen = next(&mut socket).await;
        assert_eq!(seen["id"], event.id.to_string());
    })
    .await;
}

async fn next(socket: &mut Socket) -> Value {
    let deadline = std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message from the listener: {other:?}"),
        }
    }
}
