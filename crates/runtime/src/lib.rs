//! What every ecom service runs on: configuration, HTTP conventions (errors,
//! JSON bodies), service credentials for `/backend/` routes, a typed client
//! for calling other services, metrics and telemetry.

pub mod auth;
pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub mod extract;
pub mod hex;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod server;
pub mod staff;
pub mod telemetry;

pub use client::{BackendClient, ClientError, Clients};
pub use config::{Config, ConfigArgs, ConfigFile, LogFormat};
pub use credentials::{ServiceCaller, ServiceKey};
pub use error::ApiError;
pub use extract::{Json, Path, Query};
