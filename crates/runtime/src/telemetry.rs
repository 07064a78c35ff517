//! Structured logs and traces through `tracing`.
//!
//! Logs: readable lines by default, JSON lines with `--log-format json`;
//! `RUST_LOG` filters them (default `info`).
//!
//! Traces: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Then every span at `info`
//! and above also becomes an OpenTelemetry span, batched and sent over
//! OTLP/HTTP with protobuf bodies. The exporter and SDK read the standard
//! variables themselves: `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`,
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` (batch
//! size, delay, queue), `OTEL_TRACES_SAMPLER` and `…_ARG`.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` may only be `http/protobuf`: gRPC would
//! bring tonic into the build (docs/decisions.md, "Traces").
//!
//! The trace context travels as a W3C `traceparent`: [`traceparent`] reads
//! the current span's, [`follow`] makes a span the child of one received
//! (an HTTP header, an event envelope). With traces off both do nothing,
//! so the request path pays nothing for them.

use crate::LogFormat;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Whether spans are exported. Read on every request and event, so an
/// atomic rather than a look into the subscriber.
static TRACING: AtomicBool = AtomicBool::new(false);

/// The installed tracer provider, flushed on shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Where spans go when traces are on.
#[derive(Debug, Clone, Default)]
pub struct TraceExport {
    /// The full URL spans are POSTed to (`…/v1/traces`); `None` lets the
    /// exporter take it from the `OTEL_EXPORTER_OTLP_*` variables.
    pub endpoint: Option<String>,
}

impl TraceExport {
    /// What the environment asks for: `None` (traces off) unless
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// is set, or when `OTEL_SDK_DISABLED` is `true`.
    pub fn from_env() -> Option<TraceExport> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if disabled || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
            return None;
        }
        Some(TraceExport::default())
    }
}

/// The logging and tracing installed by [`init`]; [`Telemetry::shutdown`]
/// sends the spans still waiting in the batch.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends every span ended so far to the collector and waits for the
    /// answer (at most the exporter's timeout). Does nothing with traces off.
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            // The SDK blocks the caller until its batch thread is done.
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }

    /// Flushes and stops the exporter: the last spans of a process that
    /// is stopping are not lost. Does nothing with traces off.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = stopped {
                tracing::warn!(error = %e, "could not send the last spans");
            }
        }
    }
}

/// Installs the global subscriber, with traces exported when the
/// environment asks for it ([`TraceExport::from_env`]). A second call
/// installs nothing (tests) and returns a handle that flushes the first's.
pub fn init(format: LogFormat) -> Telemetry {
    init_with(format, TraceExport::from_env())
}

/// [`init`] with the export chosen by the caller (tests point it at an
/// in-process receiver without touching process-wide variables).
pub fn init_with(format: LogFormat, export: Option<TraceExport>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,async_nats=warn"));
    // Colour codes only for a terminal: a log redirected to a file stays plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = crate::logs::layer(format, ansi, std::io::stderr)
        .with_filter(filter)
        .boxed();
    let mut layers = vec![fmt];
    let mut problem = None;
    let provider = match export.map(provider) {
        Some(Ok(provider)) => {
            let tracer = provider.tracer("ecom");
            // Spans of our own code at `info`, whatever RUST_LOG says of
            // logs; never the exporter's own (it would trace itself).
            let spans = EnvFilter::new(
                "info,sqlx=warn,hyper=warn,h2=warn,reqwest=warn,async_nats=warn,\
                 opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off",
            );
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_tracked_inactivity(false)
                    .with_threads(false)
                    .with_filter(spans)
                    .boxed(),
            );
            Some(provider)
        }
        Some(Err(e)) => {
            problem = Some(e);
            None
        }
        None => None,
    };
    let installed = tracing_subscriber::registry().with(layers).try_init().is_ok();
    if let Some(e) = problem {
        tracing::warn!("traces are off: {e:#}");
    }
    if installed {
        if let Some(provider) = &provider {
            let _ = PROVIDER.set(provider.clone());
            TRACING.store(true, Ordering::Relaxed);
            tracing::info!("traces are exported over OTLP/HTTP");
        }
        return Telemetry { provider };
    }
    // Already installed: the handle flushes whatever the first call set up.
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
    Telemetry {
        provider: PROVIDER.get().cloned(),
    }
}

/// The tracer provider for `export`: a batch of spans sent by a thread of
/// its own through [`Sender`].
fn provider(export: TraceExport) -> anyhow::Result<SdkTracerProvider> {
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    let protocol = protocol.trim();
    anyhow::ensure!(
        protocol.is_empty() || protocol == "http/protobuf",
        "OTEL_EXPORTER_OTLP_PROTOCOL is {protocol:?}, and only \"http/protobuf\" is built in \
         (send to the collector's OTLP/HTTP port, 4318 by default)"
    );
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(Sender::new()?);
    if let Some(endpoint) = export.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder.build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    // The SDK names the service from OTEL_SERVICE_NAME (or the resource
    // attributes); without either it would say `unknown_service`.
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name("ecom");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Whether spans are exported (see the module documentation).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// The W3C `traceparent` of the current span, when traces are on and the
/// span belongs to a trace.
pub fn traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` (not yet entered) the child of the span `traceparent`
/// names. Does nothing with traces off or a `traceparent` that does not
/// parse: the span then starts a trace of its own.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| tracing_enabled()) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Sends the exporter's requests with reqwest 0.12 (the workspace's),
/// on a small runtime of its own: the SDK calls it from its batch thread,
/// outside any tokio runtime, and the process's runtime may be stopping
/// when the last batch leaves.
#[derive(Debug)]
struct Sender {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// The exporter's runtime, started once and never dropped (dropping a
/// runtime from async code panics).
static EXPORT_RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

impl Sender {
    fn new() -> anyhow::Result<Sender> {
        let runtime = match EXPORT_RUNTIME.get() {
            Some(rt) => rt,
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("otlp-export")
                    .enable_all()
                    .build()?;
                EXPORT_RUNTIME.get_or_init(|| rt)
            }
        };
        Ok(Sender {
            http: reqwest::Client::new(),
            runtime: runtime.handle().clone(),
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Sender {
    async fn send_bytes(
        &self,
        request: axum::http::Request<axum::body::Bytes>,
    ) -> Result<axum::http::Response<axum::body::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let response = http.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = sent.await??;
        let mut response = axum::http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
