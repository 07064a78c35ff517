//! The storefront (`/`), the staff console (`/console`) and the
//! documentation page (`/docs`, see [`docs`]): hand-written
//! HTML, CSS and ES modules, embedded in the binary and served as they are.
//!
//! There is no build step (no Node, no bundler): what is in `assets/` is
//! what the browser runs. The pages talk only to the public interface
//! (`/graphql`, `/users/…`, `/payment-3p/preauth`, the admin REST routes),
//! with relative URLs, exactly as a separately hosted frontend would; they
//! hold no privilege of their own, so serving them needs no state.
//!
//! Caching: the two pages are `no-cache` with an `ETag` (a reload asks, and
//! gets a 304 while the binary is the same); the scripts and styles live
//! under `/assets/<version>/…`, where the version is a digest of every
//! asset, so they are cached for a year and a new binary changes their URLs.
//! Modules import each other by relative path, so only the pages name the
//! version.
//!
//! Every answer carries a content-security-policy that allows the same
//! origin only: no inline script or style, nothing from another host, no
//! framing.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub mod docs;

/// The policy on every page and asset: the same origin only. `connect-src`
/// covers `fetch` to `/graphql` and the REST routes (and, in browsers that
/// follow CSP 3, a WebSocket to the same host).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file below `/assets/<version>/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Everything the pages load. A test checks that none names another host.
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/api.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/ui.js"),
    },
    Asset {
        name: "store.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/store.js"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/console.js"),
    },
    Asset {
        name: "docs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/docs.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/icon.svg"),
    },
];

/// The pages, with `%VERSION%` where the asset version goes.
const STORE_PAGE: &str = include_str!("../assets/store.html");
const CONSOLE_PAGE: &str = include_str!("../assets/console.html");
const DOCS_PAGE: &str = include_str!("../assets/docs.html");

/// A response body with its validator.
struct Served {
    content_type: &'static str,
    body: Vec<u8>,
    etag: HeaderValue,
}

impl Served {
    fn new(content_type: &'static str, body: Vec<u8>) -> Served {
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&[&body])))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Served {
            content_type,
            body,
            etag,
        }
    }
}

struct Site {
    version: String,
    store: Served,
    console: Served,
    docs: Served,
    assets: Vec<(&'static str, Served)>,
}

impl Site {
    fn new() -> Site {
        let bodies: Vec<&[u8]> = ASSETS
            .iter()
            .map(|a| a.body)
            .chain([
                STORE_PAGE.as_bytes(),
                CONSOLE_PAGE.as_bytes(),
                DOCS_PAGE.as_bytes(),
            ])
            .collect();
        let version = format!("{:012x}", fnv1a(&bodies) & 0xffff_ffff_ffff);
        let page = |text: &str| {
            Served::new(
                "text/html; charset=utf-8",
                text.replace("%VERSION%", &version).into_bytes(),
            )
        };
        Site {
            store: page(STORE_PAGE),
            console: page(CONSOLE_PAGE),
            docs: page(DOCS_PAGE),
            assets: ASSETS
                .iter()
                .map(|a| (a.name, Served::new(a.content_type, a.body.to_vec())))
                .collect(),
            version,
        }
    }
}

/// FNV-1a over the parts: a version and validator, not a security digest
/// (the content is the binary's own).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separates parts, so moving bytes between files changes the hash.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The storefront at `/`, the console at `/console` and the documentation
/// at `/docs` (with the event catalogue at `/docs/asyncapi.json`), their
/// assets under `/assets/`. Merge it at the root of the listener that
/// serves `/graphql`: the pages call the API by relative URL.
pub fn router() -> Router {
    Router::new()
        .route("/", get(store))
        .route("/console", get(console))
        .route("/console/", get(console))
        .route("/docs", get(docs_page))
        .route("/docs/", get(docs_page))
        .route("/docs/asyncapi.json", get(asyncapi))
        .route("/assets/{version}/{file}", get(asset))
        .with_state(Arc::new(Site::new()))
}

/// The version in asset URLs (a digest of every embedded file), for tests
/// and for operators comparing deployments.
pub fn asset_version() -> String {
    Site::new().version
}

/// The names of the embedded assets, as served below `/assets/<version>/`.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.name).collect()
}

async fn store(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    serve(&site.store, "no-cache", &headers)
}

async fn console(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    serve(&site.console, "no-cache", &headers)
}

async fn docs_page(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    serve(&site.docs, "no-cache", &headers)
}

async fn asyncapi() -> Response {
    with_policy(axum::Json(docs::event_catalogue()).into_response())
}

async fn asset(
    State(site): State<Arc<Site>>,
    Path((version, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some((_, served)) = site.assets.iter().find(|(name, _)| *name == file) else {
        let body = serde_json::json!({ "message": format!("no asset '{file}'") });
        return with_policy((StatusCode::NOT_FOUND, axum::Json(body)).into_response());
    };
    // A page of another build (a deployment in progress) still gets a
    // working file, but one that must not be cached under that version.
    let cache = if version == site.version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    serve(served, cache, &headers)
}

fn serve(served: &Served, cache: &'static str, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == served.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(served.content_type),
            )],
            served.body.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, served.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    with_policy(response)
}

fn with_policy(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests;
