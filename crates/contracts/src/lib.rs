//! The contracts between the services, in one place that producers and
//! consumers both depend on, so that renaming an event, a field of its
//! payload or a group fails to compile on both sides rather than in
//! production.
//!
//! - every event on the bus: a type implementing [`Contract`], which names
//!   its source, its detail-type and its payload ([`Contract::Detail`]);
//!   the payloads serialise exactly as the services wrote them by hand
//!   before (the tests of this crate pin the JSON);
//! - the request and response bodies that one service sends to another's
//!   `/backend/` routes ([`backend`]);
//! - the staff [`Group`]s and the service names ([`Service`], [`sources`]);
//! - [`asyncapi()`]: an AsyncAPI 3.0 document of every event, with the JSON
//!   Schema of its payload, generated from these types.
//!
//! Payloads are plain data: the rules that move them (an order's status
//! life, the warehouse's packing) stay in the service that owns them.

mod catalogue;
mod check;
mod group;
mod service;

pub mod backend;
pub mod delivery;
pub mod orders;
pub mod payment;
pub mod products;
pub mod users;
pub mod warehouse;

pub use catalogue::{asyncapi, catalogue, channel_id, EventInfo};
pub use check::check_detail;
pub use group::Group;
pub use service::{sources, Service};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One kind of event on the bus: where it comes from, what it is called,
/// and what its `detail` holds.
///
/// Producers build events with `Event::of::<E>(…)` and consumers subscribe
/// with `Rule::typed::<E>(…)` (both in `ecom-platform`), so neither writes
/// the detail-type or the payload's field names by hand.
pub trait Contract: 'static {
    /// The `source` of the envelope (one of [`sources`]).
    const SOURCE: &'static str;
    /// The `detail-type` of the envelope.
    const DETAIL_TYPE: &'static str;
    /// The envelope's `detail`.
    type Detail: Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static;
}

/// The detail of a `<Resource>Modified` event: the resource's images before
/// and after, and the top-level fields that differ (sorted; a nested change
/// names its top field).
///
/// Producers do not build it: `ecom_platform::outbox::modified` derives it
/// from the two images. Consumers read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Modified<T> {
    /// The resource before the change.
    pub old: T,
    /// The resource after the change.
    pub new: T,
    /// The top-level fields of `new` that differ from `old`, sorted.
    pub changed: Vec<String>,
}

/// `{orderId}`: the detail of events that only name an order
/// (`PackagingFailed`, `OrderCancelled`) and the body of the backend calls
/// that only name one (the warehouse's release and cancellation, see
/// [`backend`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct OrderRef {
    /// The order.
    pub order_id: uuid::Uuid,
}

/// A payload that concerns one order, so that one handler can serve
/// several events (payment settles on four of them).
pub trait AboutOrder {
    /// The order concerned.
    fn order_id(&self) -> uuid::Uuid;
}

impl AboutOrder for OrderRef {
    fn order_id(&self) -> uuid::Uuid {
        self.order_id
    }
}

/// Declares the [`Contract`] of one event: `contract!(Type, Detail,
/// SOURCE, "DetailType")`; `Detail` may be `Self` for a payload struct.
macro_rules! contract {
    ($(#[$doc:meta])* $event:ident = $detail:ty, $source:expr, $detail_type:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $event {}
        contract!(@impl $event, $detail, $source, $detail_type);
    };
    (@impl $event:ty, $detail:ty, $source:expr, $detail_type:literal) => {
        impl $crate::Contract for $event {
            const SOURCE: &'static str = $source;
            const DETAIL_TYPE: &'static str = $detail_type;
            type Detail = $detail;
        }
    };
}
pub(crate) use contract;

#[cfg(test)]
mod tests;
