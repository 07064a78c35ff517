//! The GraphQL scenarios of `ecom bench`: the catalogue through `/graphql`.
//!
//! A platform booted in process gets the sample catalogue first (as the
//! products scenarios do); against a running platform (`--url`) the
//! catalogue must already hold some products.

use super::JsonClient;
use anyhow::Context as _;
use axum::body::Bytes;
use hyper::Method;
use serde_json::{json, Value};

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

/// `createOrder` of `order` (a `CreateOrderRequest`).
pub fn create_order_body(order: &Value) -> Bytes {
    let query = "mutation($order: CreateOrderRequest!) { createOrder(order: $order) { success message errors order { orderId status total } } }";
    json!({ "query": query, "variables": { "order": order } })
        .to_string()
        .into()
}

/// Signs a fresh shopper up and in; their ID token.
pub async fn shopper_token(authority: &str) -> anyhow::Result<String> {
    let credentials = json!({ "email": "bench-shopper@example.com", "password": "Bench-pass-1" });
    let body: Bytes = credentials.to_string().into();
    let (status, answer) = call(authority, Method::POST, "/users/sign-up", None, body.clone()).await?;
    anyhow::ensure!(status.is_success(), "sign-up failed: {answer}");
    let (_, answer) = call(authority, Method::POST, "/users/sign-in", None, body).await?;
    answer["idToken"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("sign-in failed: {answer}"))
}

/// The id of a product to ask for: the first of the catalogue.
pub async fn product_id(authority: &str) -> anyhow::Result<String> {
    let (_, page) = call(authority, Method::POST, "/graphql", None, products_body()).await?;
    page["data"]["getProducts"]["products"][0]["productId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the catalogue is empty or unreadable (import one first): {page}"))
}

async fn call(
    authority: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(hyper::StatusCode, Value)> {
    JsonClient::connect(authority)
        .await?
        .send(method, path, token, body)
        .await
}
