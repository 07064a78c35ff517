//! frontend-api: the GraphQL gateway, the one public entry point for
//! shoppers and staff, at `/graphql` (POST runs a query; GET shows the
//! GraphiQL IDE). Its schema is the original's
//! (`contracts/frontend-api.api.graphql`), committed as `schema.graphql`.
//!
//! The gateway owns no data: each field maps onto a route of the service
//! that owns the data, one module per domain ([`products`], [`orders`],
//! [`pricing`], [`warehouse`], [`delivery`], [`stock`]). Calls go in process
//! when the service shares the binary and over HTTP otherwise
//! ([`ecom_runtime::Clients`]). The subscription `orderUpdated` ([`live`])
//! follows the bus and is served over a WebSocket on `/graphql`.

pub mod auth;
pub mod delivery;
pub mod error;
pub mod http;
pub mod live;
pub mod orders;
pub mod page;
pub mod pricing;
pub mod products;
pub mod stock;
pub mod types;
pub mod warehouse;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};
use ecom_contracts::{Group, Service};
use ecom_platform::ServiceDef;
use ecom_runtime::auth::Verifier;
use ecom_runtime::{BackendClient, Clients, ServiceKey};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Service name. Unlike the other services, its routes are mounted at the
/// root of the listener (`/graphql`, as the public interface says).
pub const NAME: &str = Service::FrontendApi.name();

/// Deepest query accepted. Our own types nest at most five levels
/// (`getOrders.orders.products.package.width`); the margin is for the
/// IDE's introspection query, whose type references nest further.
pub const MAX_DEPTH: usize = 15;
/// Largest query accepted, counting one per field.
pub const MAX_COMPLEXITY: usize = 500;

/// How the binary builds this service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    migrations: &[],
    build: |ctx| {
        Box::pin(async move {
            let gateway = Gateway {
                clients: ctx.clients.clone(),
                key: ctx.key.clone(),
                verifier: ctx.verifier.clone(),
                catalogue: Default::default(),
            };
            let live = live::Live::new(ctx.bus.clone(), ctx.shutdown.clone());
            Ok(http::router(schema(Some((gateway, live.clone()))), live))
        })
    },
};

/// The root query type: every domain's queries.
#[derive(MergedObject, Default)]
pub struct Query(
    pricing::PricingQuery,
    delivery::DeliveryQuery,
    orders::OrdersQuery,
    products::ProductsQuery,
    warehouse::WarehouseQuery,
    stock::StockQuery,
);

/// The root mutation type: every domain's mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    delivery::DeliveryMutation,
    orders::OrdersMutation,
    orders::AfterOrderMutation,
    warehouse::WarehouseMutation,
    stock::StockMutation,
);

/// The root subscription type: live updates ([`live`]).
#[derive(MergedSubscription, Default)]
pub struct Subscription(live::OrdersSubscription);

/// The executable schema.
pub type GatewaySchema = Schema<Query, Mutation, Subscription>;

/// What resolvers need: clients for the services, the key that signs page
/// tokens, and the verifier of users' tokens.
#[derive(Clone)]
pub struct Gateway {
    /// Clients for the services behind the gateway.
    pub clients: Clients,
    /// Signs page tokens.
    pub key: ServiceKey,
    /// Checks users' tokens.
    pub verifier: Verifier,
    /// Recent catalogue answers.
    pub catalogue: std::sync::Arc<products::Catalogue>,
}

/// The schema, with the limits; `None` builds it without services, to
/// print its SDL.
pub fn schema(services: Option<(Gateway, std::sync::Arc<live::Live>)>) -> GatewaySchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(http::ErrorCodes::default());
    if let Some((gateway, live)) = services {
        builder = builder
            .data(stock::loader(gateway.clients.clone()))
            .data(gateway)
            .data(live);
    }
    builder.finish()
}

/// The schema as SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema(None).sdl()
}

fn gateway<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Gateway> {
    ctx.data::<Gateway>()
        .map_err(|_| error::internal("the schema was built without services"))
}

fn client(ctx: &Context<'_>, service: Service) -> async_graphql::Result<BackendClient> {
    gateway(ctx)?.clients.get(service).map_err(error::internal)
}

/// GETs one resource; null when the service answers 404.
async fn read_one<T: DeserializeOwned>(
    client: BackendClient,
    path: &str,
) -> async_graphql::Result<Option<T>> {
    match client.get::<T>(path).await {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => Ok(None),
        Err(e) => Err(error::from_client(e)),
    }
}

/// A staff operation on another service, with the staff member's token.
/// A refusal for the state of things (absent, wrong state, bad quantity)
/// is `success: false` with the reason in the response's `errors`; a
/// refusal of the caller is an error.
async fn staff_action<B: Serialize + Sync>(
    ctx: &Context<'_>,
    service: Service,
    groups: &[Group],
    path: &str,
    body: &B,
) -> async_graphql::Result<types::Response> {
    let user = auth::staff(ctx, groups).await?;
    let answer = client(ctx, service)?
        .as_user(user.token)
        .post::<_, serde_json::Value>(path, body)
        .await;
    outcome(ctx, answer)
}

/// The `Response` of an operation a service answered: `success: true`; for
/// a refusal for the state of things (absent, wrong state, bad input)
/// `success: false` with the reason in the response's `errors`; any other
/// failure (rights, a fault) an error.
fn outcome<T>(
    ctx: &Context<'_>,
    answer: Result<T, ecom_runtime::ClientError>,
) -> async_graphql::Result<types::Response> {
    match answer {
        Ok(_) => Ok(types::Response { success: true }),
        Err(e) if error::is_refusal(&e) => {
            let reason = error::from_client(e).into_server_error(ctx.item.pos);
            ctx.add_error(ctx.set_error_path(reason));
            Ok(types::Response { success: false })
        }
        Err(e) => Err(error::from_client(e)),
    }
}
