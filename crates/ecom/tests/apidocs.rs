//! The API reference: each REST service serves an OpenAPI 3.1 document
//! naming every route its router serves, with the credential each really
//! asks for; `/docs` links the reference, the GraphQL IDE and the event
//! catalogue; and no page or asset the server sends points at another host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Storage, TestApp};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;

/// Each REST service and the source of its router.
const SERVICES: &[(&str, &str)] = &[
    ("users", include_str!("../../users/src/api.rs")),
    ("products", include_str!("../../products/src/api.rs")),
    ("orders", include_str!("../../orders/src/api.rs")),
    ("warehouse", include_str!("../../warehouse/src/api.rs")),
    ("delivery", include_str!("../../delivery/src/api.rs")),
    (
        "delivery-pricing",
        include_str!("../../delivery-pricing/src/api.rs"),
    ),
    ("payment", include_str!("../../payment/src/api.rs")),
    ("payment-3p", include_str!("../../payment-3p/src/api.rs")),
];

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

/// The `(METHOD, path)` pairs the `.route("…", get(…).post(…))` calls of
/// a router's source declare: what the service really serves, read from
/// the code rather than from a list kept beside it.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let tail = &rest[at + ".route(".len()..];
        let mut depth = 1;
        let end = tail
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a closed .route( call");
        let call = &tail[..end];
        let open = call.find('"').expect("a path") + 1;
        let close = open + call[open..].find('"').expect("a closed path");
        let handlers = &call[close + 1..];
        for method in METHODS {
            for (i, _) in handlers.match_indices(&format!("{method}(")) {
                if matches!(handlers[..i].chars().last(), Some(' ' | '.' | ',' | '\n' | '(')) {
                    out.insert((method.to_uppercase(), call[open..close].to_owned()));
                }
            }
        }
        rest = &tail[end..];
    }
    out
}

/// The `(METHOD, path)` pairs a document names, with `/<service>` taken off.
fn documented(service: &str, doc: &Value) -> BTreeSet<(String, String)> {
    let prefix = format!("/{service}");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{path} is not under {prefix}"));
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn every_rest_service_documents_each_route_it_serves_in_openapi_3_1() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    for (service, source) in SERVICES {
        let (status, doc) = app.get(&format!("/{service}/openapi.json")).await;
        assert_eq!(status, StatusCode::OK, "{service}: {doc}");
        assert_eq!(doc["openapi"], "3.1.0", "{service}");
        assert!(doc["info"]["title"].as_str().unwrap().contains(service));

        let served = routes_in(source);
        assert!(!served.is_empty(), "{service}: no routes found in its source");
        let named = documented(service, &doc);
        assert_eq!(
            served.difference(&named).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "{service}: routes served but not documented"
        );
        assert_eq!(
            named.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "{service}: routes documented but not served"
        );

        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let what = format!("{service}: {method} {path}");
                let error = &op["responses"]["500"]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(error, "#/components/schemas/Error", "{what}");
                let schemes: Vec<&str> = op["security"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .flat_map(|r| r.as_object().unwrap().keys())
                            .map(String::as_str)
                            .collect()
                    })
                    .unwrap_or_default();
                for scheme in &schemes {
                    assert!(
                        doc["components"]["securitySchemes"][scheme].is_object(),
                        "{what}: {scheme}"
                    );
                }
                // Asked without any credential, the route exists, and it asks
                // for one exactly when the document says it does.
                let url = fill_params(&app, path);
                let request = app
                    .http
                    .request(method.to_uppercase().parse().unwrap(), url)
                    .header("content-type", "application/json");
                let request = if method == "get" || method == "delete" {
                    request
                } else {
                    request.body("{}")
                };
                let resp = request.send().await.unwrap();
                let status = resp.status();
                let body = resp.text().await.unwrap();
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: {body}");
                assert!(!body.contains("no route for"), "{what}: {body}");
                if schemes.is_empty() {
                    assert_ne!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{what} is documented as public: {body}"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{what} is documented as needing {schemes:?}: {body}"
                    );
                }
            }
        }
    }
    app.stop().await;
}

/// `path` with each `{param}` replaced by a fresh UUID (ids here are UUIDs
/// or opaque strings, and a group name is checked after the credential).
fn fill_params(app: &TestApp, path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("a closed parameter");
        out.push_str(&rest[..open]);
        out.push_str(&uuid::Uuid::new_v4().to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    app.url(&out)
}

#[tokio::test]
async fn the_docs_page_links_the_api_reference_the_graphql_ide_and_the_event_catalogue() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    let resp = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = resp.text().await.unwrap();
    for link in [
        "href=\"/graphql\"",
        "href=\"#/events\"",
        "href=\"/docs/asyncapi.json\"",
        "/docs.js\"",
    ] {
        assert!(page.contains(link), "/docs lacks {link}");
    }
    for (service, _) in SERVICES {
        assert!(
            page.contains(&format!("href=\"/{service}/openapi.json\"")),
            "/docs lacks {service}"
        );
    }
    // The script renders every service's document and the catalogue.
    let script = fetch_text(&app, &asset_url(&page, "docs.js")).await;
    for (service, _) in SERVICES {
        assert!(
            script.contains(&format!("\"{service}\"")),
            "docs.js does not list {service}"
        );
    }
    assert!(script.contains("/docs/asyncapi.json"));

    let (status, catalogue) = app.get("/docs/asyncapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        catalogue["asyncapi"].as_str().unwrap().starts_with("3."),
        "{catalogue}"
    );
    let channels = catalogue["channels"].as_object().unwrap();
    // The catalogue is the contracts crate's: every event, stock's too.
    let text = catalogue.to_string();
    for detail_type in [
        "UserCreated",
        "OrderCreated",
        "PackageCreated",
        "DeliveryCompleted",
        "PaymentRefunded",
        "StockChanged",
    ] {
        assert!(text.contains(detail_type), "the catalogue lacks {detail_type}");
    }
    for (name, channel) in channels {
        for (message, reference) in channel["messages"].as_object().unwrap() {
            // A message is inline or a reference to components.messages.
            let resolved = match reference["$ref"].as_str() {
                Some(target) => &catalogue["components"]["messages"][target.rsplit('/').next().unwrap()],
                None => reference,
            };
            assert!(
                resolved["payload"].is_object(),
                "{name}/{message} has no payload schema"
            );
        }
    }
    app.stop().await;
}

fn asset_url(page: &str, name: &str) -> String {
    let end = page
        .find(&format!("/{name}\""))
        .unwrap_or_else(|| panic!("no {name} in the page"));
    let start = page[..end].rfind('"').unwrap() + 1;
    format!("{}/{name}", &page[start..end])
}

async fn fetch_text(app: &TestApp, path: &str) -> String {
    let resp = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.text().await.unwrap()
}

/// The `src` and `href` values of a page.
fn references(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let value = &page[at + attribute.len()..];
            out.push(value[..value.find('"').unwrap()].to_owned());
        }
    }
    out
}

/// The one absolute URL our own files may hold: a namespace, never fetched.
const NAMESPACES: &[&str] = &["http://www.w3.org/2000/svg"];

/// Fails when `text` (one of our own pages or scripts) names another host.
fn assert_names_no_other_host(what: &str, text: &str, base: &str) {
    let mut text = text.replace(base, "");
    for namespace in NAMESPACES {
        text = text.replace(namespace, "");
    }
    let lower = text.to_lowercase();
    for scheme in ["http://", "https://", "//cdn"] {
        assert!(
            !lower.contains(scheme),
            "{what} references another host ({scheme})"
        );
    }
}

/// Fails when a third-party bundle (GraphiQL, React, minified) would load
/// anything from another host. Such bundles carry links in help texts and
/// error messages (`https://reactjs.org/docs/error-decoder.html`) that are
/// shown, not fetched; what matters is that nothing is loaded from elsewhere.
fn assert_loads_from_no_other_host(what: &str, text: &str) {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    for context in [
        "url(",
        "@import",
        "import(",
        "from",
        "src=",
        "fetch(",
        "importscripts(",
    ] {
        for quote in ["", "\"", "'", "`"] {
            // Only CSS and HTML attributes take a URL without quotes;
            // unquoted, `from https://…` is prose in a message.
            if quote.is_empty() && !matches!(context, "url(" | "src=") {
                continue;
            }
            for scheme in ["http://", "https://", "//"] {
                let needle = format!("{context}{quote}{scheme}");
                assert!(
                    !compact.contains(&needle),
                    "{what} loads from another host ({needle})"
                );
            }
        }
    }
    for cdn in [
        "//cdn",
        "unpkg.com/",
        "cdn.jsdelivr",
        "esm.sh/",
        "fonts.googleapis",
    ] {
        assert!(!compact.contains(cdn), "{what} names a CDN ({cdn})");
    }
}

#[tokio::test]
async fn no_served_page_or_asset_references_another_host() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    let mut checked = BTreeSet::new();
    for page_path in ["/", "/console", "/docs", "/graphql"] {
        let page = fetch_text(&app, page_path).await;
        assert_names_no_other_host(page_path, &page, &app.base);
        for reference in references(&page) {
            assert!(
                !reference.starts_with("//") && !reference.contains("://"),
                "{page_path} references {reference}"
            );
            let is_asset = reference.starts_with("/assets/") || reference.starts_with("/graphql/assets/");
            if !is_asset || !checked.insert(reference.clone()) {
                continue;
            }
            let text = fetch_text(&app, &reference).await;
            if reference.contains(".min.") {
                assert_loads_from_no_other_host(&reference, &text);
            } else {
                assert_names_no_other_host(&reference, &text, &app.base);
            }
        }
    }
    for needed in ["docs.js", "style.css", "graphiql.min.js", "ide.js"] {
        assert!(
            checked.iter().any(|c| c.ends_with(needed)),
            "{needed} was not checked: {checked:?}"
        );
    }
    app.stop().await;
}
