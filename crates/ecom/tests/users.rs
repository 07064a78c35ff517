//! Issue 4: the users service (sign-up, sign-in, tokens, admin routes, the
//! CLI) and the ID-token checks every service relies on, over real HTTP on
//! SQLite and (when configured) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{on_each_storage, TestApp};
use ecom::cli::users::KeysCommand;
use ecom_runtime::auth::{Claims, TokenClaims};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const PASSWORD: &str = "Sup3r-secret";

async fn sign_up(app: &TestApp, email: &str) -> String {
    let (status, body) = app
        .post("/users/sign-up", &json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["userId"].as_str().unwrap().to_owned()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post("/users/sign-in", &json!({"email": email, "password": password}))
        .await
}

async fn id_token(app: &TestApp, email: &str) -> String {
    let (status, body) = sign_in(app, email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["idToken"].as_str().unwrap().to_owned()
}

/// An admin made with the CLI, signed in.
async fn admin_token(app: &TestApp) -> String {
    ecom::cli::users::add(
        &app.storage_target(),
        "root@example.com",
        PASSWORD,
        &["admin".into()],
    )
    .await
    .unwrap();
    id_token(app, "root@example.com").await
}

/// A user in `groups` (created by an admin), signed in.
async fn staff_token(app: &TestApp, admin: &str, email: &str, groups: &[&str]) -> String {
    let (status, body) = app
        .post_with_token(
            "/users/admin/users",
            admin,
            &json!({"email": email, "password": PASSWORD, "groups": groups}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    id_token(app, email).await
}

/// The claims of a JWT, read without checking it.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

mod sign_up_and_sign_in {
    use super::*;

    #[tokio::test]
    async fn a_new_user_signs_up_signs_in_and_reads_their_account() {
        on_each_storage(|app| async move {
            let user_id = sign_up(&app, "  Ada@Example.com ").await;
            let (status, body) = sign_in(&app, "ada@example.com", PASSWORD).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["expiresIn"], 3600);
            assert!(body["refreshToken"].as_str().unwrap().len() >= 32);
            let token = body["idToken"].as_str().unwrap();
            let claims = payload(token);
            assert_eq!(claims["sub"], user_id.as_str());
            assert_eq!(claims["email"], "ada@example.com");
            assert_eq!(claims["groups"], json!([]));

            let (status, me) = app.get_with_token("/users/me", token).await;
            assert_eq!(status, StatusCode::OK, "{me}");
            assert_eq!(me["userId"], user_id.as_str());
            assert_eq!(me["email"], "ada@example.com");
            assert!(me.get("passwordHash").is_none());

            // The bare token, without "Bearer", is accepted too.
            let resp = app
                .http
                .get(app.url("/users/me"))
                .header("Authorization", token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        })
        .await;
    }

    #[tokio::test]
    async fn sign_up_refuses_bad_input_naming_the_field() {
        on_each_storage(|app| async move {
            let cases = [
                (json!({"password": PASSWORD}), "missing field `email`"),
                (json!({"email": "a@example.com"}), "missing field `password`"),
                (json!({"email": "not-an-email", "password": PASSWORD}), "email: "),
                (
                    json!({"email": "a@example.com", "password": "short1"}),
                    "password: must be 8",
                ),
                (
                    json!({"email": "a@example.com", "password": "onlyletters"}),
                    "password: must be 8",
                ),
                (json!({"email": 5, "password": PASSWORD}), "email: "),
            ];
            for (body, message) in cases {
                let (status, answer) = app.post("/users/sign-up", &body).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
                let text = answer["message"].as_str().unwrap();
                assert!(text.contains(message), "{body} → {text}");
            }
            let (status, _) = app.post_raw("/users/sign-up", "{not json").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        })
        .await;
    }

    #[tokio::test]
    async fn an_email_signs_up_once_whatever_its_case() {
        on_each_storage(|app| async move {
            sign_up(&app, "bob@example.com").await;
            let (status, body) = app
                .post(
                    "/users/sign-up",
                    &json!({"email": "BOB@example.com ", "password": "An0ther-one"}),
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert!(body["message"].as_str().unwrap().starts_with("email:"));
        })
        .await;
    }

    #[tokio::test]
    async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
        on_each_storage(|app| async move {
            sign_up(&app, "carol@example.com").await;
            let wrong = sign_in(&app, "carol@example.com", "Wrong-pass1").await;
            let unknown = sign_in(&app, "nobody@example.com", PASSWORD).await;
            assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
            assert_eq!(wrong, unknown);
            let (status, _) = app
                .post("/users/sign-in", &json!({"email": "carol@example.com"}))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        })
        .await;
    }

    #[tokio::test]
    async fn signing_up_emits_user_created() {
        on_each_storage(|app| async move {
            let user_id = sign_up(&app, "dan@example.com").await;
            let event = app
                .wait_for_event("UserCreated for dan", |e| {
                    e.detail_type == "UserCreated" && e.detail.value()["email"] == "dan@example.com"
                })
                .await;
            assert_eq!(event.source, "ecommerce.users");
            assert_eq!(event.resources, vec![user_id.clone()]);
            assert_eq!(event.detail.value()["userId"], user_id.as_str());
        })
        .await;
    }

    #[tokio::test]
    async fn failed_sign_ins_are_limited_per_account_then_per_address() {
        on_each_storage(|app| async move {
            sign_up(&app, "eve@example.com").await;
            for _ in 0..5 {
                let (status, _) = sign_in(&app, "eve@example.com", "Wrong-pass1").await;
                assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
            // Locked: even the right password waits.
            let resp = app
                .http
                .post(app.url("/users/sign-in"))
                .json(&json!({"email": "eve@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=900).contains(&retry), "{retry}");
            // Another account is still open from this address…
            sign_up(&app, "frank@example.com").await;
            id_token(&app, "frank@example.com").await;
            // …until the address has failed 20 times in all.
            for i in 0..15 {
                let (status, _) = sign_in(&app, &format!("guess{i}@example.com"), PASSWORD).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
            }
            let (status, _) = sign_in(&app, "frank@example.com", PASSWORD).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        })
        .await;
    }
}

mod refresh_and_sign_out {
    use super::*;

    async fn tokens(app: &TestApp) -> Value {
        sign_up(app, "gina@example.com").await;
        let (status, body) = sign_in(app, "gina@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    #[tokio::test]
    async fn a_refresh_token_buys_a_new_id_token_once() {
        on_each_storage(|app| async move {
            let first = tokens(&app).await;
            let old = first["refreshToken"].as_str().unwrap();
            let (status, second) = app.post("/users/refresh", &json!({"refreshToken": old})).await;
            assert_eq!(status, StatusCode::OK, "{second}");
            assert_eq!(second["expiresIn"], 3600);
            assert_ne!(second["refreshToken"], first["refreshToken"]);
            let (status, _) = app
                .get_with_token("/users/me", second["idToken"].as_str().unwrap())
                .await;
            assert_eq!(status, StatusCode::OK);
            // The old refresh token was rotated out.
            let (status, _) = app.post("/users/refresh", &json!({"refreshToken": old})).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let (status, _) = app
                .post("/users/refresh", &json!({"refreshToken": "made-up"}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let (status, _) = app.post("/users/refresh", &json!({})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        })
        .await;
    }

    #[tokio::test]
    async fn signing_out_revokes_the_refresh_token() {
        on_each_storage(|app| async move {
            let body = tokens(&app).await;
            let refresh = body["refreshToken"].as_str().unwrap();
            let (status, _) = app
                .post("/users/sign-out", &json!({"refreshToken": refresh}))
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            let (status, _) = app
                .post("/users/refresh", &json!({"refreshToken": refresh}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            // Signing out twice is harmless.
            let (status, _) = app
                .post("/users/sign-out", &json!({"refreshToken": refresh}))
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        })
        .await;
    }
}

mod tokens {
    use super::*;

    #[tokio::test]
    async fn the_jwks_publishes_the_key_that_signs_id_tokens() {
        on_each_storage(|app| async move {
            sign_up(&app, "hal@example.com").await;
            let token = id_token(&app, "hal@example.com").await;
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap())
                    .unwrap();
            assert_eq!(header["alg"], "EdDSA");
            let (status, jwks) = app.get("/users/.well-known/jwks.json").await;
            assert_eq!(status, StatusCode::OK);
            let key = &jwks["keys"][0];
            assert_eq!(key["kid"], header["kid"]);
            assert_eq!(key["kty"], "OKP");
            assert_eq!(key["crv"], "Ed25519");
            assert_eq!(key["alg"], "EdDSA");
            assert!(key.get("d").is_none(), "the private key must not be published");
        })
        .await;
    }

    fn kid_of(token: &str) -> String {
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    }

    async fn published_kids(app: &TestApp) -> Vec<String> {
        let (status, jwks) = app.get("/users/.well-known/jwks.json").await;
        assert_eq!(status, StatusCode::OK);
        let mut kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    }

    async fn keys(app: &TestApp, command: KeysCommand) -> anyhow::Result<Vec<String>> {
        ecom::cli::users::keys(&app.storage_target(), command).await
    }

    #[tokio::test]
    async fn a_rotated_key_signs_at_once_and_a_retired_one_leaves_the_key_set() {
        on_each_storage(|app| async move {
            sign_up(&app, "rot@example.com").await;
            let before = id_token(&app, "rot@example.com").await;
            let first = kid_of(&before);
            let listed = keys(&app, KeysCommand::List).await.unwrap();
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert!(
                listed[0].starts_with(&first) && listed[0].ends_with("signing"),
                "{listed:?}"
            );

            let second = keys(&app, KeysCommand::Rotate).await.unwrap().remove(0);
            assert_ne!(second, first);
            let after = id_token(&app, "rot@example.com").await;
            assert_eq!(kid_of(&after), second, "the new key signs from the next token on");
            let mut both = vec![first.clone(), second.clone()];
            both.sort();
            assert_eq!(published_kids(&app).await, both);
            // Tokens of either key are accepted.
            for token in [&before, &after] {
                let (status, body) = app.get_with_token("/users/me", token).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            let listed = keys(&app, KeysCommand::List).await.unwrap();
            assert!(
                listed[0].starts_with(&second) && listed[0].ends_with("signing"),
                "{listed:?}"
            );
            assert!(
                listed[1].starts_with(&first) && listed[1].ends_with("verifying only"),
                "{listed:?}"
            );

            // The signing key and unknown keys cannot be retired.
            let err = keys(&app, KeysCommand::Retire { kid: second.clone() })
                .await
                .unwrap_err();
            assert!(err.to_string().contains("rotate first"), "{err}");
            let err = keys(&app, KeysCommand::Retire { kid: "nope".into() })
                .await
                .unwrap_err();
            assert!(err.to_string().contains("no signing key 'nope'"), "{err}");
            assert_eq!(published_kids(&app).await, both);

            keys(&app, KeysCommand::Retire { kid: first.clone() })
                .await
                .unwrap();
            assert_eq!(published_kids(&app).await, vec![second.clone()]);
            let (status, body) = app.get_with_token("/users/me", &after).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        })
        .await;
    }

    /// Signs `claims` with the users service's own key, read from its database.
    async fn sign_with_service_key(app: &TestApp, claims: &TokenClaims) -> String {
        use ecom_storage::sqlx::{self, Row as _};
        let db = ecom_storage::Db::open(&app.storage_target(), "users")
            .await
            .unwrap();
        let row = sqlx::query("SELECT kid, private_pkcs8 FROM signing_keys")
            .fetch_one(db.reader())
            .await
            .unwrap();
        let kid: String = row.try_get(0).unwrap();
        let der = STANDARD.decode(row.try_get::<String, _>(1).unwrap()).unwrap();
        db.close().await;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ed_der(&der)).unwrap()
    }

    fn claims_for(user_id: &str) -> TokenClaims {
        TokenClaims::issue(
            Claims {
                sub: user_id.to_owned(),
                email: "ivy@example.com".into(),
                groups: vec!["admin".into()],
            },
            Duration::from_secs(600),
        )
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_401() {
        on_each_storage(|app| async move {
            let user_id = sign_up(&app, "ivy@example.com").await;
            let good = id_token(&app, "ivy@example.com").await;
            let parts: Vec<&str> = good.split('.').collect();

            // Our own key, but expired an hour ago.
            let mut expired = claims_for(&user_id);
            expired.exp = expired.iat - 3600;
            let expired = sign_with_service_key(&app, &expired).await;
            // Our own key, another audience.
            let mut foreign = claims_for(&user_id);
            foreign.aud = "someone-else".into();
            let foreign = sign_with_service_key(&app, &foreign).await;
            // Claims changed after signing (groups: admin).
            let forged_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_for(&user_id)).unwrap());
            let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
            // Unsigned.
            let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let unsigned = format!("{none_header}.{forged_claims}.");
            // HS256 with a guessable secret, naming our key id.
            let kid = payload_header(&good)["kid"].as_str().unwrap().to_owned();
            let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            hs.kid = Some(kid);
            let hmac = jsonwebtoken::encode(
                &hs,
                &claims_for(&user_id),
                &jsonwebtoken::EncodingKey::from_secret(b"secret"),
            )
            .unwrap();

            let cases = [
                ("expired", expired.as_str(), "expired"),
                ("wrong audience", foreign.as_str(), "audience"),
                ("tampered", tampered.as_str(), "signature"),
                ("alg none", unsigned.as_str(), "invalid token"),
                ("HS256", hmac.as_str(), "algorithm"),
                ("service credential", &app.service_token("orders"), "algorithm"),
                ("garbage", "not.a.token", "invalid token"),
            ];
            for (what, token, message) in cases {
                let (status, body) = app.get_with_token("/users/me", token).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                let text = body["message"].as_str().unwrap();
                assert!(text.contains(message), "{what}: {text}");
            }
            let (status, _) = app.get("/users/me").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let (status, _) = app.get_with_token("/users/me", &good).await;
            assert_eq!(status, StatusCode::OK);
        })
        .await;
    }

    fn payload_header(token: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
    }
}

/// Any request, with an optional bearer token and JSON body; the status.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> StatusCode {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap().status()
}

mod admin {
    use super::*;

    #[tokio::test]
    async fn only_admins_reach_the_admin_routes() {
        on_each_storage(|app| async move {
            let admin = admin_token(&app).await;
            let warehouse = staff_token(&app, &admin, "w@example.com", &["warehouse"]).await;
            let delivery = staff_token(&app, &admin, "d@example.com", &["delivery"]).await;
            sign_up(&app, "shopper@example.com").await;
            let shopper = id_token(&app, "shopper@example.com").await;
            let roles: [(&str, Option<&str>, &[StatusCode]); 5] = [
                ("anonymous", None, &[StatusCode::UNAUTHORIZED]),
                ("shopper", Some(&shopper), &[StatusCode::FORBIDDEN]),
                ("warehouse", Some(&warehouse), &[StatusCode::FORBIDDEN]),
                ("delivery", Some(&delivery), &[StatusCode::FORBIDDEN]),
                // Admin last: its DELETE really deletes.
                (
                    "admin",
                    Some(&admin),
                    &[StatusCode::OK, StatusCode::CREATED, StatusCode::NO_CONTENT],
                ),
            ];
            for (role, token, allowed) in roles {
                let target = sign_up(&app, &format!("target-{role}@example.com")).await;
                let user = format!("/users/admin/users/{target}");
                let routes = [
                    (
                        "POST",
                        "/users/admin/users".to_owned(),
                        Some(json!({"email": format!("new-{role}@example.com"), "password": PASSWORD})),
                    ),
                    ("GET", "/users/admin/users".to_owned(), None),
                    ("GET", user.clone(), None),
                    (
                        "PUT",
                        format!("{user}/password"),
                        Some(json!({"password": "N3w-password"})),
                    ),
                    ("PUT", format!("{user}/groups/delivery"), None),
                    ("DELETE", format!("{user}/groups/delivery"), None),
                    ("DELETE", user.clone(), None),
                ];
                for (method, path, body) in routes {
                    let status = call(&app, method, &path, token, body).await;
                    assert!(allowed.contains(&status), "{role} {method} {path} → {status}");
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn an_admin_manages_accounts_and_groups() {
        on_each_storage(|app| async move {
            let admin = admin_token(&app).await;
            let (status, created) = app
                .post_with_token(
                    "/users/admin/users",
                    &admin,
                    &json!({"email": "Jo@Example.com", "password": PASSWORD, "groups": ["delivery", "warehouse"]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            let id = created["userId"].as_str().unwrap().to_owned();
            let path = format!("/users/admin/users/{id}");

            let (status, user) = app.get_with_token(&path, &admin).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(user["email"], "jo@example.com");
            assert_eq!(user["groups"], json!(["delivery", "warehouse"]));
            assert!(user["createdDate"].as_str().unwrap().ends_with('Z'));

            // Groups: add is idempotent, remove takes effect.
            let add = format!("{path}/groups/admin");
            assert_eq!(call(&app, "PUT", &add, Some(&admin), None).await, StatusCode::NO_CONTENT);
            assert_eq!(call(&app, "PUT", &add, Some(&admin), None).await, StatusCode::NO_CONTENT);
            let remove = format!("{path}/groups/delivery");
            assert_eq!(call(&app, "DELETE", &remove, Some(&admin), None).await, StatusCode::NO_CONTENT);
            let (_, user) = app.get_with_token(&path, &admin).await;
            assert_eq!(user["groups"], json!(["admin", "warehouse"]));
            let token = id_token(&app, "jo@example.com").await;
            assert_eq!(payload(&token)["groups"], json!(["admin", "warehouse"]));

            // A new password replaces the old and signs the user out.
            let (_, tokens) = sign_in(&app, "jo@example.com", PASSWORD).await;
            let (status, _) = app
                .put_with_token(&format!("{path}/password"), &admin, &json!({"password": "N3w-password"}))
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            assert_eq!(sign_in(&app, "jo@example.com", PASSWORD).await.0, StatusCode::UNAUTHORIZED);
            assert_eq!(sign_in(&app, "jo@example.com", "N3w-password").await.0, StatusCode::OK);
            let (status, _) = app
                .post("/users/refresh", &json!({"refreshToken": tokens["refreshToken"]}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);

            // Deleted: gone from reads and sign-in.
            let (status, _) = app.delete_with_token(&path, &admin).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            assert_eq!(app.get_with_token(&path, &admin).await.0, StatusCode::NOT_FOUND);
            assert_eq!(app.delete_with_token(&path, &admin).await.0, StatusCode::NOT_FOUND);
            assert_eq!(sign_in(&app, "jo@example.com", "N3w-password").await.0, StatusCode::UNAUTHORIZED);
        })
        .await;
    }

    #[tokio::test]
    async fn the_user_list_pages_through_every_user_once() {
        on_each_storage(|app| async move {
            let admin = admin_token(&app).await;
            for i in 0..4 {
                sign_up(&app, &format!("page{i}@example.com")).await;
            }
            let mut seen = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let path = match &next {
                    Some(t) => format!("/users/admin/users?limit=2&nextToken={t}"),
                    None => "/users/admin/users?limit=2".to_owned(),
                };
                let (status, page) = app.get_with_token(&path, &admin).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                let users = page["users"].as_array().unwrap();
                assert!(users.len() <= 2);
                seen.extend(users.iter().map(|u| u["email"].as_str().unwrap().to_owned()));
                match page["nextToken"].as_str() {
                    Some(t) => next = Some(t.to_owned()),
                    None => break,
                }
            }
            seen.sort();
            let mut expected: Vec<String> = (0..4).map(|i| format!("page{i}@example.com")).collect();
            expected.push("root@example.com".into());
            expected.sort();
            assert_eq!(seen, expected);
        })
        .await;
    }

    #[tokio::test]
    async fn admin_requests_with_bad_input_are_refused() {
        on_each_storage(|app| async move {
            let admin = admin_token(&app).await;
            let id = sign_up(&app, "kim@example.com").await;
            let user = format!("/users/admin/users/{id}");
            let cases = [
                (
                    "POST",
                    "/users/admin/users".to_owned(),
                    Some(json!({"email": "kim@example.com", "password": PASSWORD})),
                    StatusCode::CONFLICT,
                ),
                (
                    "POST",
                    "/users/admin/users".to_owned(),
                    Some(json!({"email": "x@example.com", "password": PASSWORD, "groups": ["root"]})),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "POST",
                    "/users/admin/users".to_owned(),
                    Some(json!({"email": "x@example.com", "password": "weak"})),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "PUT",
                    format!("{user}/groups/root"),
                    None,
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "PUT",
                    format!("{user}/password"),
                    Some(json!({"password": "weak"})),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "PUT",
                    format!("{user}/password"),
                    Some(json!({})),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "GET",
                    "/users/admin/users?limit=0".to_owned(),
                    None,
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "GET",
                    "/users/admin/users?limit=x".to_owned(),
                    None,
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "GET",
                    "/users/admin/users/nobody".to_owned(),
                    None,
                    StatusCode::NOT_FOUND,
                ),
                (
                    "PUT",
                    "/users/admin/users/nobody/groups/admin".to_owned(),
                    None,
                    StatusCode::NOT_FOUND,
                ),
                (
                    "PUT",
                    "/users/admin/users/nobody/password".to_owned(),
                    Some(json!({"password": PASSWORD})),
                    StatusCode::NOT_FOUND,
                ),
            ];
            for (method, path, body, expected) in cases {
                let status = call(&app, method, &path, Some(&admin), body).await;
                assert_eq!(status, expected, "{method} {path}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_user_created_by_an_admin_emits_user_created() {
        on_each_storage(|app| async move {
            let admin = admin_token(&app).await;
            staff_token(&app, &admin, "lee@example.com", &["warehouse"]).await;
            let event = app
                .wait_for_event("UserCreated for lee", |e| {
                    e.detail_type == "UserCreated" && e.detail.value()["email"] == "lee@example.com"
                })
                .await;
            assert_eq!(event.source, "ecommerce.users");
        })
        .await;
    }
}

mod cli {
    use super::*;

    #[tokio::test]
    async fn a_cli_made_admin_promotes_a_shopper_to_warehouse() {
        on_each_storage(|app| async move {
            let admin_id = ecom::cli::users::add(
                &app.storage_target(),
                "boss@example.com",
                PASSWORD,
                &["admin".into()],
            )
            .await
            .unwrap();
            // The CLI's user is announced too (the running server relays it).
            let event = app
                .wait_for_event("UserCreated for boss", |e| {
                    e.detail_type == "UserCreated" && e.detail.value()["email"] == "boss@example.com"
                })
                .await;
            assert_eq!(event.detail.value()["userId"], admin_id.as_str());

            let admin = id_token(&app, "boss@example.com").await;
            let shopper_id = sign_up(&app, "mia@example.com").await;
            let (_, tokens) = sign_in(&app, "mia@example.com", PASSWORD).await;
            let status = call(
                &app,
                "PUT",
                &format!("/users/admin/users/{shopper_id}/groups/warehouse"),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            // The next ID token (here from a refresh) carries the group.
            let (status, refreshed) = app
                .post("/users/refresh", &json!({"refreshToken": tokens["refreshToken"]}))
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                payload(refreshed["idToken"].as_str().unwrap())["groups"],
                json!(["warehouse"])
            );
        })
        .await;
    }

    #[tokio::test]
    async fn the_cli_refuses_bad_input_and_taken_emails() {
        on_each_storage(|app| async move {
            let target = app.storage_target();
            let err = |r: anyhow::Result<String>| format!("{:#}", r.unwrap_err());
            assert!(err(ecom::cli::users::add(&target, "nope", PASSWORD, &[]).await).starts_with("--email"));
            assert!(
                err(ecom::cli::users::add(&target, "a@example.com", "weak", &[]).await)
                    .starts_with("--password")
            );
            assert!(
                err(ecom::cli::users::add(&target, "a@example.com", PASSWORD, &["root".into()]).await)
                    .starts_with("--group")
            );
            ecom::cli::users::add(&target, "a@example.com", PASSWORD, &[])
                .await
                .unwrap();
            assert!(
                err(ecom::cli::users::add(&target, "A@example.com", PASSWORD, &[]).await)
                    .contains("already exists")
            );
        })
        .await;
    }

    #[test]
    fn the_binary_adds_a_user_and_prints_its_id() {
        let dir = tempfile::tempdir().unwrap();
        // The data dir exists first (`ecom up` or `ecom migrate` makes it):
        // `users add` refuses to make one.
        let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_ecom"))
            .args(["migrate", "users", "--data-dir"])
            .arg(dir.path())
            .env_remove("ECOM_DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecom"))
            .args([
                "users",
                "add",
                "--email",
                "ops@example.com",
                "--password",
                PASSWORD,
            ])
            .args(["--group", "admin", "--group", "delivery"])
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("ECOM_DATABASE_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8(out.stdout).unwrap();
        assert!(uuid::Uuid::parse_str(id.trim()).is_ok(), "{id}");
    }
}

mod backend {
    use super::*;

    #[tokio::test]
    async fn services_read_a_user_by_id_and_end_users_cannot() {
        on_each_storage(|app| async move {
            let id = sign_up(&app, "ned@example.com").await;
            let path = format!("/users/backend/users/{id}");
            let (status, user) = app.get_with_token(&path, &app.service_token("orders")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(user["email"], "ned@example.com");
            let token = id_token(&app, "ned@example.com").await;
            assert_eq!(
                app.get_with_token(&path, &token).await.0,
                StatusCode::UNAUTHORIZED
            );
            let missing = "/users/backend/users/00000000-0000-0000-0000-000000000000";
            let (status, _) = app.get_with_token(missing, &app.service_token("orders")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        })
        .await;
    }
}

/// Issue 12: sign-in throttling that parallel guesses cannot outrun and a
/// stranger cannot turn against the owner; the client address behind
/// trusted proxies; sign-up limited per address.
mod throttling {
    use super::*;
    use common::{client_from, on_each_storage_configured};

    /// The PAIR limit of crates/users/src/limits.rs: wrong passwords one
    /// address may try on one account before it is throttled.
    const PAIR_BURST: usize = 5;

    async fn sign_in_from(
        app: &TestApp,
        client: &reqwest::Client,
        forwarded_for: Option<&str>,
        email: &str,
        password: &str,
    ) -> StatusCode {
        let mut req = client
            .post(app.url("/users/sign-in"))
            .json(&json!({"email": email, "password": password}));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        req.send().await.unwrap().status()
    }

    #[tokio::test]
    async fn parallel_wrong_passwords_are_checked_at_most_the_limit() {
        on_each_storage(|app| async move {
            sign_up(&app, "gina@example.com").await;
            let answers = futures::future::join_all((0..200).map(|i| {
                let app = &app;
                async move {
                    sign_in(app, "gina@example.com", &format!("Wrong-pass{i}"))
                        .await
                        .0
                }
            }))
            .await;
            let checked = answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
            let throttled = answers
                .iter()
                .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
                .count();
            assert_eq!(checked + throttled, 200, "{answers:?}");
            assert!(
                (1..=PAIR_BURST).contains(&checked),
                "{checked} guesses were checked, at most {PAIR_BURST} may be"
            );
            // Unknown emails are throttled alike (same answers, same counts).
            let answers = futures::future::join_all((0..50).map(|_| {
                let app = &app;
                async move { sign_in(app, "nobody@example.com", "Wrong-pass1").await.0 }
            }))
            .await;
            let checked = answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
            assert!((1..=PAIR_BURST).contains(&checked), "{checked}");
        })
        .await;
    }

    #[tokio::test]
    async fn the_owner_signs_in_from_another_address_while_an_attacker_is_throttled() {
        on_each_storage(|app| async move {
            sign_up(&app, "hugo@example.com").await;
            let attacker = client_from("127.0.0.2");
            let mut statuses = Vec::new();
            for i in 0..12 {
                statuses.push(
                    sign_in_from(&app, &attacker, None, "hugo@example.com", &format!("Guess-{i}x")).await,
                );
            }
            assert_eq!(
                statuses[..PAIR_BURST],
                [StatusCode::UNAUTHORIZED; PAIR_BURST],
                "{statuses:?}"
            );
            assert!(
                statuses[PAIR_BURST..]
                    .iter()
                    .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
                "{statuses:?}"
            );
            // Even the right password waits, from the attacker's address…
            assert_eq!(
                sign_in_from(&app, &attacker, None, "hugo@example.com", PASSWORD).await,
                StatusCode::TOO_MANY_REQUESTS
            );
            // …but not from the owner's.
            let (status, body) = sign_in(&app, "hugo@example.com", PASSWORD).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        })
        .await;
    }

    #[tokio::test]
    async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
        // Behind a trusted proxy (the test client on 127.0.0.1): each
        // forwarded address is a client of its own.
        on_each_storage_configured(
            |c| {
                c.server.trusted_proxies =
                    ecom_runtime::limits::TrustedProxies::parse(&["127.0.0.1/32".into()]).unwrap()
            },
            |app| async move {
                sign_up(&app, "iris@example.com").await;
                let via = |ip: &'static str| Some(ip);
                for i in 0..PAIR_BURST {
                    let status = sign_in_from(
                        &app,
                        &app.http,
                        via("198.51.100.1"),
                        "iris@example.com",
                        &format!("Bad-{i}xx"),
                    )
                    .await;
                    assert_eq!(status, StatusCode::UNAUTHORIZED);
                }
                let status = sign_in_from(
                    &app,
                    &app.http,
                    via("198.51.100.1"),
                    "iris@example.com",
                    "Bad-againx",
                )
                .await;
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                // A client that prepends a forged address is still itself.
                let status = sign_in_from(
                    &app,
                    &app.http,
                    via("203.0.113.7, 198.51.100.1"),
                    "iris@example.com",
                    PASSWORD,
                )
                .await;
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                // The owner behind the same proxy, from elsewhere.
                let status =
                    sign_in_from(&app, &app.http, via("198.51.100.2"), "iris@example.com", PASSWORD).await;
                assert_eq!(status, StatusCode::OK);
                // A peer that is not a trusted proxy cannot name itself.
                let other = client_from("127.0.0.2");
                for i in 0..PAIR_BURST {
                    let status = sign_in_from(
                        &app,
                        &other,
                        via("198.51.100.3"),
                        "iris@example.com",
                        &format!("Bad-{i}yy"),
                    )
                    .await;
                    assert_eq!(status, StatusCode::UNAUTHORIZED);
                }
                let status =
                    sign_in_from(&app, &other, via("198.51.100.4"), "iris@example.com", PASSWORD).await;
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            },
        )
        .await;
    }

    #[tokio::test]
    async fn sign_up_is_limited_per_client_address() {
        on_each_storage_configured(
            |c| c.users.sign_ups_per_hour = 3,
            |app| async move {
                sign_up(&app, "jo1@example.com").await;
                sign_up(&app, "jo2@example.com").await;
                // A taken email counts too: it is what a prober looks for.
                let (status, _) = app
                    .post(
                        "/users/sign-up",
                        &json!({"email": "jo1@example.com", "password": PASSWORD}),
                    )
                    .await;
                assert_eq!(status, StatusCode::CONFLICT);
                let resp = app
                    .http
                    .post(app.url("/users/sign-up"))
                    .json(&json!({"email": "jo3@example.com", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
                let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=1200).contains(&retry), "{retry}");
                let body: Value = resp.json().await.unwrap();
                assert!(body["message"].as_str().unwrap().contains("sign-ups"), "{body}");
                // Another address signs up.
                let status = client_from("127.0.0.2")
                    .post(app.url("/users/sign-up"))
                    .json(&json!({"email": "jo3@example.com", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, StatusCode::CREATED);
            },
        )
        .await;
    }
}

/// Issue 12: deleting a user or removing a group takes effect on the
/// tokens they hold, at once here and within a minute in other processes.
mod revocation {
    use super::*;
    use common::Storage;

    /// An admin made by the root admin; its id and ID token.
    async fn second_admin(app: &TestApp, root: &str, email: &str) -> (String, String) {
        let (status, body) = app
            .post_with_token(
                "/users/admin/users",
                root,
                &json!({"email": email, "password": PASSWORD, "groups": ["admin", "warehouse"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["userId"].as_str().unwrap().to_owned(),
            id_token(app, email).await,
        )
    }

    #[tokio::test]
    async fn a_deleted_admin_is_refused_at_once() {
        on_each_storage(|app| async move {
            let root = admin_token(&app).await;
            let (id, token) = second_admin(&app, &root, "kim@example.com").await;
            assert_eq!(
                app.get_with_token("/users/admin/users", &token).await.0,
                StatusCode::OK
            );
            let (status, _) = app
                .delete_with_token(&format!("/users/admin/users/{id}"), &root)
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            let (status, body) = app.get_with_token("/users/admin/users", &token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
            // Everywhere the token is checked.
            let (status, _) = app.get_with_token("/products/admin/products", &token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            // The root admin is not concerned.
            assert_eq!(
                app.get_with_token("/users/admin/users", &root).await.0,
                StatusCode::OK
            );
        })
        .await;
    }

    #[tokio::test]
    async fn an_admin_whose_group_is_removed_is_refused_at_once_and_a_new_sign_in_works() {
        on_each_storage(|app| async move {
            let root = admin_token(&app).await;
            let (id, token) = second_admin(&app, &root, "lou@example.com").await;
            // Adding a group revokes nothing.
            let path = format!("/users/admin/users/{id}/groups/delivery");
            assert_eq!(
                call(&app, "PUT", &path, Some(&root), None).await,
                StatusCode::NO_CONTENT
            );
            assert_eq!(
                app.get_with_token("/users/admin/users", &token).await.0,
                StatusCode::OK
            );
            // Removing one does.
            let path = format!("/users/admin/users/{id}/groups/admin");
            assert_eq!(
                call(&app, "DELETE", &path, Some(&root), None).await,
                StatusCode::NO_CONTENT
            );
            let (status, body) = app.get_with_token("/users/admin/users", &token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(
                app.get_with_token("/users/me", &token).await.0,
                StatusCode::UNAUTHORIZED
            );
            // Removing a group they no longer have changes nothing more.
            assert_eq!(
                call(&app, "DELETE", &path, Some(&root), None).await,
                StatusCode::NO_CONTENT
            );
            // Signing in again: the new groups, and a token that works.
            let fresh = id_token(&app, "lou@example.com").await;
            assert_eq!(payload(&fresh)["groups"], json!(["delivery", "warehouse"]));
            let (status, me) = app.get_with_token("/users/me", &fresh).await;
            assert_eq!(status, StatusCode::OK, "{me}");
            assert_eq!(
                app.get_with_token("/users/admin/users", &fresh).await.0,
                StatusCode::FORBIDDEN
            );
        })
        .await;
    }

    #[tokio::test]
    async fn revocations_are_listed_for_services_only() {
        on_each_storage(|app| async move {
            let root = admin_token(&app).await;
            let (id, _) = second_admin(&app, &root, "max@example.com").await;
            app.delete_with_token(&format!("/users/admin/users/{id}"), &root)
                .await;
            let path = "/users/backend/revocations?since=0";
            assert_eq!(app.get(path).await.0, StatusCode::UNAUTHORIZED);
            assert_eq!(app.get_with_token(path, &root).await.0, StatusCode::UNAUTHORIZED);
            let (status, body) = app.get_with_token(path, &app.service_token("orders")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let listed = body["revocations"].as_array().unwrap();
            assert!(
                listed
                    .iter()
                    .any(|r| r["userId"] == id.as_str() && r["version"] == 1),
                "{body}"
            );
            assert!(body["now"].as_i64().unwrap() > 0);
        })
        .await;
    }

    #[tokio::test]
    async fn a_revocation_reaches_another_process_within_a_minute() {
        let users = TestApp::spawn(Storage::Sqlite).await;
        // Another process: products only, checking tokens against `users`.
        // Processes of one deployment share the service key.
        let key = std::fs::read_to_string(users.data_dir.join("service.key")).unwrap();
        let products =
            TestApp::spawn_configured(Storage::Sqlite, &["products"], &[("users", &users.base)], |c| {
                c.service_key = Some(key.clone())
            })
            .await;
        let root = admin_token(&users).await;
        let (id, token) = second_admin(&users, &root, "ned@example.com").await;
        assert_eq!(
            products
                .get_with_token("/products/admin/products", &token)
                .await
                .0,
            StatusCode::OK
        );
        users
            .delete_with_token(&format!("/users/admin/users/{id}"), &root)
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _) = products.get_with_token("/products/admin/products", &token).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            assert!(
                tokio::time::Instant::now() < deadline,
                "still accepted after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(
            products.get_with_token("/products/admin/products", &root).await.0,
            StatusCode::OK
        );
        products.stop().await;
        users.stop().await;
    }
}
