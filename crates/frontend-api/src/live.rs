//! Live order updates: the subscription `orderUpdated(orderId)`, served
//! over the `graphql-transport-ws` protocol on `/graphql` ([`crate::http`]).
//!
//! The gateway owns no orders, so it does not know when one changes; the
//! bus does. Every change of an order is written by orders with an
//! `OrderModified` event in the same transaction, and every event about an
//! order names it in `resources`. So a subscription waits for an event
//! naming its order (any event: a `PackageCreated` announces a change
//! orders has not applied yet, and the `OrderModified` that follows brings
//! it), then reads the order from orders' backend route and sends it when
//! what the client selected differs from what it was last sent. The first
//! answer is the order as it is when the subscription starts.
//!
//! Events come from [`ecom_platform::Bus::feed`]: in one process, every
//! event published there; on NATS, every event of every process, so the
//! gateway may run apart from orders. One [`Hub`] task per process reads
//! the feed while at least one subscription is open (reading it costs the
//! embedded bus a read of each event back from its archive) and wakes the
//! subscriptions of the orders an event names. A subscription also reads
//! its order every [`RECHECK`] in case an event was missed (the feed is for
//! watching: a reader that falls behind skips events, and then every
//! subscription is woken).
//!
//! A subscription checks its token when it starts and again before each
//! answer: an expired or revoked token ends it with `UNAUTHENTICATED`. It
//! ends when the client completes it or leaves, and when the server shuts
//! down. Caps: [`MAX_PER_CONNECTION`] subscriptions per connection and
//! [`MAX_SUBSCRIPTIONS`] per server; past either, `TOO_MANY_SUBSCRIPTIONS`.

use crate::auth::Caller;
use crate::error::{self, error};
use crate::orders::{OneOrder, Order};
use crate::page;
use async_graphql::{Context, Subscription, ID};
use ecom_contracts::{Group, Service};
use ecom_platform::{Bus, Event};
use ecom_runtime::auth::{Claims, Verifier};
use ecom_runtime::BackendClient;
use futures::Stream;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Most subscriptions open at once on one connection.
pub const MAX_PER_CONNECTION: usize = 16;
/// Most subscriptions open at once in one process.
pub const MAX_SUBSCRIPTIONS: usize = 4096;
/// Most subscription connections (WebSockets) open at once in one process.
/// A WebSocket leaves the server's connection cap once upgraded, so it has
/// its own.
pub const MAX_CONNECTIONS: usize = 1024;
/// How often a subscription reads its order even without an event, and
/// checks its token.
pub const RECHECK: Duration = Duration::from_secs(30);
/// After a failed read of the order, the wait before the next attempt.
const RETRY: Duration = Duration::from_secs(1);

/// What subscriptions share in one process: the hub, the caps, the
/// shutdown signal. In the schema's data and in the WebSocket route.
pub struct Live {
    hub: Arc<Hub>,
    subscriptions: Arc<Semaphore>,
    /// Slots for subscription connections (see [`MAX_CONNECTIONS`]).
    pub connections: Arc<Semaphore>,
    /// Cancelled when the server stops serving: every subscription ends.
    pub shutdown: CancellationToken,
}

impl Live {
    /// Subscriptions fed by `bus`, ending with `shutdown`.
    pub fn new(bus: Bus, shutdown: CancellationToken) -> Arc<Live> {
        Arc::new(Live {
            hub: Arc::new(Hub {
                bus,
                shutdown: shutdown.clone(),
                state: Mutex::default(),
                idle: Notify::new(),
            }),
            subscriptions: Arc::new(Semaphore::new(MAX_SUBSCRIPTIONS)),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            shutdown,
        })
    }
}

/// The subscriptions open on one connection (in the connection's data).
pub struct ConnectionSlots(Arc<Semaphore>);

impl Default for ConnectionSlots {
    fn default() -> Self {
        ConnectionSlots(Arc::new(Semaphore::new(MAX_PER_CONNECTION)))
    }
}

/// Wakes the subscriptions of the orders events name.
struct Hub {
    bus: Bus,
    shutdown: CancellationToken,
    state: Mutex<HubState>,
    /// Tells the task that the last subscription left.
    idle: Notify,
}

#[derive(Default)]
struct HubState {
    /// Order id → the subscriptions following it.
    watchers: HashMap<String, Vec<(u64, Arc<Notify>)>>,
    next: u64,
    /// Whether the task reading the feed runs.
    running: bool,
}

impl Hub {
    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows `order_id`: the returned `Notify` is woken for every event
    /// naming it from now on (or for every event when some were skipped).
    fn watch(self: &Arc<Self>, order_id: &str) -> (Watching, Arc<Notify>) {
        let notify = Arc::new(Notify::new());
        let mut state = self.state();
        let id = state.next;
        state.next += 1;
        state
            .watchers
            .entry(order_id.to_owned())
            .or_default()
            .push((id, notify.clone()));
        if !state.running {
            state.running = true;
            // Subscribed here, under the lock, so that no event published
            // after this call returns is missed.
            let feed = self.bus.feed();
            tokio::spawn(self.clone().run(feed));
        }
        (
            Watching {
                hub: self.clone(),
                order_id: order_id.to_owned(),
                id,
            },
            notify,
        )
    }

    async fn run(self: Arc<Self>, mut feed: broadcast::Receiver<Arc<Event>>) {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = self.idle.notified() => {}
                event = feed.recv() => match event {
                    Ok(event) => self.wake(&event.resources),
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "live updates fell behind the bus: every subscription reads its order again");
                        self.wake_all();
                    }
                    Err(RecvError::Closed) => break,
                },
            }
            let mut state = self.state();
            if state.watchers.is_empty() {
                // Stop reading the feed; the next subscription starts again.
                state.running = false;
                return;
            }
        }
        self.state().running = false;
    }

    fn wake(&self, resources: &[String]) {
        let state = self.state();
        for resource in resources {
            for (_, notify) in state.watchers.get(resource).into_iter().flatten() {
                notify.notify_one();
            }
        }
    }

    fn wake_all(&self) {
        for (_, notify) in self.state().watchers.values().flatten() {
            notify.notify_one();
        }
    }
}

/// A subscription's place in the hub; leaves it when dropped.
struct Watching {
    hub: Arc<Hub>,
    order_id: String,
    id: u64,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        if let Some(list) = state.watchers.get_mut(&self.order_id) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                state.watchers.remove(&self.order_id);
            }
        }
        if state.watchers.is_empty() {
            self.hub.idle.notify_one();
        }
    }
}

/// The fields a client selected, nested: answers are compared on these
/// only, so a change the client cannot see sends nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Shape(BTreeMap<String, Shape>);

impl Shape {
    fn of(field: async_graphql::SelectionField<'_>) -> Shape {
        Shape(
            field
                .selection_set()
                .filter(|f| !f.name().starts_with("__"))
                .map(|f| (f.name().to_owned(), Shape::of(f)))
                .fold(BTreeMap::new(), |mut fields, (name, shape)| {
                    // The same field selected twice (aliases, fragments):
                    // what either selects counts.
                    fields
                        .entry(name)
                        .or_insert_with(Shape::default)
                        .0
                        .extend(shape.0);
                    fields
                }),
        )
    }

    /// The part of `value` this shape selects.
    fn project(&self, value: &Value) -> Value {
        if self.0.is_empty() {
            return value.clone();
        }
        match value {
            Value::Object(map) => Value::Object(
                self.0
                    .iter()
                    .filter_map(|(name, shape)| Some((name.clone(), shape.project(map.get(name)?))))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.project(v)).collect()),
            other => other.clone(),
        }
    }
}

/// Live updates' part of `Subscription`.
#[derive(Default)]
pub struct OrdersSubscription;

#[Subscription]
impl OrdersSubscription {
    /// The order each time it changes in a way the selection shows (its
    /// status, history, tracking id, lines, refunds…), starting with the
    /// order as it is now. Over the `graphql-transport-ws` protocol on
    /// `/graphql`, the ID token in `connection_init`'s payload
    /// (`{"Authorization": "Bearer <idToken>"}`). A shopper follows their
    /// own orders (`FORBIDDEN` for any other id), staff (admin, warehouse,
    /// delivery) any order. Ends with `UNAUTHENTICATED` when the token
    /// expires or is revoked.
    async fn order_updated(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Order>>> {
        let segment = page::id_segment("orderId", &order_id)?;
        let gateway = crate::gateway(ctx)?;
        let live = ctx
            .data::<Arc<Live>>()
            .map_err(|_| error::internal("the schema was built without live updates"))?;
        let token = ctx
            .data_opt::<Caller>()
            .and_then(Caller::token)
            .ok_or_else(|| {
                error(
                    error::UNAUTHENTICATED,
                    "subscriptions need a signed-in user: send {\"Authorization\": \"Bearer <idToken>\"} as the connection_init payload",
                )
            })?
            .to_owned();
        // Verified for each subscription, not once per connection: a token
        // may expire while its connection stays open.
        let claims = gateway.verifier.verify(&token).await.map_err(error::from_api)?;
        let connection = ctx
            .data::<ConnectionSlots>()
            .map_err(|_| error::internal("subscription outside a connection"))?;
        let too_many = |what: String| error(error::TOO_MANY_SUBSCRIPTIONS, what);
        let per_connection = connection.0.clone().try_acquire_owned().map_err(|_| {
            too_many(format!(
                "at most {MAX_PER_CONNECTION} subscriptions per connection: complete one first"
            ))
        })?;
        let per_server = live.subscriptions.clone().try_acquire_owned().map_err(|_| {
            too_many(format!(
                "the server follows {MAX_SUBSCRIPTIONS} subscriptions already: try again later"
            ))
        })?;
        if live.shutdown.is_cancelled() {
            return Err(error(error::SERVICE_UNAVAILABLE, "the server is shutting down"));
        }
        let orders = gateway.clients.get(Service::Orders).map_err(error::internal)?;
        let path = format!("/backend/{segment}");
        // Follow first, then read: a change after the read wakes us.
        let (watching, notify) = live.hub.watch(order_id.as_str());
        let first = read(&orders, &path).await.map_err(error::from_client)?;
        let staff = claims.belongs_to(Group::STAFF);
        let first = match first {
            Some((order, _)) if !staff && order.user_id != claims.sub => None,
            other => other,
        };
        let Some(first) = first else {
            return Err(if staff {
                error(error::NOT_FOUND, format!("no order {}", order_id.as_str()))
            } else {
                // Absent or someone else's: not told apart.
                error(error::FORBIDDEN, "a shopper may follow only their own orders")
            });
        };
        let follow = Follow {
            orders,
            path,
            verifier: gateway.verifier.clone(),
            token,
            claims,
            shape: Shape::of(ctx.field()),
            last: None,
            pending: Some(first),
            notify,
            shutdown: live.shutdown.clone(),
            done: false,
            _watching: watching,
            _slots: (per_connection, per_server),
        };
        Ok(futures::stream::unfold(follow, |mut follow| async move {
            let item = follow.next().await?;
            Some((item, follow))
        }))
    }
}

/// The order at `path` and its JSON; `None` when orders does not know it.
async fn read(
    orders: &BackendClient,
    path: &str,
) -> Result<Option<(Order, Value)>, ecom_runtime::ClientError> {
    match orders.get::<Value>(path).await {
        Ok(mut answer) => {
            let json = answer["order"].take();
            match serde_json::from_value::<OneOrder>(serde_json::json!({ "order": json.clone() })) {
                Ok(OneOrder { order }) => Ok(Some((order, json))),
                Err(e) => {
                    tracing::error!(error = %e, "orders answered an order the gateway cannot read");
                    Ok(None)
                }
            }
        }
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One subscription's state.
struct Follow {
    orders: BackendClient,
    path: String,
    verifier: Verifier,
    token: String,
    claims: Claims,
    shape: Shape,
    /// What the client was last sent (its selection of the order).
    last: Option<Value>,
    /// An order read and not yet compared.
    pending: Option<(Order, Value)>,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
    done: bool,
    _watching: Watching,
    _slots: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Follow {
    /// The next answer: the order when what the client sees of it changed,
    /// an error that ends the subscription, or `None` when it ends.
    async fn next(&mut self) -> Option<async_graphql::Result<Order>> {
        loop {
            if self.done {
                return None;
            }
            if let Some((order, json)) = self.pending.take() {
                let seen = self.shape.project(&json);
                if self.last.as_ref() != Some(&seen) {
                    self.last = Some(seen);
                    return Some(Ok(order));
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = self.notify.notified() => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
            match self.verifier.verify(&self.token).await {
                Ok(claims) if claims.sub == self.claims.sub => {}
                // The keys cannot be fetched right now: not the client's fault.
                Err(e) if e.status().is_server_error() => {}
                _ => {
                    self.done = true;
                    return Some(Err(error(
                        error::UNAUTHENTICATED,
                        "the token expired or was revoked: subscribe again with a fresh token",
                    )));
                }
            }
            match read(&self.orders, &self.path).await {
                Ok(Some(found)) => self.pending = Some(found),
                // Orders no longer knows it (never happens today).
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, path = self.path, "a subscription could not read its order; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(RETRY) => self.notify.notify_one(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn shape(fields: &[(&str, Shape)]) -> Shape {
        Shape(fields.iter().map(|(n, s)| ((*n).to_owned(), s.clone())).collect())
    }

    #[test]
    fn answers_are_compared_on_the_selected_fields_only() {
        let order = json!({"orderId": "o", "status": "PACKAGED", "trackingId": "T",
                           "products": [{"name": "a", "price": 1}], "history": []});
        let status = shape(&[("status", Shape::default())]);
        assert_eq!(status.project(&order), json!({"status": "PACKAGED"}));
        let mut tracked = order.clone();
        tracked["trackingId"] = json!("U");
        assert_eq!(status.project(&order), status.project(&tracked));
        let lines = shape(&[("products", shape(&[("name", Shape::default())]))]);
        assert_eq!(lines.project(&order), json!({"products": [{"name": "a"}]}));
        // A field the answer lacks (computed elsewhere) is left out.
        let missing = shape(&[("available", Shape::default())]);
        assert_eq!(missing.project(&json!({"x": 1})), json!({}));
    }
}
