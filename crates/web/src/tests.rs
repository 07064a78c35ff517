#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn the_pages_are_html_that_must_be_revalidated_and_allow_only_their_own_origin() {
    for path in ["/", "/console", "/console/"] {
        let (status, headers, body) = get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert_eq!(
            header(&headers, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "x-frame-options"), "DENY");
        assert!(!header(&headers, "etag").is_empty());
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(&format!("/assets/{}/", asset_version())),
            "{path} names the assets by version"
        );
        assert!(!text.contains("%VERSION%"));
    }
}

#[tokio::test]
async fn the_policy_allows_nothing_but_the_same_origin() {
    for directive in CONTENT_SECURITY_POLICY.split(';') {
        let sources: Vec<&str> = directive.split_whitespace().skip(1).collect();
        assert!(
            sources.iter().all(|s| ["'self'", "'none'"].contains(s)),
            "{directive}"
        );
    }
}

#[tokio::test]
async fn assets_of_this_version_are_cached_for_a_year_and_others_revalidated() {
    let version = asset_version();
    for name in asset_names() {
        let (status, headers, body) = get(&format!("/assets/{version}/{name}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(
            header(&headers, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert!(!body.is_empty());
        assert_eq!(
            header(&headers, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
    }
    let (status, headers, _) = get("/assets/0123456789ab/store.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert_eq!(header(&headers, "content-type"), "text/javascript; charset=utf-8");
}

#[tokio::test]
async fn a_known_etag_is_answered_with_304_and_no_body() {
    let (_, headers, _) = get("/", &[]).await;
    let etag = header(&headers, "etag").to_owned();
    let (status, headers, body) = get("/", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), etag);
    let (status, _, _) = get("/", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_asset_is_a_json_404() {
    let (status, headers, body) = get(&format!("/assets/{}/nope.js", asset_version()), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "no asset 'nope.js'");
    assert_eq!(
        header(&headers, "content-security-policy"),
        CONTENT_SECURITY_POLICY
    );
}

/// The one absolute URL the assets may hold: the SVG namespace, a name
/// that is never fetched.
const SVG_NAMESPACE: &str = "xmlns=\"http://www.w3.org/2000/svg\"";

#[test]
fn no_asset_names_another_host() {
    let mut texts: Vec<(&str, String)> = ASSETS
        .iter()
        .map(|a| (a.name, String::from_utf8_lossy(a.body).replace(SVG_NAMESPACE, "")))
        .collect();
    texts.push(("store.html", STORE_PAGE.to_owned()));
    texts.push(("console.html", CONSOLE_PAGE.to_owned()));
    texts.push(("docs.html", DOCS_PAGE.to_owned()));
    for (name, text) in texts {
        let lower = text.to_lowercase();
        for scheme in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!lower.contains(scheme), "{name} contains {scheme}");
        }
    }
}

#[test]
fn the_pages_stay_small() {
    // Uncompressed, for all three pages (storefront, console, /docs) and
    // what they share; docs/performance.md gives each page's gzipped size.
    let total: usize = ASSETS.iter().map(|a| a.body.len()).sum::<usize>()
        + STORE_PAGE.len()
        + CONSOLE_PAGE.len()
        + DOCS_PAGE.len();
    assert!(total < 136 * 1024, "the assets grew to {total} bytes");
}
