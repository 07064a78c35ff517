//! The operator's view: `/metrics` carries the figures the dashboard and the
//! alerts read, in Prometheus text, and `deploy/prometheus/alerts.yaml` and
//! `deploy/grafana/ecom.json` name only metrics the platform exposes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// The metric families `/metrics` declares (`# TYPE name kind`), with the
/// series names a histogram adds.
async fn families(app: &TestApp) -> BTreeSet<String> {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            out.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    out
}

/// Every `ecom_…` metric name in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ecom_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn metrics_carry_http_bus_and_business_figures_that_alerts_and_the_dashboard_use() {
    on_each_storage(|app| async move {
        // Some traffic, so the per-route series exist and count it.
        let listed = "ecom_http_requests_total{method=\"GET\",route=\"/products/products\",service=\"products\",status=\"2xx\"}";
        let refused = "ecom_http_requests_total{method=\"GET\",route=\"/products/products/{product_id}\",service=\"products\",status=\"4xx\"}";
        let (listed_before, refused_before) = (app.metric(listed).await, app.metric(refused).await);
        for path in ["/healthz", "/products/products", "/readyz", "/products/products/not-an-id"] {
            app.http.get(app.url(path)).send().await.unwrap();
        }
        // Tests share the process's metrics: at least this test's calls.
        assert!(app.metric(listed).await > listed_before, "{listed} did not count the listing");
        assert!(app.metric(refused).await > refused_before, "{refused} did not count the 4xx");
        // And the users and products figures the dashboard reads.
        let admin = app.user_token(&["admin"]).await;
        app.post("/users/sign-in", &json!({"email": "nobody@example.com", "password": "Wrong-pass-1"}))
            .await;
        let (status, _) = app.post_with_token("/products/admin/products", &admin, &product()).await;
        assert_eq!(status, StatusCode::CREATED);
        let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("ecom_http_requests_total{method=\"GET\",route=\"/products/products\",service=\"products\",status=\"2xx\"}"),
            "{text}"
        );
        assert!(text.contains("# TYPE ecom_http_request_duration_seconds histogram"), "{text}");
        assert!(text.contains("# TYPE ecom_bus_handler_duration_seconds histogram"), "{text}");
        let known = families(&app).await;

        let alerts = std::fs::read_to_string(repo("deploy/prometheus/alerts.yaml")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&alerts).unwrap();
        let rules = doc["groups"][0]["rules"].as_sequence().unwrap();
        assert!(rules.len() >= 6, "{} rules", rules.len());
        for rule in rules {
            let name = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name} has a severity");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name} has a summary");
            let used = named(expr);
            assert!(!used.is_empty(), "{name} reads no ecom metric");
            for metric in used {
                assert!(known.contains(&metric), "alert {name} reads {metric}, which /metrics does not have");
            }
        }

        let dashboard = std::fs::read_to_string(repo("deploy/grafana/ecom.json")).unwrap();
        let dash: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
        let panels = dash["panels"].as_array().unwrap();
        assert!(panels.len() >= 8);
        for panel in panels {
            for target in panel["targets"].as_array().unwrap() {
                for metric in named(target["expr"].as_str().unwrap()) {
                    assert!(
                        known.contains(&metric),
                        "panel {} reads {metric}, which /metrics does not have",
                        panel["title"]
                    );
                }
            }
        }
    })
    .await;
}

fn product() -> serde_json::Value {
    json!({"name": "Lamp", "price": 1500,
        "package": {"width": 100, "length": 100, "height": 300, "weight": 900}})
}

#[tokio::test]
async fn users_and_products_figures_count_sign_ups_sign_ins_and_catalogue_changes() {
    on_each_storage(|app| async move {
        let series = [
            "ecom_users_signed_up_total{via=\"sign-up\"}",
            "ecom_users_signed_up_total{via=\"admin\"}",
            "ecom_users_sign_ins_total{outcome=\"ok\"}",
            "ecom_users_sign_ins_total{outcome=\"failed\"}",
            "ecom_products_changes_total{change=\"created\"}",
            "ecom_products_changes_total{change=\"updated\"}",
            "ecom_products_changes_total{change=\"deleted\"}",
        ];
        let mut before = Vec::new();
        for s in series {
            before.push(app.metric(s).await);
        }
        // One shopper signs up and in; an admin is made by the CLI (not
        // counted: it writes the database, not through a server), signs in,
        // creates a user; one sign-in fails.
        let admin = app.user_token(&["admin"]).await;
        let (status, _) = app
            .post_with_token(
                "/users/admin/users",
                &admin,
                &json!({"email": format!("staff-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "Staff-pass-1"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = app
            .post("/users/sign-in", &json!({"email": "nobody@example.com", "password": "Wrong-pass-1"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A product created, changed and deleted; a refused create counts nothing.
        let (status, created) = app.post_with_token("/products/admin/products", &admin, &product()).await;
        assert_eq!(status, StatusCode::CREATED);
        let path = format!("/products/admin/products/{}", created["productId"].as_str().unwrap());
        let mut changed = product();
        changed["price"] = json!(1600);
        let (status, _) = app.put_with_token(&path, &admin, &changed).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.delete_with_token(&path, &admin).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app
            .post_with_token("/products/admin/products", &admin, &json!({"name": "No price"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Tests share the process's registry: at least this test's changes.
        let want = [1, 1, 2, 1, 1, 1, 1];
        for ((s, b), w) in series.iter().zip(before).zip(want) {
            let now = app.metric(s).await;
            assert!(now >= b + w, "{s}: {b} before, {now} after, expected at least {w} more");
        }
    })
    .await;
}

#[test]
fn promtool_accepts_the_alerting_rules_when_it_is_installed() {
    let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/alerts.yaml"))
        .output()
    else {
        eprintln!("SKIPPED: promtool is not installed (the rules are still parsed by the test above)");
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
