//! The OpenAPI 3.1 document of each REST service, served at
//! `/<service>/openapi.json`.
//!
//! The documents are generated from the code: handlers carry
//! `#[utoipa::path]` and request and response types derive `ToSchema`
//! (`docs/decisions.md`, "API reference"). Each service lists its handlers
//! in one `#[derive(utoipa::OpenApi)]`; [`document`] then adds what every
//! service shares, so no handler repeats it: the `/<service>` prefix the
//! binary mounts the routes under, the three kinds of credential, the error
//! body, and the statuses any route can answer (400 for bad input, 401 for
//! a missing or refused credential, 500).
//!
//! Because each service serves its own document, it is there in whatever
//! process runs the service (`ecom up` or `ecom serve <service>`).

use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Security scheme of routes that take an end user's ID token
/// (`Authorization: Bearer <idToken>` from `POST /users/sign-in`).
pub const ID_TOKEN: &str = "idToken";
/// Security scheme of `/backend/` routes: a service credential.
pub const SERVICE_CREDENTIAL: &str = "serviceCredential";
/// Security scheme of payment-3p's merchant operations: the shop's service
/// credential, as the processor's merchant key.
pub const MERCHANT_CREDENTIAL: &str = "merchantCredential";

/// The body of every error answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: errors are built by `ApiError`.
pub struct Error {
    /// What went wrong, for a person; a 400 names the field at fault.
    message: String,
    /// A stable code where a caller must tell one refusal from another
    /// (e.g. `IDEMPOTENCY_KEY_REUSED`).
    code: Option<String>,
}

/// The `{"ok": …}` answer of yes-or-no operations.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: handlers answer `json!({"ok": …})`.
pub struct Ok {
    /// Whether the operation was done (or the check passed).
    ok: bool,
}

/// The `{"success": true}` answer of staff transitions.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: handlers answer `json!({"success": true})`.
pub struct Success {
    /// Always true: a refused transition is an error status instead.
    success: bool,
}

/// The service's finished document: `doc` (its handlers) with paths under
/// `/<service>`, the shared security schemes, the `Error` schema and the
/// shared error answers added to each operation.
pub fn document(service: &str, doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": format!("ecom {service}"),
        "version": env!("CARGO_PKG_VERSION"),
        "description": format!(
            "The REST routes of the {service} service. Errors answer `{{\"message\": …}}` \
             (plus a stable `code` where useful). `/backend/` routes take a service \
             credential (`ecom token --service NAME`); an end user's ID token is refused."
        ),
    });
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let mut prefixed = Map::new();
    for (path, mut item) in paths {
        if let Some(operations) = item.as_object_mut() {
            for operation in operations.values_mut() {
                add_shared_answers(operation);
            }
        }
        prefixed.insert(format!("/{service}{path}"), item);
    }
    doc["paths"] = Value::Object(prefixed);
    if !doc["components"].is_object() {
        doc["components"] = json!({});
    }
    let components = &mut doc["components"];
    if !components["schemas"].is_object() {
        components["schemas"] = json!({});
    }
    let schemas = [
        ("Error", <Error as utoipa::PartialSchema>::schema()),
        ("Ok", <Ok as utoipa::PartialSchema>::schema()),
        ("Success", <Success as utoipa::PartialSchema>::schema()),
    ];
    for (name, schema) in schemas {
        components["schemas"][name] = serde_json::to_value(schema).unwrap_or_default();
    }
    components["securitySchemes"] = json!({
        ID_TOKEN: {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An end user's ID token from `POST /users/sign-in` (RS256, verified \
                against `/users/.well-known/jwks.json`). Group-restricted routes answer 403 \
                to a user outside the group."
        },
        SERVICE_CREDENTIAL: {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A short-lived service credential (HS256, audience `ecom-backend`) \
                signed with the platform's service key; `ecom token --service NAME` prints one. \
                An end user's ID token is refused with 401."
        },
        MERCHANT_CREDENTIAL: {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "The shop's service credential, acting as the merchant's key at the \
                card processor (`ecom token --service NAME`). Without it: 401."
        },
    });
    doc
}

/// Adds to `operation` the answers every route can give, unless the
/// handler documented its own: 400 when it takes input, 401 when it needs
/// a credential, and 500.
fn add_shared_answers(operation: &mut Value) {
    let takes_input = operation.get("requestBody").is_some()
        || operation["parameters"].as_array().is_some_and(|p| !p.is_empty());
    let secured = operation["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())));
    if !operation["responses"].is_object() {
        operation["responses"] = json!({});
    }
    let responses = &mut operation["responses"];
    let mut add = |status: &str, description: &str| {
        if responses.get(status).is_none() {
            responses[status] = json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            });
        }
    };
    if takes_input {
        add("400", "Bad input: the message names the field and says why.");
    }
    if secured {
        add("401", "No credential, or one that is not accepted here.");
    }
    add("500", "Internal error (logged; the cause is not shown).");
}

/// `GET /openapi.json`, answering `doc` (built once): merge it into the
/// service's router, which the binary mounts under `/<service>`. Public:
/// the document says what each route needs, not any secret.
pub fn router(service: &'static str, doc: fn() -> utoipa::openapi::OpenApi) -> Router {
    let body = Arc::new(document(service, doc()));
    Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            async move { axum::Json(Value::clone(&body)) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[utoipa::path(post, path = "/things", request_body = String,
        responses((status = 200, description = "done")),
        security(("serviceCredential" = [])))]
    #[allow(dead_code)]
    async fn thing() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(thing))]
    struct Doc;

    #[test]
    fn a_document_is_prefixed_secured_and_answers_errors() {
        let doc = document("svc", <Doc as utoipa::OpenApi>::openapi());
        assert_eq!(doc["openapi"], "3.1.0");
        let op = &doc["paths"]["/svc/things"]["post"];
        assert_eq!(op["security"][0][SERVICE_CREDENTIAL], json!([]));
        for status in ["200", "400", "401", "500"] {
            assert!(op["responses"][status].is_object(), "{status} missing: {op}");
        }
        assert_eq!(
            op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        assert!(doc["components"]["schemas"]["Error"]["properties"]["message"].is_object());
        assert!(doc["components"]["securitySchemes"][ID_TOKEN].is_object());
    }
}
