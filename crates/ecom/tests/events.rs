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

fn listener_url(app: &TestApp) -> String {
    format!("{}/platform/listener", app.base.replacen("http://", "ws://", 1))
}

/// Opens the listener with `bearer` in `Authorization` (none when `None`):
/// the socket, or the HTTP status of the refusal.
async fn try_listen(app: &TestApp, bearer: Option<&str>) -> Result<Socket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Error;
    let mut request = listener_url(app).into_client_request().unwrap();
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("the listener neither opened nor refused: {e}"),
    }
}

/// The listener, opened with a service credential (staff only).
async fn listen(app: &TestApp) -> Socket {
    try_listen(app, Some(&app.service_token("tests"))).await.unwrap()
}

/// Registers for `source` and returns once the server has read the
/// registration: it answers the bad message sent after it, in order.
async fn register(socket: &mut Socket, source: &str) {
    send(socket, json!({"action": "register", "serviceName": source})).await;
    send(socket, json!({"action": "ping", "serviceName": source})).await;
    let reply = next(socket).await;
    assert!(
        reply["message"].as_str().unwrap().contains("unknown action"),
        "{reply}"
    );
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
    register(&mut socket, "ecommerce.orders").await;

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

        register(&mut socket, "ecommerce.delivery").await;
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

/// Puts `n` messages that are not events where every rule on `OrderCreated`
/// dead-letters them (payment's and warehouse's).
async fn dead_letter_orders(app: &TestApp, n: usize) {
    for _ in 0..n {
        app.bus
            .backend()
            .publish_raw("ecommerce.orders", "OrderCreated", b"not an event")
            .await
            .unwrap();
    }
    app.eventually("the messages are dead-lettered", || async {
        app.bus
            .dead_letters(Some("warehouse.on-order-created"))
            .await
            .unwrap()
            .len()
            == n
    })
    .await;
}

#[tokio::test]
async fn the_command_line_lists_rules_and_a_bounded_number_of_dead_letters_and_purges_them() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    let out = ecom(&app, &["events", "rules"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rules = text(&out.stdout);
    let line = rules
        .lines()
        .find(|l| l.starts_with("warehouse.on-order-created "))
        .unwrap_or_else(|| panic!("no warehouse rule in\n{rules}"));
    assert!(line.contains(r#""detail-type":["OrderCreated"]"#), "{line}");
    let out = ecom(&app, &["events", "rules", "--json"]).await;
    let first: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(
        first["name"].is_string() && first["pattern"].is_string(),
        "{first}"
    );

    dead_letter_orders(&app, 3).await;
    let total = app.bus.dead_letters(None).await.unwrap().len();
    assert!(
        total >= 6,
        "payment and warehouse each dead-letter 3, got {total}"
    );
    let out = ecom(&app, &["events", "dlq", "list", "--limit", "2"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert_eq!(
        listed.lines().count(),
        4,
        "header, two letters, footer:\n{listed}"
    );
    assert!(listed.contains("there are more"), "{listed}");
    let out = ecom(&app, &["events", "dlq", "list", "--json", "--limit", "5"]).await;
    assert_eq!(text(&out.stdout).lines().count(), 5);
    let out = ecom(&app, &["events", "dlq", "list", "--limit", "0"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--limit must be at least 1"),
        "{}",
        text(&out.stderr)
    );

    let out = ecom(
        &app,
        &["events", "dlq", "purge", "--rule", "warehouse.on-order-created"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "purged 3 dead letters of rule warehouse.on-order-created"
    );
    let out = ecom(&app, &["events", "dlq", "purge", "--rule", "nobody.rule"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown rule 'nobody.rule'"),
        "{}",
        text(&out.stderr)
    );
    let out = ecom(&app, &["events", "dlq", "purge"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("purged {} dead letters of every rule", total - 3)
    );
    let out = ecom(&app, &["events", "dlq", "list"]).await;
    assert_eq!(text(&out.stdout).trim(), "no dead letters");
    app.stop().await;
}

#[tokio::test]
async fn purge_and_bounded_listing_work_on_every_storage_and_bus() {
    common::on_each_storage(|app| async move {
        dead_letter_orders(&app, 2).await;
        let first = app
            .bus
            .first_dead_letters(Some("warehouse.on-order-created"), 1)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            app.bus.purge(Some("warehouse.on-order-created")).await.unwrap(),
            2
        );
        assert!(app
            .bus
            .dead_letters(Some("warehouse.on-order-created"))
            .await
            .unwrap()
            .is_empty());
        let rules = app.bus.known_rules().await.unwrap();
        assert!(
            rules.iter().any(|r| r.name == "warehouse.on-order-created"),
            "{rules:?}"
        );
        assert!(app.bus.purge(Some("nobody.rule")).await.is_err());
    })
    .await;
}

/// Whether the embedded bus's tables exist in the platform database.
async fn bus_tables_exist(target: &ecom_storage::StorageTarget) -> bool {
    use ecom_storage::sqlx;
    let db = ecom_storage::Db::open(target, "platform").await.unwrap();
    let mut exist = true;
    for table in ["bus_events", "bus_rules", "bus_deliveries", "bus_dead_letters"] {
        exist &= sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.reader())
            .await
            .is_ok();
    }
    db.close().await;
    exist
}

#[tokio::test]
async fn ecom_migrate_creates_the_embedded_bus_tables_before_any_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let target = ecom_storage::StorageTarget::Sqlite {
        dir: dir.path().to_path_buf(),
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecom"))
        .args(["migrate", "orders"])
        .env("ECOM_DATA_DIR", dir.path())
        .env_remove("ECOM_DATABASE_URL")
        .env_remove("ECOM_BUS_URL")
        .env_remove("ECOM_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("platform: up to date (embedded bus"),
        "{printed}"
    );
    assert!(printed.contains("orders: up to date"), "{printed}");
    assert!(bus_tables_exist(&target).await);
}

#[tokio::test]
async fn migrate_creates_the_bus_tables_on_every_storage_and_not_for_nats() {
    for storage in common::storages() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let target = match storage {
            Storage::Sqlite => ecom_storage::StorageTarget::Sqlite {
                dir: dir.path().to_path_buf(),
            },
            Storage::Postgres => ecom_storage::StorageTarget::Postgres {
                url: std::env::var("ECOM_TEST_DATABASE_URL").unwrap(),
                schema_prefix: prefix.clone(),
                max_connections: 2,
            },
        };
        let config = |bus_url: Option<&str>| {
            let args = ecom_runtime::ConfigArgs {
                data_dir: Some(dir.path().to_path_buf()),
                bus_url: bus_url.map(str::to_owned),
                ..Default::default()
            };
            ecom_runtime::Config::merge(&args, Default::default(), &[], |_| None).unwrap()
        };
        assert!(!bus_tables_exist(&target).await, "{storage:?}: a fresh database");
        // With NATS as the bus, the platform database gets no bus tables.
        let report = ecom::app::migrate(
            &config(Some("nats://127.0.0.1:4222")),
            &target,
            &["orders".into()],
        )
        .await
        .unwrap();
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(report[0].starts_with("orders: up to date"), "{report:?}");
        assert!(!bus_tables_exist(&target).await, "{storage:?}");
        let report = ecom::app::migrate(&config(None), &target, &["orders".into()])
            .await
            .unwrap();
        assert!(report[0].starts_with("platform: up to date"), "{report:?}");
        assert!(bus_tables_exist(&target).await, "{storage:?}");
        if storage == Storage::Postgres {
            drop_schemas(&prefix).await;
        }
    }
}

async fn drop_schemas(prefix: &str) {
    let url = std::env::var("ECOM_TEST_DATABASE_URL").unwrap();
    ecom_storage::drop_schemas(&url, prefix).await.unwrap();
}

mod the_listener_is_for_staff {
    use super::*;
    use common::on_each_storage;

    /// The next event of `socket`, published (in-process) until it comes:
    /// one event, `DeliveryCompleted` of ecommerce.delivery.
    async fn an_event_flows(app: &TestApp, socket: &mut Socket) {
        register(socket, "ecommerce.delivery").await;
        let event = ecom_platform::Event::new("ecommerce.delivery", "DeliveryCompleted", vec![], json!({}));
        app.bus.publish(std::slice::from_ref(&event)).await.unwrap();
        let got = next(socket).await;
        assert_eq!(got["id"], event.id.to_string());
    }

    #[tokio::test]
    async fn anonymous_callers_and_shoppers_are_refused_with_401() {
        on_each_storage(|app| async move {
            assert_eq!(try_listen(&app, None).await.err(), Some(401));
            assert_eq!(try_listen(&app, Some("not-a-token")).await.err(), Some(401));
            let shopper = app.user_token(&[]).await;
            assert_eq!(try_listen(&app, Some(&shopper)).await.err(), Some(401));
            let warehouse = app.user_token(&["warehouse"]).await;
            assert_eq!(try_listen(&app, Some(&warehouse)).await.err(), Some(401));
            // A plain GET without the upgrade is refused the same way.
            let (status, body) = app.get("/platform/listener").await;
            assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{body}");
            assert!(body["message"].as_str().unwrap().contains("staff"), "{body}");
        })
        .await;
    }

    #[tokio::test]
    async fn an_admin_and_a_service_credential_see_the_events() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let mut socket = try_listen(&app, Some(&admin)).await.unwrap();
            an_event_flows(&app, &mut socket).await;
            let mut socket = listen(&app).await;
            an_event_flows(&app, &mut socket).await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_listener_turned_off_is_not_found() {
        let app = TestApp::spawn_with_config(Storage::Sqlite, |c| c.server.event_listener = false).await;
        assert_eq!(
            try_listen(&app, Some(&app.service_token("tests"))).await.err(),
            Some(404)
        );
        let (status, body) = app.get("/platform/listener").await;
        assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
        app.stop().await;
    }

    #[tokio::test]
    async fn ecom_events_tail_still_prints_events() {
        use tokio::io::AsyncBufReadExt as _;
        let app = TestApp::spawn(Storage::Sqlite).await;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecom"))
            .args(["events", "tail", "--source", "ecommerce.delivery"])
            .env("ECOM_DATA_DIR", &app.data_dir)
            .env("ECOM_LISTEN", app.base.trim_start_matches("http://"))
            .env_remove("ECOM_SERVICE_KEY")
            .env_remove("ECOM_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let watching = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
            .await
            .expect("tail starts within 30 s")
            .unwrap()
            .unwrap_or_default();
        assert!(watching.starts_with("watching"), "{watching}");
        // tail registers right after connecting; publish until a line comes.
        let mut line = None;
        for _ in 0..60 {
            let event =
                ecom_platform::Event::new("ecommerce.delivery", "DeliveryCompleted", vec![], json!({}));
            app.bus.publish(&[event]).await.unwrap();
            if let Ok(next) = tokio::time::timeout(Duration::from_millis(500), stdout.next_line()).await {
                line = next.unwrap();
                break;
            }
        }
        let line = line.expect("tail printed an event within 30 s");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["detail-type"], "DeliveryCompleted");
        child.kill().await.unwrap();
        app.stop().await;
    }
}
