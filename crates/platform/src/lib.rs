//! What every service plugs into: its [`Context`] (database, configuration,
//! credentials, clients for other services, outbox and bus) and the
//! [`ServiceDef`] that tells the binary how to build it; and the event bus
//! itself.

pub mod admin;
pub mod bus;
pub mod event;
pub mod inbox;
pub mod listener;
pub mod outbox;
pub mod pattern;
pub mod relay;
pub mod service;

pub use bus::{Bus, Rule};
pub use event::{Detail, Encoded, Event};
pub use outbox::Outbox;
pub use service::{Context, ServiceDef};
