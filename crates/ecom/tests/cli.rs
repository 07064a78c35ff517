//! The command line as a newcomer meets it: commands run in the wrong
//! directory refuse instead of making a fresh data dir, refusals say what to
//! do, logs redirected to a file are plain, and a partial deployment that
//! cannot work refuses to start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use std::process::{Command, Output};

fn ecom(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecom"))
        .args(args)
        .current_dir(dir)
        .env_remove("ECOM_DATA_DIR")
        .env_remove("ECOM_DATABASE_URL")
        .env_remove("ECOM_SERVICE_KEY")
        .env_remove("ECOM_BUS_URL")
        .env_remove("ECOM_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn commands_run_where_there_is_no_data_refuse_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalogue.json");
    std::fs::write(&file, "[]").unwrap();
    for args in [
        vec!["token", "--service", "me"],
        vec!["products", "import", "catalogue.json"],
        vec![
            "users",
            "add",
            "--email",
            "a@example.com",
            "--password",
            "Passw0rd-long",
        ],
        vec!["stock", "get", "5d879c4c-e365-5aa5-a5a3-61610c670d32"],
        vec!["events", "rules"],
    ] {
        let out = ecom(&args, dir.path());
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains("no ecom data in"), "{args:?}: {err}");
        assert!(
            err.contains("ecom-data"),
            "{args:?} names the path it looked at: {err}"
        );
        assert!(
            err.contains("--data-dir"),
            "{args:?} says how to point elsewhere: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("catalogue.json")],
        "nothing was created"
    );
}

#[test]
fn an_import_with_refused_products_exits_non_zero_and_a_wrong_shape_says_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let out = ecom(&["migrate", "--data-dir", data_arg], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    // Logs written to a pipe carry no colour codes, and migrations are not
    // listed at the default level.
    let log = stderr(&out);
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log: {log:?}"
    );
    assert!(!log.contains("applying migration"), "{log}");

    let file = dir.path().join("mixed.json");
    std::fs::write(
        &file,
        r#"[{"name": "Mug", "price": 900, "package": {"width": 1, "length": 1, "height": 1, "weight": 1}},
            {"name": "Bad", "price": -1, "package": {"width": 1, "length": 1, "height": 1, "weight": 1}}]"#,
    )
    .unwrap();
    let out = ecom(
        &["products", "import", "mixed.json", "--data-dir", data_arg],
        dir.path(),
    );
    assert!(
        !out.status.success(),
        "an import with a refused row exits non-zero"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("created 1") && printed.contains("refused 1"),
        "{printed}"
    );
    assert!(
        stderr(&out).contains("1 of the file's products were refused"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&file, r#"{"name": "Mug"}"#).unwrap();
    let out = ecom(
        &["products", "import", "mixed.json", "--data-dir", data_arg],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("holds a JSON object; it must hold a JSON array of products"),
        "{err}"
    );
    assert!(!err.contains("invalid type"), "{err}");
}

#[test]
fn a_service_started_without_the_services_it_calls_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = ecom(
        &[
            "serve",
            "orders",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    for var in [
        "ECOM_PRODUCTS_URL",
        "ECOM_DELIVERY_PRICING_URL",
        "ECOM_PAYMENT_URL",
        "ECOM_WAREHOUSE_URL",
    ] {
        assert!(err.contains(var), "{var} missing from: {err}");
    }
}

#[tokio::test]
async fn a_user_token_on_a_backend_route_is_told_it_needs_a_service_credential() {
    common::on_each_storage(|app| async move {
        let user = app.user_token(&["admin"]).await;
        let (status, body) = app
            .post_with_token("/payment/backend/validate", &user, &serde_json::json!({}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("ecom token --service"), "{message}");
        assert!(!message.contains("InvalidAlgorithm"), "{message}");
    })
    .await;
}
