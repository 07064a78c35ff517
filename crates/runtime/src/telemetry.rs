//! Structured logs through `tracing`: readable lines by default, JSON lines
//! with `--log-format json`. `RUST_LOG` filters (default `info`).

use crate::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call does nothing (tests).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,async_nats=warn"));
    // Colour codes only for a terminal: a log redirected to a file stays plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
