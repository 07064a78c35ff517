//! Issue 5: the products service over real HTTP (public catalogue routes,
//! `/backend/validate`, admin routes) and `ecom products import`, with the
//! events each change emits, on SQLite and (when configured) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_each_storage, TestApp};
use ecom::cli::products::import_file;
use ecom_platform::Event;
use ecom_products::import::ImportReport;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The sample catalogue shipped in the repository.
fn catalogue_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/catalogue.json")
}

fn catalogue() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(catalogue_file()).unwrap()).unwrap()
}

/// A valid product with a fresh id.
fn product(name: &str, price: i64, category: &str) -> Value {
    json!({
        "productId": uuid::Uuid::new_v4().to_string(),
        "name": name,
        "category": category,
        "price": price,
        "package": {"width": 100, "length": 200, "height": 50, "weight": 400},
        "tags": ["test"],
        "pictures": ["https://images.example.com/x.jpg"]
    })
}

/// Loads `products` as `ecom products import` does.
async fn import(app: &TestApp, products: &[Value]) -> ImportReport {
    let file = app.data_dir.join(format!("import-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_string(products).unwrap()).unwrap();
    import_file(&app.storage_target(), &file).await.unwrap()
}

async fn validate(app: &TestApp, products: &[Value]) -> (StatusCode, Value) {
    app.post_as_service("/products/backend/validate", &json!({ "products": products }))
        .await
}

/// The fields validate compares, as an order line would carry them.
fn line(p: &Value) -> Value {
    json!({"productId": p["productId"], "name": p["name"], "package": p["package"], "price": p["price"], "quantity": 2})
}

/// Waits until `count` events matching `wanted` have been carried; returns them in the order seen.
async fn events(app: &TestApp, count: usize, wanted: impl Fn(&Event) -> bool) -> Vec<Event> {
    let matching = || app.events().into_iter().filter(|e| wanted(e)).collect::<Vec<_>>();
    app.eventually(&format!("{count} events"), || async { matching().len() >= count })
        .await;
    matching()
}

/// Every product of a listing, following `nextToken` to the end.
async fn walk(app: &TestApp, query: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/products/products?{query}");
        if let Some(t) = &token {
            path += &format!("&nextToken={t}");
        }
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for p in body["products"].as_array().unwrap() {
            ids.push(p["productId"].as_str().unwrap().to_owned());
        }
        match body["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return (ids, pages),
        }
    }
}

mod public_queries {
    use super::*;

    #[tokio::test]
    async fn get_one_returns_the_product_with_the_dates_the_service_set() {
        on_each_storage(|app| async move {
            let mut sent = product("Shoe", 500, "shoes");
            sent["createdDate"] = json!("2001-01-01T00:00:00Z");
            import(&app, &[sent.clone()]).await;
            let id = sent["productId"].as_str().unwrap();

            let (status, got) = app.get(&format!("/products/products/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{got}");
            for field in [
                "productId",
                "name",
                "category",
                "price",
                "package",
                "tags",
                "pictures",
            ] {
                assert_eq!(got[field], sent[field], "{field}");
            }
            let created = got["createdDate"].as_str().unwrap();
            assert_ne!(created, "2001-01-01T00:00:00Z", "the caller's date is ignored");
            assert!(created.ends_with('Z') && created.starts_with("20"), "{created}");
            assert_eq!(got["modifiedDate"], got["createdDate"]);
        })
        .await;
    }

    #[tokio::test]
    async fn get_one_of_an_unknown_or_malformed_id_is_refused() {
        on_each_storage(|app| async move {
            let id = uuid::Uuid::new_v4();
            let (status, body) = app.get(&format!("/products/products/{id}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["message"], format!("product '{id}' not found"));

            let (status, body) = app.get("/products/products/not-a-uuid").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["message"], "productId: 'not-a-uuid' is not a UUID");
        })
        .await;
    }

    #[tokio::test]
    async fn paging_through_the_catalogue_visits_every_product_once() {
        on_each_storage(|app| async move {
            let all = catalogue();
            import(&app, &all).await;
            let (ids, pages) = walk(&app, "limit=7").await;
            let expected: BTreeSet<String> = all
                .iter()
                .map(|p| p["productId"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids.len(), all.len(), "no product twice");
            assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
            assert_eq!(pages, all.len().div_ceil(7));

            // Without a limit a page holds 20.
            let (_, body) = app.get("/products/products").await;
            assert_eq!(body["products"].as_array().unwrap().len(), 20);
            assert!(body["nextToken"].is_string());
        })
        .await;
    }

    #[tokio::test]
    async fn listing_by_category_pages_through_that_category_only() {
        on_each_storage(|app| async move {
            let all = catalogue();
            import(&app, &all).await;
            let expected: BTreeSet<String> = all
                .iter()
                .filter(|p| p["category"] == "kitchen")
                .map(|p| p["productId"].as_str().unwrap().to_owned())
                .collect();
            assert!(expected.len() > 2);
            let (ids, pages) = walk(&app, "category=kitchen&limit=2").await;
            assert_eq!(ids.len(), expected.len());
            assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
            assert_eq!(pages, expected.len().div_ceil(2));

            let (status, body) = app.get("/products/products?category=nothing-here").await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, json!({"products": [], "nextToken": null}))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn bad_page_parameters_are_refused_naming_the_parameter() {
        on_each_storage(|app| async move {
            let cases = [
                (
                    "nextToken=garbage",
                    "nextToken: not a page token given by this service",
                ),
                (
                    "nextToken=cDE6bm90LWEtdXVpZA",
                    "nextToken: not a page token given by this service",
                ),
                ("limit=0", "limit: must be between 1 and 100, got 0"),
                ("limit=101", "limit: must be between 1 and 100, got 101"),
            ];
            for (query, message) in cases {
                let (status, body) = app.get(&format!("/products/products?{query}")).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
                assert_eq!(body["message"], message, "{query}");
            }
            let (status, body) = app.get("/products/products?limit=ten").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(body["message"].as_str().unwrap().contains("limit"), "{body}");
        })
        .await;
    }
}

mod validate {
    use super::*;

    #[tokio::test]
    async fn products_as_the_catalogue_has_them_are_all_valid() {
        on_each_storage(|app| async move {
            let all = catalogue();
            import(&app, &all).await;
            let lines: Vec<Value> = all.iter().take(8).map(line).collect();
            let (status, body) = validate(&app, &lines).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, json!({"message": "All products are valid"}));

            let (status, body) = validate(&app, &[]).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, json!({"message": "All products are valid"}))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn an_unknown_product_is_reported_with_the_callers_version() {
        on_each_storage(|app| async move {
            let unknown = line(&product("Ghost", 100, "none"));
            let (status, body) = validate(&app, std::slice::from_ref(&unknown)).await;
            assert_eq!(status, StatusCode::OK);
            let id = unknown["productId"].as_str().unwrap();
            assert_eq!(
                body,
                json!({"message": format!("Product '{id}' not found"), "products": [unknown]})
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_wrong_price_is_reported_with_the_catalogues_version() {
        on_each_storage(|app| async move {
            let known = product("Shoe", 500, "shoes");
            import(&app, std::slice::from_ref(&known)).await;
            let mut claim = line(&known);
            claim["price"] = json!(400);
            let (status, body) = validate(&app, &[claim]).await;
            assert_eq!(status, StatusCode::OK);
            let id = known["productId"].as_str().unwrap();
            assert_eq!(
                body["message"],
                format!("Invalid value for 'price': want '500', got '400' in product '{id}'")
            );
            let returned = &body["products"][0];
            assert_eq!(returned["price"], 500);
            assert_eq!(returned["category"], "shoes");
            assert!(
                returned["createdDate"].is_string(),
                "the catalogue's version: {returned}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_wrong_package_or_name_is_reported() {
        on_each_storage(|app| async move {
            let known = product("Shoe", 500, "shoes");
            import(&app, std::slice::from_ref(&known)).await;
            let id = known["productId"].as_str().unwrap();

            let mut claim = line(&known);
            claim["package"]["weight"] = json!(1);
            let (_, body) = validate(&app, &[claim]).await;
            assert_eq!(
                body["message"],
                format!(
                    "Invalid value for 'package': want '{{\"width\":100,\"length\":200,\"height\":50,\"weight\":400}}', \
                     got '{{\"width\":100,\"length\":200,\"height\":50,\"weight\":1}}' in product '{id}'"
                )
            );
            assert_eq!(body["products"][0]["package"], known["package"]);

            let mut claim = line(&known);
            claim["name"] = json!("Boot");
            let (_, body) = validate(&app, &[claim]).await;
            assert_eq!(
                body["message"],
                format!("Invalid value for 'name': want 'Shoe', got 'Boot' in product '{id}'")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn reasons_follow_the_order_of_the_request() {
        on_each_storage(|app| async move {
            let (a, b) = (product("A", 100, "x"), product("B", 200, "x"));
            import(&app, &[a.clone(), b.clone()]).await;
            let ghost = line(&product("Ghost", 1, "x"));
            let mut wrong_b = line(&b);
            wrong_b["price"] = json!(1);
            let (status, body) = validate(&app, &[wrong_b, line(&a), ghost.clone()]).await;
            assert_eq!(status, StatusCode::OK);
            let (bid, gid) = (b["productId"].as_str().unwrap(), ghost["productId"].as_str().unwrap());
            assert_eq!(
                body["message"],
                format!(
                    "Invalid value for 'price': want '200', got '1' in product '{bid}'. Product '{gid}' not found"
                )
            );
            let products = body["products"].as_array().unwrap();
            assert_eq!(products.len(), 2);
            assert_eq!(products[0]["productId"], b["productId"]);
            assert_eq!(products[0]["price"], 200);
            assert_eq!(products[1], ghost);
        })
        .await;
    }

    #[tokio::test]
    async fn a_request_of_the_wrong_shape_is_refused_naming_the_field() {
        on_each_storage(|app| async move {
            let good = line(&product("A", 100, "x"));
            let without = |field: &str| {
                let mut p = good.clone();
                p.as_object_mut().unwrap().remove(field);
                json!({ "products": [good.clone(), p] })
            };
            let mut negative = good.clone();
            negative["price"] = json!(-5);
            let cases = [
                (json!({}), "missing field `products`"),
                (json!({"products": "all"}), "products: invalid type"),
                (without("productId"), "products[1]: missing field `productId`"),
                (without("price"), "products[1]: missing field `price`"),
                (without("package"), "products[1]: missing field `package`"),
                (without("name"), "products[1]: missing field `name`"),
                (
                    json!({"products": [negative]}),
                    "products[0].price: must be a non-negative integer, got -5",
                ),
                (json!({"products": [1]}), "products[0]: invalid type: integer `1`"),
            ];
            for (body, message) in cases {
                let (status, answer) = app.post_as_service("/products/backend/validate", &body).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
                let got = answer["message"].as_str().unwrap();
                assert!(
                    got.starts_with(message),
                    "{body}: '{got}' should start with '{message}'"
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn two_hundred_and_fifty_products_are_validated_in_one_call() {
        on_each_storage(|app| async move {
            let many: Vec<Value> = (0..250).map(|i| product(&format!("P{i}"), i, "bulk")).collect();
            let report = import(&app, &many).await;
            assert_eq!(report.created, 250);
            let mut lines: Vec<Value> = many.iter().map(line).collect();
            let (status, body) = validate(&app, &lines).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, json!({"message": "All products are valid"}))
            );

            // Wrong ones at both ends and beyond the original's batch of 100.
            for i in [0, 150, 249] {
                lines[i]["price"] = json!(10_000);
            }
            let (_, body) = validate(&app, &lines).await;
            let message = body["message"].as_str().unwrap();
            assert_eq!(
                message.matches("Invalid value for 'price'").count(),
                3,
                "{message}"
            );
            let returned: Vec<&Value> = body["products"].as_array().unwrap().iter().collect();
            assert_eq!(returned.len(), 3);
            assert_eq!(returned[1]["productId"], many[150]["productId"]);
            assert_eq!(returned[2]["price"], 249);
        })
        .await;
    }

    #[tokio::test]
    async fn validate_refuses_callers_without_a_service_credential() {
        on_each_storage(|app| async move {
            let (status, _) = app
                .post("/products/backend/validate", &json!({"products": []}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        })
        .await;
    }
}

mod import {
    use super::*;

    #[tokio::test]
    async fn the_sample_catalogue_loads_once_and_a_second_run_changes_nothing() {
        on_each_storage(|app| async move {
            let first = import_file(&app.storage_target(), &catalogue_file())
                .await
                .unwrap();
            let n = catalogue().len();
            assert!(n >= 30, "a few dozen products");
            assert_eq!((first.created, first.updated, first.refused.len()), (n, 0, 0));
            let created = events(&app, n, |e| e.detail_type == "ProductCreated").await;
            let second = import_file(&app.storage_target(), &catalogue_file())
                .await
                .unwrap();
            assert_eq!((second.created, second.updated, second.unchanged), (0, 0, n));

            // The outbox is relayed in order: once a later change is seen,
            // anything the second run had emitted would have been seen too.
            let marker = product("Marker", 1, "x");
            import(&app, std::slice::from_ref(&marker)).await;
            let marker_id = marker["productId"].as_str().unwrap().to_owned();
            events(&app, 1, |e| e.resources == [marker_id.clone()]).await;
            let products_events = app
                .events()
                .into_iter()
                .filter(|e| e.source == "ecommerce.products")
                .count();
            assert_eq!(products_events, n + 1, "the second run emits nothing");
            let categories: BTreeSet<String> = created
                .iter()
                .filter_map(|e| e.detail.value()["category"].as_str().map(str::to_owned))
                .collect();
            assert!(categories.len() >= 5, "{categories:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn refused_products_are_reported_with_reasons_and_the_rest_is_loaded() {
        on_each_storage(|app| async move {
            let good = product("Good", 100, "x");
            let mut no_name = product("", 100, "x");
            no_name.as_object_mut().unwrap().remove("name");
            let mut bad_price = product("Cheap", 100, "x");
            bad_price["price"] = json!(-1);
            let mut bad_picture = product("Pic", 100, "x");
            bad_picture["pictures"] = json!(["nope"]);
            let mut generated = product("New", 100, "x");
            generated.as_object_mut().unwrap().remove("productId");

            let report = import(&app, &[good, no_name, bad_price, bad_picture, generated]).await;
            assert_eq!((report.created, report.updated), (2, 0));
            assert_eq!(
                report.refused,
                vec![
                    "[1]: missing field `name`".to_owned(),
                    "[2] 'Cheap': price: must be a non-negative integer, got -1".to_owned(),
                    "[3] 'Pic': pictures[0]: must be an http or https URL, got 'nope'".to_owned(),
                ]
            );
            assert!(report
                .to_string()
                .starts_with("created 2, updated 0, unchanged 0, refused 3"));
            let (ids, _) = walk(&app, "category=x").await;
            assert_eq!(ids.len(), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn importing_a_changed_product_updates_it_and_emits_what_changed() {
        on_each_storage(|app| async move {
            let original = product("Shoe", 500, "shoes");
            import(&app, std::slice::from_ref(&original)).await;
            let mut changed = original.clone();
            changed["price"] = json!(450);
            changed["tags"] = json!(["sale"]);
            let report = import(&app, &[changed]).await;
            assert_eq!(report.updated, 1);

            let id = original["productId"].as_str().unwrap().to_owned();
            let modified = events(&app, 1, |e| {
                e.detail_type == "ProductModified" && e.resources == [id.clone()]
            })
            .await;
            let detail = &modified[0].detail.value();
            assert_eq!(modified[0].source, "ecommerce.products");
            assert_eq!(detail["changed"], json!(["modifiedDate", "price", "tags"]));
            assert_eq!(detail["old"]["price"], 500);
            assert_eq!(detail["new"]["price"], 450);
            assert_eq!(detail["new"]["createdDate"], detail["old"]["createdDate"]);
            let (_, got) = app.get(&format!("/products/products/{id}")).await;
            assert_eq!(got, detail["new"]);
        })
        .await;
    }
}

mod admin {
    use super::*;

    fn without(mut p: Value, field: &str) -> Value {
        p.as_object_mut().unwrap().remove(field);
        p
    }

    #[tokio::test]
    async fn admin_routes_refuse_anonymous_callers_and_users_outside_the_admin_group() {
        on_each_storage(|app| async move {
            let shopper = app.user_token(&[]).await;
            let id = uuid::Uuid::new_v4();
            let one = format!("/products/admin/products/{id}");
            let body = product("Shoe", 500, "shoes");
            for token in [None, Some("garbage"), Some(shopper.as_str())] {
                let expected = match token {
                    Some(t) if t == shopper => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNAUTHORIZED,
                };
                let with = |r: reqwest::RequestBuilder| match token {
                    Some(t) => r.bearer_auth(t),
                    None => r,
                };
                let url = |p: &str| app.url(p);
                let calls = [
                    with(app.http.post(url("/products/admin/products")).json(&body)),
                    with(app.http.get(url("/products/admin/products"))),
                    with(app.http.get(url(&one))),
                    with(app.http.put(url(&one)).json(&body)),
                    with(app.http.delete(url(&one))),
                ];
                for call in calls {
                    let (status, answer) = common::send(call).await;
                    assert_eq!(status, expected, "token {token:?}: {answer}");
                    assert!(answer["message"].is_string());
                }
            }
            let (_, page) = app.get("/products/products").await;
            assert_eq!(page["products"], json!([]), "nothing was created");
        })
        .await;
    }

    #[tokio::test]
    async fn an_admin_creates_reads_updates_and_deletes_a_product_and_each_change_is_an_event() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let sent = without(product("Shoe", 500, "shoes"), "productId");
            let (status, created) = app
                .post_with_token("/products/admin/products", &admin, &sent)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            let id = created["productId"].as_str().unwrap().to_owned();
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "an id is generated: {id}");
            assert_eq!(created["name"], "Shoe");
            assert_eq!(created["createdDate"], created["modifiedDate"]);
            let one = format!("/products/admin/products/{id}");
            assert_eq!(
                app.get_with_token(&one, &admin).await,
                (StatusCode::OK, created.clone())
            );
            assert_eq!(
                app.get(&format!("/products/products/{id}")).await,
                (StatusCode::OK, created.clone())
            );

            let mut change = created.clone();
            change["price"] = json!(450);
            change["name"] = json!("Running shoe");
            let (status, updated) = app.put_with_token(&one, &admin, &change).await;
            assert_eq!(status, StatusCode::OK, "{updated}");
            assert_eq!(
                (updated["price"].clone(), updated["name"].clone()),
                (json!(450), json!("Running shoe"))
            );
            assert_eq!(updated["createdDate"], created["createdDate"]);
            assert!(updated["modifiedDate"].as_str() > created["modifiedDate"].as_str());

            // Sending the stored product back changes nothing.
            let (status, same) = app.put_with_token(&one, &admin, &updated).await;
            assert_eq!((status, &same), (StatusCode::OK, &updated));

            let (_, page) = app.get_with_token("/products/admin/products", &admin).await;
            assert_eq!(page["products"], json!([updated.clone()]));

            let (status, deleted) = app.delete_with_token(&one, &admin).await;
            assert_eq!((status, &deleted), (StatusCode::OK, &updated));
            assert_eq!(app.get_with_token(&one, &admin).await.0, StatusCode::NOT_FOUND);
            assert_eq!(
                app.get(&format!("/products/products/{id}")).await.0,
                StatusCode::NOT_FOUND
            );
            let (status, body) = app.delete_with_token(&one, &admin).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["message"], format!("product '{id}' not found"));

            let seen = events(&app, 3, |e| e.resources == [id.clone()]).await;
            let kinds: Vec<&str> = seen.iter().map(|e| e.detail_type.as_str()).collect();
            assert_eq!(
                kinds,
                ["ProductCreated", "ProductModified", "ProductDeleted"],
                "no event for the no-op update"
            );
            assert!(seen.iter().all(|e| e.source == "ecommerce.products"));
            assert_eq!(seen[0].detail, created);
            assert_eq!(
                seen[1].detail.value()["changed"],
                json!(["modifiedDate", "name", "price"])
            );
            assert_eq!(seen[1].detail.value()["old"], created);
            assert_eq!(seen[1].detail.value()["new"], updated);
            assert_eq!(seen[2].detail, updated);
        })
        .await;
    }

    #[tokio::test]
    async fn create_refuses_bad_input_naming_the_field_and_stores_nothing() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let good = product("Shoe", 500, "shoes");
            let with = |field: &str, value: Value| {
                let mut p = good.clone();
                p[field] = value;
                p
            };
            let cases = [
                (without(good.clone(), "name"), "missing field `name`"),
                (with("name", json!("")), "name: must not be empty"),
                (
                    with("price", json!(-1)),
                    "price: must be a non-negative integer, got -1",
                ),
                (
                    with("price", json!(9.99)),
                    "price: invalid type: floating point `9.99`",
                ),
                (with("price", json!("500")), "price: invalid type: string"),
                (without(good.clone(), "package"), "missing field `package`"),
                (
                    with(
                        "package",
                        json!({"width": 1, "length": 1, "height": -1, "weight": 1}),
                    ),
                    "package.height: must be a non-negative integer, got -1",
                ),
                (
                    with("pictures", json!(["https://ok.example/a.jpg", "/relative.jpg"])),
                    "pictures[1]: must be an http or https URL",
                ),
                (with("productId", json!("1234")), "productId: UUID parsing failed"),
                (with("category", json!("  ")), "category: must not be empty"),
            ];
            for (body, message) in cases {
                let (status, answer) = app
                    .post_with_token("/products/admin/products", &admin, &body)
                    .await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
                let got = answer["message"].as_str().unwrap();
                assert!(got.starts_with(message), "'{got}' should start with '{message}'");
            }
            let (status, answer) = common::send(
                app.http
                    .post(app.url("/products/admin/products"))
                    .bearer_auth(&admin)
                    .body("{nope"),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(answer["message"]
                .as_str()
                .unwrap()
                .starts_with("request body is not valid JSON"));
            let (_, page) = app.get_with_token("/products/admin/products", &admin).await;
            assert_eq!(page["products"], json!([]));
        })
        .await;
    }

    #[tokio::test]
    async fn create_with_a_taken_id_is_a_conflict() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let p = product("Shoe", 500, "shoes");
            let (status, _) = app.post_with_token("/products/admin/products", &admin, &p).await;
            assert_eq!(status, StatusCode::CREATED);
            let (status, body) = app.post_with_token("/products/admin/products", &admin, &p).await;
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(
                body["message"],
                format!("product '{}' already exists", p["productId"].as_str().unwrap())
            );
        })
        .await;
    }

    #[tokio::test]
    async fn update_refuses_unknown_products_mismatched_ids_and_bad_input() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let p = product("Shoe", 500, "shoes");
            app.post_with_token("/products/admin/products", &admin, &p).await;
            let id = p["productId"].as_str().unwrap();
            let one = format!("/products/admin/products/{id}");

            let ghost = uuid::Uuid::new_v4();
            let (status, body) = app
                .put_with_token(
                    &format!("/products/admin/products/{ghost}"),
                    &admin,
                    &without(p.clone(), "productId"),
                )
                .await;
            assert_eq!(
                (status, body["message"].clone()),
                (
                    StatusCode::NOT_FOUND,
                    json!(format!("product '{ghost}' not found"))
                )
            );

            let mut other_id = p.clone();
            other_id["productId"] = json!(ghost.to_string());
            let (status, body) = app.put_with_token(&one, &admin, &other_id).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(
                body["message"],
                "productId: differs from the product id in the path"
            );

            let mut negative = p.clone();
            negative["package"]["weight"] = json!(-3);
            let (status, body) = app.put_with_token(&one, &admin, &negative).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(
                body["message"],
                "package.weight: must be a non-negative integer, got -3"
            );

            let (status, body) = app
                .put_with_token("/products/admin/products/not-a-uuid", &admin, &p)
                .await;
            assert_eq!(
                (status, body["message"].clone()),
                (
                    StatusCode::BAD_REQUEST,
                    json!("productId: 'not-a-uuid' is not a UUID")
                )
            );

            let (_, stored) = app.get_with_token(&one, &admin).await;
            assert_eq!(stored["price"], 500, "nothing changed");
        })
        .await;
    }

    #[tokio::test]
    async fn the_admin_listing_pages_through_every_product_once() {
        on_each_storage(|app| async move {
            let admin = app.user_token(&["admin"]).await;
            let all = catalogue();
            import(&app, &all).await;
            let mut seen = Vec::new();
            let mut path = "/products/admin/products?limit=5".to_owned();
            loop {
                let (status, page) = app.get_with_token(&path, &admin).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                seen.extend(
                    page["products"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["productId"].clone()),
                );
                match page["nextToken"].as_str() {
                    Some(t) => path = format!("/products/admin/products?limit=5&nextToken={t}"),
                    None => break,
                }
            }
            let unique: BTreeSet<String> = seen.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            assert_eq!((seen.len(), unique.len()), (all.len(), all.len()));

            let (status, body) = app
                .get_with_token("/products/admin/products?nextToken=garbage", &admin)
                .await;
            assert_eq!(
                (status, body["message"].clone()),
                (
                    StatusCode::BAD_REQUEST,
                    json!("nextToken: not a page token given by this service")
                )
            );
        })
        .await;
    }
}
