//! The operator's view: `/metrics` carries the figures the dashboard and the
//! alerts read, in Prometheus text, and `deploy/prometheus/alerts.yaml` and
//! `deploy/grafana/ecom.json` name only metrics the platform exposes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, TestApp};
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
