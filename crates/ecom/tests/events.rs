//! The event platform as a user meets it: the listener WebSocket and the
//! `ecom events` commands against a running server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Storage, TestApp};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn listen(app: &TestApp) -> Socket {
    let url = format!("{}/platform/listener", app.base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text message, within 10 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Runs `ecom events …` on the app's data dir, as a user would beside the server.
async fn ecom(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecom"));
    cmd.args(args)
        .env("ECOM_DATA_DIR", &app.data_dir)
        .env("ECOM_LISTEN", app.base.trim_start_matches("http://"))
        .env_remove("ECOM_DATABASE_URL")
        .env_remove("ECOM_BUS_URL")
        .env_remove("ECOM_CONFIG");
    cmd.output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn an_event_put_from_the_command_line_reaches_a_listener_registered_for_its_source() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    let mut socket = listen(&app).await;
    send(
        &mut socket,
        json!({"action": "register", "serviceName": "ecommerce.orders"}),
    )
    .await;
    // Give the registration a moment to land before publishing.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let other = ecom(
        &app,
        &[
            "events",
            "put",
            "--source",
            "ecommerce.users",
            "--detail-type",
            "UserCreated",
            "--detail",
            "{}",
        ],
    )
    .await;
    assert!(other.status.success(), "{}", text(&other.stderr));
    let out = ecom(
        &app,
        &[
            "events",
            "put",
            "--source",
            "ecommerce.orders",
            "--detail-type",
            "OrderCreated",
            "--resource",
            "o-1",
            "--detail",
            r#"{"orderId":"o-1"}"#,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("published "),
        "{}",
        text(&out.stdout)
    );

    let event = next(&mut socket).await;
    assert_eq!(
        event["source"], "ecommerce.orders",
        "the users event is not for this listener"
    );
    assert_eq!(event["detail-type"], "OrderCreated");
    assert_eq!(event["resources"], json!(["o-1"]));
    assert_eq!(event["detail"], json!({"orderId": "o-1"}));
    assert!(text(&out.stdout).contains(event["id"].as_str().unwrap()));
    app.stop().await;
}

#[tokio::test]
async fn a_bad_listener_message_gets_an_error_and_the_socket_keeps_working() {
    common::on_each_storage(|app| async move {
        let mut socket = listen(&app).await;
        send(
            &mut socket,
            json!({"action": "subscribe", "serviceName": "ecommerce.orders"}),
        )
        .await;
        let error = next(&mut socket).await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("unknown action 'subscribe'"),
            "{error}"
        );
        socket.send(Message::Text("not json".into())).await.unwrap();
        let error = next(&mut socket).await;
        assert!(
            error["message"].as_str().unwrap().contains("serviceName"),
            "{error}"
        );

        send(
            &mut socket,
            json!({"action": "register", "serviceName": "ecommerce.delivery"}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Published in-process, as a service's relay would.
        let event = ecom_platform::Event::new("ecommerce.delivery", "DeliveryCompleted", vec![], json!({}));
        app.bus.publish(&[event]).await.unwrap();
        let event = next(&mut socket).await;
        assert_eq!(event["detail-type"], "DeliveryCompleted");
    })
    .await;
}

#[tokio::test]
async fn events_put_says_what_is_wrong_with_bad_input_and_exits_non_zero() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "events",
                "put",
                "--source",
                "s",
                "--detail-type",
                "T",
                "--detail",
                "{oops",
            ],
            "--detail is not valid JSON",
        ),
        (
            &["events", "put", "--detail-type", "T", "--detail", "{}"],
            "--source",
        ),
        (
            &["events", "replay", "--rule", "r", "--from", "yesterday"],
            "--from: 'yesterday' is not an RFC 3339",
        ),
    ];
    for (args, want) in cases {
        let out = ecom(&app, args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = ecom(&app, &["events", "dlq", "list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "no dead letters");
    let out = ecom(
        &app,
        &[
            "events",
            "replay",
            "--rule",
            "nobody.rule",
            "--from",
            "2026-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown rule 'nobody.rule'"),
        "{}",
        text(&out.stderr)
    );
    app.stop().await;
}
