//! The HTTP face of the gateway: `POST /graphql` runs a GraphQL request,
//! `GET /graphql` serves the GraphiQL IDE.
//!
//! A small handler rather than async-graphql-axum's extractor: that one
//! answers a malformed body with a plain-text 400, while here every failure
//! — a body too large or not JSON, a query that does not parse or fit the
//! schema — is a GraphQL error with a code, in one JSON shape.

use crate::auth::Caller;
use crate::error;
use crate::orders::IdempotencyKey;
use crate::GatewaySchema;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// `/graphql`, to be mounted at the root of the listener.
pub fn router(schema: GatewaySchema) -> Router {
    Router::new()
        .route("/graphql", get(ide).post(execute))
        .route("/graphql/assets/{name}", get(asset))
        .with_state(schema)
}

/// The IDE page: GraphiQL from the binary's own assets, nothing fetched
/// from elsewhere (`assets/graphiql/README.md` says where they come from).
const IDE_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ecom GraphQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql.min.css">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading the GraphQL IDE…</div>
<script src="/graphql/assets/react.production.min.js"></script>
<script src="/graphql/assets/react-dom.production.min.js"></script>
<script src="/graphql/assets/graphiql.min.js"></script>
<script src="/graphql/assets/ide.js"></script>
</body>
</html>
"#;

/// Starts GraphiQL on `/graphql`; a signed-in user can put
/// `{"Authorization": "Bearer …"}` in the IDE's headers tab.
const IDE_SCRIPT: &str = r##"const fetcher = GraphiQL.createFetcher({ url: "/graphql" });
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(React.createElement(GraphiQL, {
  fetcher,
  defaultEditorToolsVisibility: true,
  defaultQuery: `# Welcome to ecom's GraphQL API.
{
  getProducts {
    products { productId name price category }
    nextToken
  }
}
`,
}));
"##;

async fn ide() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, IDE_CSP),
        ],
        IDE_PAGE,
    )
        .into_response()
}

/// Same-origin only: the page may load nothing from elsewhere. GraphiQL's
/// editor needs inline styles and `eval`-free scripts only.
const IDE_CSP: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'";

/// The IDE's files, by name.
fn ide_asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    let js = "text/javascript; charset=utf-8";
    Some(match name {
        "graphiql.min.js" => (
            js,
            include_bytes!("../assets/graphiql/graphiql.min.js").as_slice(),
        ),
        "graphiql.min.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/graphiql/graphiql.min.css").as_slice(),
        ),
        "react.production.min.js" => (
            js,
            include_bytes!("../assets/graphiql/react.production.min.js").as_slice(),
        ),
        "react-dom.production.min.js" => (
            js,
            include_bytes!("../assets/graphiql/react-dom.production.min.js").as_slice(),
        ),
        "ide.js" => (js, IDE_SCRIPT.as_bytes()),
        _ => return None,
    })
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ide_asset(&name) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                // The files change only with the binary.
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            bytes,
        )
            .into_response(),
        None => refuse(StatusCode::NOT_FOUND, error::NOT_FOUND, "no such IDE file"),
    }
}

async fn execute(State(schema): State<GatewaySchema>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                error::BAD_USER_INPUT,
                &format!("the request body is larger than {MAX_BODY} bytes"),
            )
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                error::BAD_USER_INPUT,
                &format!(
                    "the body must be a JSON object {{\"query\", \"variables\"?, \"operationName\"?}}: {e}"
                ),
            )
        }
    };
    if request.query.trim().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            error::BAD_USER_INPUT,
            "query: the body must name the GraphQL document to run",
        );
    }
    let mut request = request.data(Caller::from_headers(&headers));
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        request = request.data(IdempotencyKey(key.to_owned()));
    }
    let mut response = schema.execute(request).await;
    // Errors async-graphql raises while running (a variable of the wrong
    // type, a missing argument) carry no code: they are the caller's.
    for e in &mut response.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", error::BAD_USER_INPUT);
        }
    }
    axum::Json(response).into_response()
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }],
    });
    (status, axum::Json(body)).into_response()
}

/// Gives the errors of documents that cannot run a code: parse failures
/// and validation failures (unknown fields, wrong types, too deep). Also
/// keeps the documents that parsed, by their text: a client sends the same
/// few operations with different variables, and parsing each anew was a
/// visible part of a createOrder's cost through the gateway. Validation
/// still runs for every request (it depends on the variables).
#[derive(Default, Clone)]
pub struct ErrorCodes {
    parsed: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

/// Parsed documents kept (all are dropped when full).
const PARSED_CAPACITY: usize = 256;
/// Longer query texts are parsed every time rather than kept.
const PARSED_MAX_TEXT: usize = 16 * 1024;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

impl ErrorCodes {
    fn parsed(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn coded(mut e: ServerError, code: &str) -> ServerError {
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    e
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.parsed().get(query) {
            return Ok(document.clone());
        }
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| coded(e, error::PARSE_FAILED))?;
        if query.len() <= PARSED_MAX_TEXT {
            let mut parsed = self.parsed();
            if parsed.len() >= PARSED_CAPACITY {
                parsed.clear();
            }
            parsed.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| coded(e, error::VALIDATION_FAILED))
                .collect()
        })
    }
}
