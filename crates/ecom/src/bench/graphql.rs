//! The GraphQL scenarios of `ecom bench`: the catalogue through `/graphql`.
//!
//! On a platform booted in process, an admin (made like `ecom users add`)
//! first creates a few products through the products admin API; against a
//! running platform (`--url`) the catalogue must already hold some.

use anyhow::Context as _;
use axum::body::Bytes;
use ecom_storage::StorageTarget;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::path::Path;
use tokio::net::TcpStream;

/// Products created before measuring.
const SEEDED: usize = 30;

/// The fields a shop's product list asks for.
pub const PRODUCT_FIELDS: &str =
    "productId name price category tags pictures package { width length height weight } createdDate modifiedDate";

/// `getProducts`: the first page (20 products).
pub fn products_body() -> Bytes {
    let query = format!("{{ getProducts {{ products {{ {PRODUCT_FIELDS} }} nextToken }} }}");
    json!({ "query": query }).to_string().into()
}

/// `getProduct` of one id.
pub fn product_body(product_id: &str) -> Bytes {
    let query = format!("query($id: ID!) {{ getProduct(productId: $id) {{ {PRODUCT_FIELDS} }} }}");
    json!({ "query": query, "variables": { "id": product_id } })
        .to_string()
        .into()
}

/// Seeds the catalogue when the platform runs in process (`data_dir`), and
/// returns the id of a product to ask for.
pub async fn prepare(authority: &str, data_dir: Option<&Path>) -> anyhow::Result<String> {
    if let Some(dir) = data_dir {
        seed(authority, dir).await?;
    }
    let (_, page) = call(authority, Method::POST, "/graphql", None, products_body()).await?;
    page["data"]["getProducts"]["products"][0]["productId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the catalogue is empty or unreadable: {page}"))
}

async fn seed(authority: &str, dir: &Path) -> anyhow::Result<()> {
    let target = StorageTarget::Sqlite { dir: dir.to_path_buf() };
    let (email, password) = ("bench-admin@example.com", "Bench-admin-1");
    crate::cli::users::add(&target, email, password, &["admin".to_owned()]).await?;
    let sign_in = json!({ "email": email, "password": password }).to_string();
    let (_, tokens) = call(authority, Method::POST, "/users/sign-in", None, sign_in.into()).await?;
    let token = tokens["idToken"]
        .as_str()
        .with_context(|| format!("the bench admin could not sign in: {tokens}"))?
        .to_owned();
    for i in 0..SEEDED {
        let product = json!({
            "name": format!("Bench product {i}"),
            "price": 1000 + i,
            "category": if i % 2 == 0 { "even" } else { "odd" },
            "tags": ["bench"],
            "pictures": [format!("https://example.com/{i}.jpg")],
            "package": { "width": 100, "length": 200, "height": 300, "weight": 400 }
        });
        let (status, body) = call(
            authority,
            Method::POST,
            "/products/admin/products",
            Some(&token),
            product.to_string().into(),
        )
        .await?;
        anyhow::ensure!(status.is_success(), "creating a bench product failed: {status} {body}");
    }
    Ok(())
}

async fn call(
    authority: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(hyper::StatusCode, Value)> {
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("Failed to connect to {authority}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority)
        .header(CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = sender.send_request(req.body(Full::new(body))?).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}
