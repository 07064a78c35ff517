//! The ecom application: wires the services chosen on the command line into
//! one HTTP server. Kept as a library so tests build the real thing.

pub mod app;
pub mod bench;
pub mod cli;
pub mod health;

pub use app::{App, SERVICES};
