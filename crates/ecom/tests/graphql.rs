//! Issue 7: the GraphQL gateway at `/graphql`, over real HTTP on SQLite and
//! (when configured) PostgreSQL: the schema, who may run what, refusals as
//! GraphQL errors with codes, and the shop's journey through GraphQL only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, send, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "Sup3r-secret";

/// Posts a GraphQL request, with `Authorization: Bearer <token>` when given.
async fn gql(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    send(req).await
}

/// The codes of a response's errors.
fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A user made with the CLI (in `groups`), signed in: their ID token.
async fn user_token(app: &TestApp, email: &str, groups: &[&str]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    ecom::cli::users::add(&app.storage_target(), email, PASSWORD, &groups)
        .await
        .unwrap();
    let (status, body) = app
        .post("/users/sign-in", &json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["idToken"].as_str().unwrap().to_owned()
}

fn address(country: &str) -> Value {
    json!({"name": "Ada Lovelace", "streetAddress": "1 Main St", "city": "Town",
           "country": country, "phoneNumber": "+46 1"})
}

fn line(id: &str, price: i64, quantity: i64) -> Value {
    json!({"productId": id, "name": "Shoe", "price": price, "quantity": quantity,
           "package": {"width": 100, "length": 200, "height": 300, "weight": 1000}})
}

const PRICING: &str =
    "query($input: DeliveryPricingInput!) { getDeliveryPricing(input: $input) { pricing } }";

mod schema_and_ide {
    use super::*;

    #[tokio::test]
    async fn the_ide_loads_everything_from_this_server_and_nothing_from_elsewhere() {
        on_each_storage(|app| async move {
            let resp = app.http.get(app.url("/graphql")).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            let html = resp.text().await.unwrap();
            let refs: Vec<&str> = html
                .split(['"', '\''])
                .filter(|part| part.starts_with('/') || part.contains("://"))
                .collect();
            assert!(refs.len() >= 5, "{refs:?}");
            for r in &refs {
                assert!(!r.contains("://"), "the IDE page loads {r} from elsewhere");
                let resp = app.http.get(app.url(r)).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "{r}");
                assert!(!resp.bytes().await.unwrap().is_empty(), "{r}");
            }
            let resp = app
                .http
                .get(app.url("/graphql/assets/nope.js"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        })
        .await;
    }

    #[tokio::test]
    async fn get_shows_the_graphiql_ide_and_post_answers_introspection() {
        on_each_storage(|app| async move {
            let resp = app.http.get(app.url("/graphql")).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let html = resp.text().await.unwrap();
            assert!(html.contains("graphiql"), "{html}");

            let (status, body) = gql(
                &app,
                None,
                "{ __schema { queryType { name } mutationType { name } } }",
                json!({}),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
            assert_eq!(body["data"]["__schema"]["mutationType"]["name"], "Mutation");
        })
        .await;
    }

    #[tokio::test]
    async fn the_ides_full_introspection_query_fits_the_limits() {
        on_each_storage(|app| async move {
            let (_, body) = gql(&app, None, INTROSPECTION, json!({})).await;
            assert!(body["errors"].is_null(), "{body}");
            assert!(body["data"]["__schema"]["types"]
                .as_array()
                .is_some_and(|t| t.len() > 20));
        })
        .await;
    }

    /// The query GraphiQL sends to learn the schema (its type references
    /// nest seven levels).
    const INTROSPECTION: &str = r#"query IntrospectionQuery {
      __schema {
        queryType { name } mutationType { name } subscriptionType { name }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name } } } } } } }
    }"#;
}

mod bad_requests {
    use super::*;

    #[tokio::test]
    async fn malformed_documents_and_variables_are_graphql_errors_with_codes() {
        on_each_storage(|app| async move {
            let product = "query($id: ID!) { getProduct(productId: $id) { name } }";
            let cases: Vec<(&str, &str, Value, &str)> = vec![
                (
                    "not GraphQL",
                    "{ getProducts {",
                    json!({}),
                    "GRAPHQL_PARSE_FAILED",
                ),
                (
                    "unknown field",
                    "{ getProducts { products { colour } } }",
                    json!({}),
                    "GRAPHQL_VALIDATION_FAILED",
                ),
                (
                    "unknown operation",
                    "{ getEverything }",
                    json!({}),
                    "GRAPHQL_VALIDATION_FAILED",
                ),
                (
                    "missing argument",
                    "{ getProduct { name } }",
                    json!({}),
                    "GRAPHQL_VALIDATION_FAILED",
                ),
                ("missing variable", product, json!({}), "BAD_USER_INPUT"),
                (
                    "variable of the wrong type",
                    product,
                    json!({"id": {"a": 1}}),
                    "GRAPHQL_VALIDATION_FAILED",
                ),
                (
                    "wrong type inline",
                    "{ getDeliveryPricing(input: 5) { pricing } }",
                    json!({}),
                    "BAD_USER_INPUT",
                ),
                (
                    "no selection on an object",
                    "{ getProducts }",
                    json!({}),
                    "GRAPHQL_VALIDATION_FAILED",
                ),
            ];
            // Twice each: the second time meets the gateway's cache of
            // parsed documents, which must answer exactly as the first.
            for (what, query, variables, code) in cases.iter().chain(cases.iter()) {
                let (what, code) = (*what, *code);
                let (status, body) = gql(&app, None, query, variables.clone()).await;
                assert_eq!(status, StatusCode::OK, "{what}: {body}");
                assert!(body["data"].is_null(), "{what}: {body}");
                assert_eq!(codes(&body), vec![code.to_owned()], "{what}: {body}");
                assert!(
                    !body["errors"][0]["message"].as_str().unwrap_or("").is_empty(),
                    "{what}"
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_deeply_nested_query_is_refused_before_it_runs() {
        on_each_storage(|app| async move {
            let mut nested = "name".to_owned();
            for _ in 0..20 {
                nested = format!("ofType {{ {nested} }}");
            }
            let query = format!("{{ __type(name: \"Order\") {{ fields {{ type {{ {nested} }} }} }} }}");
            let (_, body) = gql(&app, None, &query, json!({})).await;
            assert_eq!(
                codes(&body),
                vec!["GRAPHQL_VALIDATION_FAILED".to_owned()],
                "{body}"
            );
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("nested too deep"),
                "{body}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_graphql_request_or_too_large_is_refused_as_graphql() {
        on_each_storage(|app| async move {
            let (status, body) = app.post_raw("/graphql", "{not json").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_owned()], "{body}");

            let (status, body) = app.post("/graphql", &json!({"variables": {}})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                body["errors"][0]["message"].as_str().unwrap().contains("query"),
                "{body}"
            );

            let huge = format!(
                "{{\"query\": \"{{ getProducts {{ nextToken }} }}\", \"x\": \"{}\"}}",
                "a".repeat(300 * 1024)
            );
            let (status, body) = app.post_raw("/graphql", &huge).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_owned()], "{body}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_forged_or_altered_next_token_is_refused() {
        on_each_storage(|app| async move {
            for token in ["garbage", "00.00", "7072.0000000000000000000000000000000"] {
                let (_, body) = gql(
                    &app,
                    None,
                    "query($t: String) { getProducts(nextToken: $t) { nextToken } }",
                    json!({"t": token}),
                )
                .await;
                assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_owned()], "{token}: {body}");
                assert!(body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("nextToken"));
            }
        })
        .await;
    }
}

mod authentication {
    use super::*;

    #[tokio::test]
    async fn a_shopper_prices_a_delivery_with_a_bearer_or_a_bare_token() {
        on_each_storage(|app| async move {
            let token = user_token(&app, "shopper@example.com", &[]).await;
            let input = json!({"input": {"products": [line("f380305b-99fe-45ba-b1ab-ba6349d141a2", 500, 2)], "address": address("DE")}});
            let (_, body) = gql(&app, Some(&token), PRICING, input.clone()).await;
            assert_eq!(body["data"]["getDeliveryPricing"]["pricing"], 1000, "{body}");

            let bare = app
                .http
                .post(app.url("/graphql"))
                .header("authorization", &token)
                .json(&json!({"query": PRICING, "variables": input}));
            let (_, body) = send(bare).await;
            assert_eq!(body["data"]["getDeliveryPricing"]["pricing"], 1000, "{body}");
        })
        .await;
    }

    #[tokio::test]
    async fn delivery_pricing_follows_the_destination_and_refuses_bad_input() {
        on_each_storage(|app| async move {
            let token = user_token(&app, "shopper@example.com", &[]).await;
            let product = line("f380305b-99fe-45ba-b1ab-ba6349d141a2", 500, 1);
            for (country, pricing) in [("SE", 0), ("PL", 1000), ("US", 1500), ("JP", 2500)] {
                let input = json!({"input": {"products": [product.clone()], "address": address(country)}});
                let (_, body) = gql(&app, Some(&token), PRICING, input).await;
                assert_eq!(
                    body["data"]["getDeliveryPricing"]["pricing"], pricing,
                    "{country}: {body}"
                );
            }
            let input = json!({"input": {"products": [product], "address": address("Sweden")}});
            let (_, body) = gql(&app, Some(&token), PRICING, input).await;
            assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_owned()], "{body}");
            assert!(
                body["errors"][0]["message"].as_str().unwrap().contains("country"),
                "{body}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_missing_or_invalid_token_is_unauthenticated() {
        on_each_storage(|app| async move {
            let input = json!({"input": {"products": [], "address": address("SE")}});
            let (_, body) = gql(&app, None, PRICING, input.clone()).await;
            assert_eq!(codes(&body), vec!["UNAUTHENTICATED".to_owned()], "{body}");
            assert!(body["data"].is_null());
            let (_, body) = gql(&app, Some("not-a-token"), PRICING, input).await;
            assert_eq!(codes(&body), vec!["UNAUTHENTICATED".to_owned()], "{body}");
        })
        .await;
    }
}

mod authorisation {
    use super::*;

    const ANONYMOUS: &str = "anonymous";
    const SHOPPER: &str = "shopper";
    const WAREHOUSE: &str = "warehouse";
    const DELIVERY: &str = "delivery";
    const ADMIN: &str = "admin";
    const ROLES: [&str; 5] = [ANONYMOUS, SHOPPER, WAREHOUSE, DELIVERY, ADMIN];

    /// Every operation of the contract, with valid variables naming things
    /// that do not exist, and the roles allowed to run it.
    fn operations() -> Vec<(&'static str, &'static str, Value, Vec<&'static str>)> {
        let everyone = ROLES.to_vec();
        let users = vec![SHOPPER, WAREHOUSE, DELIVERY, ADMIN];
        let packers = vec![WAREHOUSE, ADMIN];
        let delivery_readers = vec![DELIVERY, ADMIN];
        let drivers = vec![WAREHOUSE, DELIVERY, ADMIN];
        let order_id = json!({"input": {"orderId": "5b3e4bc8-2e1c-4a3f-9d5a-0c7e5b1f2a11"}});
        let product = line("f380305b-99fe-45ba-b1ab-ba6349d141a2", 500, 1);
        vec![
            ("getProducts", "{ getProducts { nextToken } }", json!({}), everyone.clone()),
            ("getProduct", "{ getProduct(productId: \"f380305b-99fe-45ba-b1ab-ba6349d141a2\") { name } }", json!({}), everyone.clone()),
            ("getProductsByCategory", "{ getProductsByCategory(category: \"shoes\") { nextToken } }", json!({}), everyone),
            ("getDeliveryPricing", PRICING, json!({"input": {"products": [product.clone()], "address": address("SE")}}), users.clone()),
            ("getOrders", "{ getOrders { nextToken } }", json!({}), users.clone()),
            ("getOrder", "{ getOrder(orderId: \"5b3e4bc8-2e1c-4a3f-9d5a-0c7e5b1f2a11\") { status } }", json!({}), users.clone()),
            (
                "createOrder",
                "mutation($o: CreateOrderRequest!) { createOrder(order: $o) { success errors } }",
                json!({"o": {"products": [product], "address": address("SE"), "deliveryPrice": 0, "paymentToken": "nope"}}),
                users,
            ),
            ("getNewPackagingRequestIds", "{ getNewPackagingRequestIds { nextToken } }", json!({}), packers.clone()),
            ("getPackagingRequest", "query($input: PackagingInput!) { getPackagingRequest(input: $input) { status } }", order_id.clone(), packers.clone()),
            ("startPackaging", "mutation($input: PackagingInput!) { startPackaging(input: $input) { success } }", order_id.clone(), packers.clone()),
            (
                "updatePackagingProduct",
                "mutation($input: UpdatePackagingProductInput!) { updatePackagingProduct(input: $input) { success } }",
                json!({"input": {"orderId": "5b3e4bc8-2e1c-4a3f-9d5a-0c7e5b1f2a11", "productId": "f380305b-99fe-45ba-b1ab-ba6349d141a2", "quantity": 1}}),
                packers.clone(),
            ),
            ("completePackaging", "mutation($input: PackagingInput!) { completePackaging(input: $input) { success } }", order_id.clone(), packers),
            ("getNewDeliveries", "{ getNewDeliveries { nextToken } }", json!({}), delivery_readers.clone()),
            ("getDelivery", "query($input: DeliveryInput!) { getDelivery(input: $input) { orderId } }", order_id.clone(), delivery_readers),
            ("startDelivery", "mutation($input: DeliveryInput!) { startDelivery(input: $input) { success } }", order_id.clone(), drivers.clone()),
            ("completeDelivery", "mutation($input: DeliveryInput!) { completeDelivery(input: $input) { success } }", order_id.clone(), drivers.clone()),
            ("failDelivery", "mutation($input: DeliveryInput!) { failDelivery(input: $input) { success } }", order_id, drivers),
        ]
    }

    #[tokio::test]
    async fn every_operation_checks_who_calls_it() {
        on_each_storage(|app| async move {
            let mut tokens = std::collections::BTreeMap::new();
            tokens.insert(SHOPPER, Some(user_token(&app, "shopper@example.com", &[]).await));
            tokens.insert(
                WAREHOUSE,
                Some(user_token(&app, "packer@example.com", &["warehouse"]).await),
            );
            tokens.insert(
                DELIVERY,
                Some(user_token(&app, "driver@example.com", &["delivery"]).await),
            );
            tokens.insert(
                ADMIN,
                Some(user_token(&app, "admin@example.com", &["admin"]).await),
            );
            tokens.insert(ANONYMOUS, None);
            let mut wrong = Vec::new();
            for (name, query, variables, allowed) in operations() {
                for role in ROLES {
                    let (status, body) = gql(&app, tokens[role].as_deref(), query, variables.clone()).await;
                    assert_eq!(status, StatusCode::OK, "{name} as {role}: {body}");
                    let got = codes(&body);
                    let refused = got.iter().any(|c| c == "UNAUTHENTICATED" || c == "FORBIDDEN");
                    let expected = if allowed.contains(&role) {
                        None
                    } else if role == ANONYMOUS {
                        Some("UNAUTHENTICATED")
                    } else {
                        Some("FORBIDDEN")
                    };
                    match expected {
                        None if refused => wrong.push(format!("{name} as {role} was refused: {body}")),
                        Some(code) if got != vec![code.to_owned()] || !body["data"].is_null() => {
                            wrong.push(format!("{name} as {role}: want {code}, got {body}"))
                        }
                        _ => {}
                    }
                }
            }
            assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        })
        .await;
    }
}

/// Creates a product through the products admin API; its id.
async fn create_product(app: &TestApp, admin: &str, name: &str, price: i64, category: &str) -> String {
    let (status, body) = app
        .post_with_token(
            "/products/admin/products",
            admin,
            &json!({"name": name, "price": price, "category": category, "tags": ["new"],
                    "pictures": ["https://example.com/p.jpg"],
                    "package": {"width": 100, "length": 200, "height": 300, "weight": 1000}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["productId"].as_str().unwrap().to_owned()
}

const PRODUCT_FIELDS: &str =
    "productId name price category tags pictures createdDate modifiedDate package { width length height weight }";

mod catalogue {
    use super::*;

    #[tokio::test]
    async fn anyone_reads_the_catalogue_a_page_at_a_time() {
        on_each_storage(|app| async move {
            let admin = user_token(&app, "admin@example.com", &["admin"]).await;
            let mut ids = Vec::new();
            for i in 0..23 {
                let category = if i % 2 == 0 { "even" } else { "odd" };
                ids.push(create_product(&app, &admin, &format!("Product {i}"), 100 + i, category).await);
            }
            let page = format!("query($t: String) {{ getProducts(nextToken: $t) {{ products {{ {PRODUCT_FIELDS} }} nextToken }} }}");
            let (_, first) = gql(&app, None, &page, json!({})).await;
            let first = &first["data"]["getProducts"];
            assert_eq!(first["products"].as_array().unwrap().len(), 20, "{first}");
            let token = first["nextToken"].as_str().unwrap();
            let (_, second) = gql(&app, None, &page, json!({"t": token})).await;
            let second = &second["data"]["getProducts"];
            assert_eq!(second["products"].as_array().unwrap().len(), 3, "{second}");
            assert!(second["nextToken"].is_null());
            let mut seen: Vec<String> = first["products"]
                .as_array()
                .unwrap()
                .iter()
                .chain(second["products"].as_array().unwrap())
                .map(|p| p["productId"].as_str().unwrap().to_owned())
                .collect();
            seen.sort();
            ids.sort();
            assert_eq!(seen, ids);

            let one = format!("query($id: ID!) {{ getProduct(productId: $id) {{ {PRODUCT_FIELDS} }} }}");
            let (_, body) = gql(&app, None, &one, json!({"id": ids[0]})).await;
            let product = &body["data"]["getProduct"];
            assert_eq!(product["productId"], ids[0].as_str());
            assert_eq!(product["package"]["weight"], 1000);
            assert_eq!(product["tags"], json!(["new"]));
            assert!(product["createdDate"].as_str().is_some(), "{body}");
            let (_, body) = gql(&app, None, &one, json!({"id": "5b3e4bc8-2e1c-4a3f-9d5a-0c7e5b1f2a11"})).await;
            assert!(body["data"]["getProduct"].is_null() && body["errors"].is_null(), "{body}");

            // A category listing continues through getProducts with its token.
            let by_category = "{ getProductsByCategory(category: \"even\") { products { category } nextToken } }";
            let (_, body) = gql(&app, None, by_category, json!({})).await;
            let listed = &body["data"]["getProductsByCategory"];
            let mut evens = listed["products"].as_array().unwrap().len();
            assert!(listed["products"].as_array().unwrap().iter().all(|p| p["category"] == "even"));
            if let Some(token) = listed["nextToken"].as_str() {
                let (_, more) = gql(&app, None, &page, json!({"t": token})).await;
                let more = more["data"]["getProducts"]["products"].as_array().unwrap().clone();
                assert!(more.iter().all(|p| p["category"] == "even"), "{more:?}");
                evens += more.len();
            }
            assert_eq!(evens, 12);
        })
        .await;
    }
}

mod journey {
    use super::*;

    /// The journey needs orders and payment in the binary; until they are,
    /// say so loudly instead of failing for a missing service.
    const CREATE: &str = "mutation($o: CreateOrderRequest!) { createOrder(order: $o) { success message errors order { orderId userId status total deliveryPrice products { productId quantity price } address { country } } } }";
    const ORDER: &str =
        "query($id: ID!) { getOrder(orderId: $id) { orderId status total products { productId quantity } } }";
    const ORDERS: &str =
        "query($t: String) { getOrders(nextToken: $t) { orders { orderId status } nextToken } }";

    async fn create_order(app: &TestApp, token: &str, key: Option<&str>, order: Value) -> Value {
        let mut req = app
            .http
            .post(app.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": CREATE, "variables": {"o": order}}));
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let (status, body) = send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn preauth(app: &TestApp, amount: i64) -> String {
        let (status, body) = app
            .post(
                "/payment-3p/preauth",
                &json!({"cardNumber": "4242424242424242", "amount": amount}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["paymentToken"].as_str().unwrap().to_owned()
    }

    async fn status_of(app: &TestApp, token: &str, order_id: &str) -> String {
        let (_, body) = gql(app, Some(token), ORDER, json!({"id": order_id})).await;
        body["data"]["getOrder"]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Products from getProducts, as order lines.
    async fn lines_from_catalogue(app: &TestApp, quantities: &[i64]) -> Vec<Value> {
        let page = format!("{{ getProducts {{ products {{ {PRODUCT_FIELDS} }} }} }}");
        let (_, body) = gql(app, None, &page, json!({})).await;
        let products = body["data"]["getProducts"]["products"]
            .as_array()
            .unwrap()
            .clone();
        products
            .into_iter()
            .zip(quantities)
            .map(|(mut p, q)| {
                p["quantity"] = json!(q);
                p
            })
            .collect()
    }

    #[tokio::test]
    async fn a_shopper_orders_and_staff_pack_and_deliver_through_graphql_only() {
        on_each_storage(|app| async move {
            let admin = user_token(&app, "admin@example.com", &["admin"]).await;
            create_product(&app, &admin, "Boots", 4000, "shoes").await;
            create_product(&app, &admin, "Socks", 500, "socks").await;
            let shopper = user_token(&app, "shopper@example.com", &[]).await;
            let other = user_token(&app, "other@example.com", &[]).await;
            let packer = user_token(&app, "packer@example.com", &["warehouse"]).await;
            let driver = user_token(&app, "driver@example.com", &["delivery"]).await;

            let lines = lines_from_catalogue(&app, &[2, 3]).await;
            assert_eq!(lines.len(), 2);
            let (_, priced) = gql(&app, Some(&shopper), PRICING, json!({"input": {"products": lines, "address": address("DE")}})).await;
            let delivery_price = priced["data"]["getDeliveryPricing"]["pricing"].as_i64().unwrap();
            assert_eq!(delivery_price, 1000, "{priced}");
            // getProducts lists by id, so which product got which quantity varies.
            let total = lines
                .iter()
                .map(|l| l["price"].as_i64().unwrap() * l["quantity"].as_i64().unwrap())
                .sum::<i64>()
                + delivery_price;
            let payment_token = preauth(&app, total).await;

            let order = json!({"products": lines, "address": address("DE"), "deliveryPrice": delivery_price, "paymentToken": payment_token});
            let created = create_order(&app, &shopper, Some("checkout-1"), order.clone()).await;
            let result = &created["data"]["createOrder"];
            assert_eq!(result["success"], true, "{created}");
            assert_eq!(result["order"]["status"], "NEW");
            assert_eq!(result["order"]["total"], total);
            let order_id = result["order"]["orderId"].as_str().unwrap().to_owned();

            // The same Idempotency-Key gives the same order back.
            let again = create_order(&app, &shopper, Some("checkout-1"), order).await;
            assert_eq!(again["data"]["createOrder"]["order"]["orderId"], order_id.as_str(), "{again}");

            let (_, mine) = gql(&app, Some(&shopper), ORDER, json!({"id": order_id})).await;
            assert_eq!(mine["data"]["getOrder"]["orderId"], order_id.as_str(), "{mine}");
            let (_, theirs) = gql(&app, Some(&other), ORDER, json!({"id": order_id})).await;
            assert!(theirs["data"]["getOrder"].is_null() && theirs["errors"].is_null(), "{theirs}");
            let (_, listed) = gql(&app, Some(&shopper), ORDERS, json!({})).await;
            let listed = listed["data"]["getOrders"]["orders"].as_array().unwrap().clone();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0]["orderId"], order_id.as_str());
            let (_, none) = gql(&app, Some(&other), ORDERS, json!({})).await;
            assert_eq!(none["data"]["getOrders"]["orders"], json!([]), "{none}");

            // The warehouse packs it.
            let input = json!({"input": {"orderId": order_id}});
            app.eventually("the packaging request appears", || async {
                let (_, body) = gql(&app, Some(&packer), "{ getNewPackagingRequestIds { packagingRequestIds } }", json!({})).await;
                body["data"]["getNewPackagingRequestIds"]["packagingRequestIds"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == order_id.as_str()))
            })
            .await;
            let (_, request) = gql(&app, Some(&packer), "query($input: PackagingInput!) { getPackagingRequest(input: $input) { orderId status products { productId quantity } } }", input.clone()).await;
            assert_eq!(request["data"]["getPackagingRequest"]["status"], "NEW", "{request}");
            assert_eq!(request["data"]["getPackagingRequest"]["products"].as_array().unwrap().len(), 2);
            // Completing before starting is refused, visibly.
            let complete = "mutation($input: PackagingInput!) { completePackaging(input: $input) { success } }";
            let (_, early) = gql(&app, Some(&packer), complete, input.clone()).await;
            assert_eq!(early["data"]["completePackaging"]["success"], false, "{early}");
            assert_eq!(codes(&early), vec!["CONFLICT".to_owned()]);
            let (_, started) = gql(&app, Some(&packer), "mutation($input: PackagingInput!) { startPackaging(input: $input) { success } }", input.clone()).await;
            assert_eq!(started["data"]["startPackaging"]["success"], true, "{started}");
            let (_, done) = gql(&app, Some(&packer), complete, input.clone()).await;
            assert_eq!(done["data"]["completePackaging"]["success"], true, "{done}");
            app.eventually("the order is packaged", || async { status_of(&app, &shopper, &order_id).await == "PACKAGED" })
                .await;

            // Delivery delivers it.
            app.eventually("the delivery appears", || async {
                let (_, body) = gql(&app, Some(&driver), "{ getNewDeliveries { deliveries { orderId address { city } } } }", json!({})).await;
                body["data"]["getNewDeliveries"]["deliveries"]
                    .as_array()
                    .is_some_and(|ds| ds.iter().any(|d| d["orderId"] == order_id.as_str()))
            })
            .await;
            let (_, delivery) = gql(&app, Some(&driver), "query($input: DeliveryInput!) { getDelivery(input: $input) { orderId address { country city } } }", input.clone()).await;
            assert_eq!(delivery["data"]["getDelivery"]["address"]["country"], "DE", "{delivery}");
            for op in ["startDelivery", "completeDelivery"] {
                let (_, body) = gql(&app, Some(&driver), &format!("mutation($input: DeliveryInput!) {{ {op}(input: $input) {{ success }} }}"), input.clone()).await;
                assert_eq!(body["data"][op]["success"], true, "{op}: {body}");
            }
            app.eventually("the order is fulfilled", || async { status_of(&app, &shopper, &order_id).await == "FULFILLED" })
                .await;
            // FULFILLED means paid: the processor captured the total for this order.
            let captured = app.processor_status(&payment_token).await;
            assert_eq!(captured["status"], "PROCESSED", "{captured}");
            assert_eq!(captured["capturedAmount"], total, "{captured}");
            assert_eq!(captured["orderId"], order_id.as_str(), "{captured}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_refused_order_tells_the_shopper_every_reason() {
        on_each_storage(|app| async move {
            let admin = user_token(&app, "admin@example.com", &["admin"]).await;
            create_product(&app, &admin, "Boots", 4000, "shoes").await;
            let shopper = user_token(&app, "shopper@example.com", &[]).await;
            let lines = lines_from_catalogue(&app, &[1]).await;
            let order = json!({"products": lines, "address": address("SE"), "deliveryPrice": 10, "paymentToken": "not-a-token"});
            let body = create_order(&app, &shopper, None, order).await;
            let result = &body["data"]["createOrder"];
            assert_eq!(result["success"], false, "{body}");
            assert!(result["order"].is_null());
            let errors: Vec<&str> = result["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
            assert!(errors.iter().any(|e| e.contains("Wrong delivery price: got 10, expected 0")), "{errors:?}");
            assert!(errors.iter().any(|e| e.contains("Wrong payment token")), "{errors:?}");
            let (_, listed) = gql(&app, Some(&shopper), ORDERS, json!({})).await;
            assert_eq!(listed["data"]["getOrders"]["orders"], json!([]), "{listed}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_failed_delivery_fails_the_order() {
        on_each_storage(|app| async move {
            let admin = user_token(&app, "admin@example.com", &["admin"]).await;
            create_product(&app, &admin, "Boots", 4000, "shoes").await;
            let shopper = user_token(&app, "shopper@example.com", &[]).await;
            let lines = lines_from_catalogue(&app, &[1]).await;
            let payment_token = preauth(&app, 4000).await;
            let order = json!({"products": lines, "address": address("SE"), "deliveryPrice": 0, "paymentToken": payment_token});
            let body = create_order(&app, &shopper, None, order).await;
            let order_id = body["data"]["createOrder"]["order"]["orderId"].as_str().unwrap().to_owned();
            let input = json!({"input": {"orderId": order_id}});
            // The admin may do everything staff do.
            app.eventually("the packaging request appears", || async {
                let (_, body) = gql(&app, Some(&admin), "query($input: PackagingInput!) { getPackagingRequest(input: $input) { status } }", input.clone()).await;
                body["data"]["getPackagingRequest"]["status"] == "NEW"
            })
            .await;
            for op in ["startPackaging", "completePackaging"] {
                let (_, body) = gql(&app, Some(&admin), &format!("mutation($input: PackagingInput!) {{ {op}(input: $input) {{ success }} }}"), input.clone()).await;
                assert_eq!(body["data"][op]["success"], true, "{op}: {body}");
            }
            app.eventually("the delivery appears", || async {
                let (_, body) = gql(&app, Some(&admin), "query($input: DeliveryInput!) { getDelivery(input: $input) { orderId } }", input.clone()).await;
                body["data"]["getDelivery"]["orderId"] == order_id.as_str()
            })
            .await;
            for op in ["startDelivery", "failDelivery"] {
                let (_, body) = gql(&app, Some(&admin), &format!("mutation($input: DeliveryInput!) {{ {op}(input: $input) {{ success }} }}"), input.clone()).await;
                assert_eq!(body["data"][op]["success"], true, "{op}: {body}");
            }
            app.eventually("the order's delivery failed", || async {
                status_of(&app, &shopper, &order_id).await == "DELIVERY_FAILED"
            })
            .await;
        })
        .await;
    }
}
