//! The authorisation matrix: every REST route and every GraphQL operation,
//! called by each kind of caller — anonymous, a shopper, another shopper,
//! warehouse staff, delivery staff, an admin and a service credential — with
//! the answer `docs/security.md` promises. A new route or operation gets a
//! row here.
//!
//! What is checked is who gets through, not what the operation does: an
//! allowed call may still answer 404 or 409 for the state it finds (a staff
//! action that an earlier row already took), but never 401, 403 or a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The kinds of caller, in the order of every row's expectations.
const WHO: [&str; 7] = [
    "anonymous",
    "shopper",
    "other shopper",
    "warehouse",
    "delivery",
    "admin",
    "service",
];

/// What one caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Through: any answer but 401, 403 or a 5xx.
    Ok,
    /// 401: no credential, or one this route does not take.
    Unauth,
    /// 403: a credential without the right group.
    Forbidden,
    /// 404: the route does not exist for this caller (e.g. switched off).
    NotFound,
}

use Expect::{Forbidden as F, NotFound as N, Ok as A, Unauth as U};

/// The callers' bearer tokens, in [`WHO`] order (none for anonymous).
struct Callers {
    tokens: [Option<String>; 7],
}

impl Callers {
    async fn make(app: &TestApp) -> Callers {
        Callers {
            tokens: [
                None,
                Some(app.user_token(&[]).await),
                Some(app.user_token(&[]).await),
                Some(app.user_token(&["warehouse"]).await),
                Some(app.user_token(&["delivery"]).await),
                Some(app.user_token(&["admin"]).await),
                Some(app.service_token("frontend-api")),
            ],
        }
    }
}

fn check(expect: Expect, status: StatusCode, what: &str, body: &Value) {
    let fine = match expect {
        Expect::Ok => {
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN && !status.is_server_error()
        }
        Expect::Unauth => status == StatusCode::UNAUTHORIZED,
        Expect::Forbidden => status == StatusCode::FORBIDDEN,
        Expect::NotFound => status == StatusCode::NOT_FOUND,
    };
    assert!(fine, "{what}: expected {expect:?}, got {status} {body}");
    if matches!(expect, Expect::Unauth | Expect::Forbidden) {
        assert!(body["message"].is_string(), "{what}: a refusal says why: {body}");
    }
}

async fn rest(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    send(req).await
}

fn address() -> Value {
    json!({"name": "Ada Lovelace", "streetAddress": "1 Main St", "city": "Berlin",
           "country": "DE", "phoneNumber": "+49 30 1"})
}

/// A product in the catalogue (made by an admin), as an order line.
async fn product(app: &TestApp, admin: &str) -> Value {
    let (status, body) = rest(
        app,
        Method::POST,
        "/products/admin/products",
        Some(&json!({"name": "Kettle", "price": 2500, "category": "kitchen",
                     "package": {"width": 200, "length": 200, "height": 250, "weight": 1200}})),
        Some(admin),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    json!({"productId": body["productId"], "name": "Kettle", "price": 2500, "quantity": 1,
           "package": {"width": 200, "length": 200, "height": 250, "weight": 1200}})
}

async fn gql(app: &TestApp, token: Option<&str>, query: &str, variables: &Value) -> Value {
    let mut req = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let (status, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// A shopper's order through GraphQL; its id.
async fn order(app: &TestApp, shopper: &str, line: &Value) -> String {
    let token = app.preauth(2500 + 1000).await;
    let body = gql(
        app,
        Some(shopper),
        "mutation($order: CreateOrderRequest!) { createOrder(order: $order) { success message errors order { orderId } } }",
        &json!({"order": {"products": [line], "address": address(), "deliveryPrice": 1000, "paymentToken": token}}),
    )
    .await;
    assert_eq!(body["data"]["createOrder"]["success"], true, "{body}");
    body["data"]["createOrder"]["order"]["orderId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What a GraphQL caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gql {
    /// Through the checks: data, or a refusal for the state found
    /// (`CONFLICT`, `NOT_FOUND`, `BAD_USER_INPUT`).
    Data,
    /// `null` data and no error (someone else's resource reads as absent).
    Null,
    /// An error with this code.
    Code(&'static str),
}

use Gql::{Code, Data, Null};
const UNAUTH: Gql = Code("UNAUTHENTICATED");
const FORBID: Gql = Code("FORBIDDEN");

fn check_gql(expect: Gql, body: &Value, what: &str) {
    let code = body["errors"][0]["extensions"]["code"].as_str();
    let data = body["data"].as_object().and_then(|d| d.values().next()).cloned();
    match expect {
        Gql::Data => match code {
            // Through, and refused for the state it found (a staff action
            // an earlier caller already took): still got past the checks.
            Some("CONFLICT" | "NOT_FOUND" | "BAD_USER_INPUT") => {}
            Some(other) => panic!("{what}: expected to get through, got {other}: {body}"),
            None => assert!(
                data.is_some_and(|d| !d.is_null()),
                "{what}: expected data, got {body}"
            ),
        },
        Gql::Null => {
            assert!(code.is_none(), "{what}: expected null, got {body}");
            assert!(
                data.is_none_or(|d| d.is_null()),
                "{what}: expected null, got {body}"
            );
        }
        Gql::Code(want) => assert_eq!(code, Some(want), "{what}: {body}"),
    }
}

#[tokio::test]
async fn every_rest_route_admits_exactly_its_callers() {
    on_each_storage(|app| async move {
        let callers = Callers::make(&app).await;
        let admin = callers.tokens[5].clone().unwrap();
        let shopper = callers.tokens[1].clone().unwrap();
        let line = product(&app, &admin).await;
        let product_id = line["productId"].as_str().unwrap().to_owned();
        let order_id = order(&app, &shopper, &line).await;
        let cancelled = order(&app, &shopper, &line).await;
        let shopper_id = common::send(app.http.get(app.url("/users/me")).bearer_auth(&shopper))
            .await
            .1["userId"]
            .as_str()
            .unwrap()
            .to_owned();
        // The packaging request exists before the warehouse rows run.
        app.eventually("the packaging request", || {
            let (app, admin, order_id) = (&app, &admin, &order_id);
            async move {
                let path = format!("/warehouse/packaging-requests/{order_id}");
                rest(app, Method::GET, &path, None, Some(admin)).await.0 == StatusCode::OK
            }
        })
        .await;

        let o = &order_id;
        let p = &product_id;
        let staff_order = json!({"orderId": o});
        let token_body = json!({"paymentToken": "00000000-0000-0000-0000-000000000000", "amount": 1});
        let rows: Vec<(Method, String, Option<Value>, [Expect; 7])> = vec![
            // users: public sign-up/in/refresh and keys; /me for anyone signed in;
            // admin routes for admins; the backend route for services.
            (
                Method::GET,
                "/users/.well-known/jwks.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (Method::GET, "/users/me".into(), None, [U, A, A, A, A, A, U]),
            // The API reference and the event catalogue are public: they say
            // what each route needs, and hold no data.
            (Method::GET, "/docs".into(), None, [A, A, A, A, A, A, A]),
            (
                Method::GET,
                "/docs/asyncapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/users/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/products/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/orders/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/warehouse/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/delivery/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/delivery-pricing/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/payment/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/payment-3p/openapi.json".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/users/admin/users".into(),
                None,
                [U, F, F, F, F, A, U],
            ),
            (
                Method::GET,
                format!("/users/admin/users/{shopper_id}"),
                None,
                [U, F, F, F, F, A, U],
            ),
            (
                Method::PUT,
                format!("/users/admin/users/{shopper_id}/password"),
                Some(json!({"password": common::PASSWORD})),
                [U, F, F, F, F, A, U],
            ),
            (
                Method::GET,
                format!("/users/backend/users/{shopper_id}"),
                None,
                [U, U, U, U, U, U, A],
            ),
            (
                Method::GET,
                "/users/backend/revocations?since=0".into(),
                None,
                [U, U, U, U, U, U, A],
            ),
            // products: the catalogue is public, changing it is for admins.
            (
                Method::GET,
                "/products/products".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                format!("/products/products/{p}"),
                None,
                [A, A, A, A, A, A, A],
            ),
            (
                Method::GET,
                "/products/admin/products".into(),
                None,
                [U, F, F, F, F, A, U],
            ),
            (
                Method::GET,
                format!("/products/admin/products/{p}"),
                None,
                [U, F, F, F, F, A, U],
            ),
            (
                Method::POST,
                "/products/backend/validate".into(),
                Some(json!({"products": [line]})),
                [U, U, U, U, U, U, A],
            ),
            // orders: only services.
            (
                Method::GET,
                format!("/orders/backend/{o}"),
                None,
                [U, U, U, U, U, U, A],
            ),
            (
                Method::GET,
                format!("/orders/backend/users/{shopper_id}/orders"),
                None,
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/orders/backend/orders".into(),
                Some(json!({"userId": shopper_id, "order": {}})),
                [U, U, U, U, U, U, A],
            ),
            // delivery-pricing and payment: only services.
            (
                Method::POST,
                "/delivery-pricing/backend/pricing".into(),
                Some(json!({"products": [line], "address": address()})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment/backend/validate".into(),
                Some(json!({"paymentToken": "t", "total": 1})),
                [U, U, U, U, U, U, A],
            ),
            // payment-3p: card entry is public.
            (
                Method::POST,
                "/payment-3p/preauth".into(),
                Some(json!({"cardNumber": "4242424242424242", "amount": 1})),
                [A, A, A, A, A, A, A],
            ),
            // The processor's merchant operations: services only.
            (
                Method::POST,
                "/payment-3p/check".into(),
                Some(token_body.clone()),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment-3p/status".into(),
                Some(json!({"paymentToken": "00000000-0000-0000-0000-000000000000"})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment-3p/updateAmount".into(),
                Some(token_body.clone()),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment-3p/processPayment".into(),
                Some(json!({"paymentToken": "00000000-0000-0000-0000-000000000000"})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment-3p/cancelPayment".into(),
                Some(json!({"paymentToken": "00000000-0000-0000-0000-000000000000"})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment-3p/refund".into(),
                Some(token_body.clone()),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/payment/backend/release".into(),
                Some(json!({"paymentToken": "t", "orderId": o})),
                [U, U, U, U, U, U, A],
            ),
            // warehouse staff: admin and warehouse.
            (
                Method::GET,
                "/warehouse/packaging-requests".into(),
                None,
                [U, F, F, A, F, A, U],
            ),
            (
                Method::GET,
                format!("/warehouse/packaging-requests/{o}"),
                None,
                [U, F, F, A, F, A, U],
            ),
            (
                Method::POST,
                "/warehouse/startPackaging".into(),
                Some(staff_order.clone()),
                [U, F, F, A, F, A, U],
            ),
            (
                Method::POST,
                "/warehouse/updatePackagingProduct".into(),
                Some(json!({"orderId": o, "productId": p, "quantity": 1})),
                [U, F, F, A, F, A, U],
            ),
            (
                Method::POST,
                "/warehouse/completePackaging".into(),
                Some(staff_order.clone()),
                [U, F, F, A, F, A, U],
            ),
            // stock: warehouse staff and admins; reservations for services.
            (
                Method::PUT,
                format!("/warehouse/stock/{p}"),
                Some(json!({"onHand": 5})),
                [U, F, F, A, F, A, U],
            ),
            (
                Method::GET,
                format!("/warehouse/stock/{p}"),
                None,
                [U, F, F, A, F, A, U],
            ),
            (
                Method::POST,
                "/warehouse/backend/reservations".into(),
                Some(json!({"orderId": uuid::Uuid::now_v7(), "products": [{"productId": p, "quantity": 1}]})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/warehouse/backend/reservations/release".into(),
                Some(json!({"orderId": o})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/warehouse/backend/availability".into(),
                Some(json!({"productIds": [p]})),
                [U, U, U, U, U, U, A],
            ),
            // deliveries: read by admin and delivery staff, driven by warehouse staff
            // too (as the original), deleted by admins.
            (
                Method::GET,
                "/delivery/deliveries".into(),
                None,
                [U, F, F, F, A, A, U],
            ),
            (
                Method::GET,
                format!("/delivery/deliveries/{o}"),
                None,
                [U, F, F, F, A, A, U],
            ),
            (
                Method::POST,
                "/delivery/startDelivery".into(),
                Some(staff_order.clone()),
                [U, F, F, A, A, A, U],
            ),
            (
                Method::POST,
                "/delivery/failDelivery".into(),
                Some(staff_order.clone()),
                [U, F, F, A, A, A, U],
            ),
            (
                Method::POST,
                "/delivery/completeDelivery".into(),
                Some(staff_order.clone()),
                [U, F, F, A, A, A, U],
            ),
            (
                Method::DELETE,
                format!("/delivery/deliveries/{o}"),
                None,
                [U, F, F, F, F, A, U],
            ),
            // After the order: cancelling (services for the gateway, admins
            // beside it), refunds and the warehouse's side of a cancellation
            // for services only.
            (
                Method::POST,
                format!("/orders/backend/{cancelled}/cancel"),
                Some(json!({"userId": shopper_id})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                format!("/orders/admin/orders/{cancelled}/cancel"),
                Some(json!({})),
                [U, F, F, F, F, A, U],
            ),
            (
                Method::POST,
                "/payment/backend/refunds".into(),
                Some(json!({"orderId": o, "amount": 1, "refundId": "authz"})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::POST,
                "/warehouse/backend/cancellations".into(),
                Some(json!({"orderId": uuid::Uuid::now_v7()})),
                [U, U, U, U, U, U, A],
            ),
            (
                Method::GET,
                "/products/categories".into(),
                None,
                [A, A, A, A, A, A, A],
            ),
            // the bus's rules and dead letters: admins only (dead letters hold
            // whole events: addresses, emails, payment tokens).
            (Method::GET, "/platform/rules".into(), None, [U, F, F, F, F, A, U]),
            (
                Method::GET,
                "/platform/dead-letters".into(),
                None,
                [U, F, F, F, F, A, U],
            ),
            (
                Method::POST,
                "/platform/dead-letters/redrive".into(),
                Some(json!({})),
                [U, F, F, F, F, A, U],
            ),
            (
                Method::POST,
                "/platform/dead-letters/purge".into(),
                Some(json!({"rule": "warehouse.on-order-created"})),
                [U, F, F, F, F, A, U],
            ),
            // operations: health for load balancers, metrics for scrapers.
            (Method::GET, "/healthz".into(), None, [A, A, A, A, A, A, A]),
            (Method::GET, "/readyz".into(), None, [A, A, A, A, A, A, A]),
            // The storefront and console pages are public: the API behind them decides.
            (Method::GET, "/".into(), None, [A, A, A, A, A, A, A]),
            (Method::GET, "/console".into(), None, [A, A, A, A, A, A, A]),
            (
                Method::GET,
                format!("/assets/{}/console.js", ecom_web::asset_version()),
                None,
                [A, A, A, A, A, A, A],
            ),
        ];
        let _ = N;
        for (method, path, body, expects) in rows {
            for (who, expect) in WHO.iter().zip(expects) {
                let token = callers.tokens[WHO.iter().position(|w| w == who).unwrap()].as_deref();
                let (status, answer) = rest(&app, method.clone(), &path, body.as_ref(), token).await;
                check(expect, status, &format!("{method} {path} as {who}"), &answer);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn every_graphql_operation_admits_exactly_its_callers() {
    on_each_storage(|app| async move {
        let callers = Callers::make(&app).await;
        let admin = callers.tokens[5].clone().unwrap();
        let shopper = callers.tokens[1].clone().unwrap();
        let line = product(&app, &admin).await;
        let product_id = line["productId"].as_str().unwrap().to_owned();
        let order_id = order(&app, &shopper, &line).await;
        let cancelled = order(&app, &shopper, &line).await;
        app.eventually("the packaging request", || {
            let (app, admin, order_id) = (&app, &admin, &order_id);
            async move {
                let path = format!("/warehouse/packaging-requests/{order_id}");
                rest(app, Method::GET, &path, None, Some(admin)).await.0 == StatusCode::OK
            }
        })
        .await;

        let staff = json!({"input": {"orderId": order_id}});
        let pricing = json!({"input": {"products": [line], "address": address()}});
        let update = json!({"input": {"orderId": order_id, "productId": product_id, "quantity": 1}});
        // A refused order still answers data (`success: false`): who got
        // through is what counts here.
        let order_input = json!({"order": {"products": [line], "address": address(), "deliveryPrice": 0,
                                           "paymentToken": "00000000-0000-0000-0000-000000000000"}});
        // Each operation selects only `__typename`-free scalar fields so the
        // answer's first data field tells whether it ran.
        let rows: Vec<(&str, Value, [Gql; 7])> = vec![
            ("{ getProducts { nextToken } }", json!({}), [Data, Data, Data, Data, Data, Data, Data]),
            ("query($id: ID!) { getProduct(productId: $id) { productId } }", json!({"id": product_id}), [Data, Data, Data, Data, Data, Data, Data]),
            ("{ getProductsByCategory(category: \"kitchen\") { nextToken } }", json!({}), [Data, Data, Data, Data, Data, Data, Data]),
            ("{ categories { name count } }", json!({}), [Data, Data, Data, Data, Data, Data, Data]),
            ("query($input: DeliveryPricingInput!) { getDeliveryPricing(input: $input) { pricing } }", pricing, [UNAUTH, Data, Data, Data, Data, Data, UNAUTH]),
            ("{ getOrders { nextToken } }", json!({}), [UNAUTH, Data, Data, Data, Data, Data, UNAUTH]),
            ("query($id: ID!) { getOrder(orderId: $id) { orderId } }", json!({"id": order_id}), [UNAUTH, Data, Null, Null, Null, Null, UNAUTH]),
            ("{ getNewPackagingRequestIds { nextToken } }", json!({}), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("query($input: PackagingInput!) { getPackagingRequest(input: $input) { orderId } }", staff.clone(), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("{ getNewDeliveries { nextToken } }", json!({}), [UNAUTH, FORBID, FORBID, FORBID, Data, Data, UNAUTH]),
            ("query($input: DeliveryInput!) { getDelivery(input: $input) { orderId } }", staff.clone(), [UNAUTH, FORBID, FORBID, FORBID, Null, Null, UNAUTH]),
            ("mutation($id: ID!) { setStock(productId: $id, onHand: 5) { onHand } }", json!({"id": product_id}), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("query($id: ID!) { getStock(productId: $id) { onHand } }", json!({"id": product_id}), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("query($id: ID!) { getProduct(productId: $id) { available } }", json!({"id": product_id}), [Data, Data, Data, Data, Data, Data, Data]),
            ("mutation($order: CreateOrderRequest!) { createOrder(order: $order) { success } }", order_input.clone(), [UNAUTH, Data, Data, Data, Data, Data, UNAUTH]),
            ("mutation($input: PackagingInput!) { startPackaging(input: $input) { success } }", staff.clone(), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("mutation($input: UpdatePackagingProductInput!) { updatePackagingProduct(input: $input) { success } }", update.clone(), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("mutation($input: PackagingInput!) { completePackaging(input: $input) { success } }", staff.clone(), [UNAUTH, FORBID, FORBID, Data, FORBID, Data, UNAUTH]),
            ("mutation($input: DeliveryInput!) { startDelivery(input: $input) { success } }", staff.clone(), [UNAUTH, FORBID, FORBID, Data, Data, Data, UNAUTH]),
            ("mutation($input: DeliveryInput!) { failDelivery(input: $input) { success } }", staff.clone(), [UNAUTH, FORBID, FORBID, Data, Data, Data, UNAUTH]),
            ("mutation($input: DeliveryInput!) { completeDelivery(input: $input) { success } }", staff.clone(), [UNAUTH, FORBID, FORBID, Data, Data, Data, UNAUTH]),
            // Anyone signed in, on their own orders (another's reads as NOT_FOUND).
            ("mutation($id: ID!) { cancelOrder(orderId: $id) { success } }", json!({"id": cancelled}), [UNAUTH, Data, Data, Data, Data, Data, UNAUTH]),
            ("mutation($id: ID!) { refundOrder(orderId: $id, amount: 1) { success } }", json!({"id": order_id}), [UNAUTH, FORBID, FORBID, FORBID, FORBID, Data, UNAUTH]),
        ];
        for (query, variables, expects) in rows {
            for (i, expect) in expects.into_iter().enumerate() {
                let body = gql(&app, callers.tokens[i].as_deref(), query, &variables).await;
                check_gql(expect, &body, &format!("{query} as {}", WHO[i]));
            }
        }
    })
    .await;
}
