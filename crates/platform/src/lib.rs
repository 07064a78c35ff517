//! What every service plugs into: its [`Context`] (database, configuration,
//! credentials, clients for other services) and the [`ServiceDef`] that
//! tells the binary how to build it.

pub mod service;

pub use service::{Context, ServiceDef};
