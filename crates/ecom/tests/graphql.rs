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

const PRICING: &str = "query($input: DeliveryPricingInput!) { getDeliveryPricing(input: $input) { pricing } }";

mod schema_and_ide {
    use super::*;

    #[tokio::test]
    async fn get_shows_the_graphiql_ide_and_post_answers_introspection() {
        on_each_storage(|app| async move {
            let resp = app.http.get(app.url("/graphql")).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let html = resp.text().await.unwrap();
            assert!(html.contains("graphiql"), "{html}");

            let (status, body) = gql(&app, None, "{ __schema { queryType { name } mutationType { name } } }", json!({})).await;
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
            assert!(body["data"]["__schema"]["types"].as_array().is_some_and(|t| t.len() > 20));
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
                ("not GraphQL", "{ getProducts {", json!({}), "GRAPHQL_PARSE_FAILED"),
                ("unknown field", "{ getProducts { products { colour } } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
                ("unknown operation", "{ getEverything }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
                ("missing argument", "{ getProduct { name } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
                ("missing variable", product, json!({}), "BAD_USER_INPUT"),
                ("variable of the wrong type", product, json!({"id": {"a": 1}}), "GRAPHQL_VALIDATION_FAILED"),
                ("wrong type inline", "{ getDeliveryPricing(input: 5) { pricing } }", json!({}), "BAD_USER_INPUT"),
                ("no selection on an object", "{ getProducts }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
            ];
            for (what, query, variables, code) in cases {
                let (status, body) = gql(&app, None, query, variables).await;
                assert_eq!(status, StatusCode::OK, "{what}: {body}");
                assert!(body["data"].is_null(), "{what}: {body}");
                assert_eq!(codes(&body), vec![code.to_owned()], "{what}: {body}");
                assert!(!body["errors"][0]["message"].as_str().unwrap_or("").is_empty(), "{what}");
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
            assert_eq!(codes(&body), vec!["GRAPHQL_VALIDATION_FAILED".to_owned()], "{body}");
            assert!(body["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{body}");
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
            assert!(body["errors"][0]["message"].as_str().unwrap().contains("query"), "{body}");

            let huge = format!("{{\"query\": \"{{ getProducts {{ nextToken }} }}\", \"x\": \"{}\"}}", "a".repeat(300 * 1024));
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
                assert!(body["errors"][0]["message"].as_str().unwrap().contains("nextToken"));
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
                assert_eq!(body["data"]["getDeliveryPricing"]["pricing"], pricing, "{country}: {body}");
            }
            let input = json!({"input": {"products": [product], "address": address("Sweden")}});
            let (_, body) = gql(&app, Some(&token), PRICING, input).await;
            assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_owned()], "{body}");
            assert!(body["errors"][0]["message"].as_str().unwrap().contains("country"), "{body}");
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
