//! Log lines, and the request each one was written for.
//!
//! Every line written while answering a request names it:
//! `request{request_id=… method=POST route="/orders/backend/orders"}` in
//! readable lines, `"request_id"`, `"method"` and `"route"` keys in JSON
//! lines. With traces off that context is not a `tracing` span but a
//! task-local value ([`scope`]) that the line formatters below read only
//! when a line is written: a span had its fields formatted into a string,
//! and was entered and left at every poll, for every request, although
//! almost no request writes a line. With traces on, the request is a span
//! (it has to be exported), and the lines show it as before.

use crate::LogFormat;
use axum::http::{HeaderValue, Method};
use std::fmt;
use std::future::Future;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// What a line written for a request says of it.
pub(crate) struct RequestContext {
    /// Visible ASCII only (the server checks a caller's id before using it).
    pub(crate) id: HeaderValue,
    pub(crate) method: Method,
    /// The route as declared (`{param}`s and all), when one matched.
    pub(crate) route: Option<axum::extract::MatchedPath>,
}

impl RequestContext {
    fn id(&self) -> &str {
        self.id.to_str().unwrap_or("?")
    }

    fn route(&self) -> &str {
        self.route.as_ref().map_or("unmatched", |r| r.as_str())
    }
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `work` (a request's answer) with `context` as the request every
/// line it writes names. Calls it makes to services in this process run
/// on the same task, so their lines name the same request.
pub(crate) fn scope<F: Future>(
    context: RequestContext,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<RequestContext, F> {
    REQUEST.scope(context, work)
}

/// Runs `work` with `context` as the request its lines name (the answer's
/// own lines, written once the answer's task-local scope has ended).
pub(crate) fn within<R>(context: RequestContext, work: impl FnOnce() -> R) -> R {
    REQUEST.sync_scope(context, work)
}

/// The request being answered on this task, as the log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRequest {
    pub request_id: String,
    pub method: String,
    pub route: String,
}

/// The request the current task is answering (with traces off; with
/// traces on the request is a span instead), if any.
pub fn current_request() -> Option<CurrentRequest> {
    REQUEST
        .try_with(|r| CurrentRequest {
            request_id: r.id().to_owned(),
            method: r.method.as_str().to_owned(),
            route: r.route().to_owned(),
        })
        .ok()
}

/// The log layer: `format` lines, ANSI colours when `ansi`, written to
/// `writer`. What [`crate::telemetry::init`] installs, and what tests that
/// read log lines install.
pub fn layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Human => fmt
            .event_format(Human {
                rest: tracing_subscriber::fmt::format().without_time().with_level(false),
            })
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .event_format(JsonLine {
                line: tracing_subscriber::fmt::format().json().flatten_event(true),
            })
            .boxed(),
    }
}

/// Readable lines as `tracing-subscriber` writes them (time, level, spans,
/// target, fields), with the request after the level when there is one.
struct Human {
    /// Spans, target and fields.
    rest: Format<Full, ()>,
}

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        if ansi {
            writer.write_str("\x1b[2m")?;
        }
        if SystemTime.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(if ansi { "\x1b[0m " } else { " " })?;
        let level = *event.metadata().level();
        let (name, colour) = match level {
            Level::TRACE => ("TRACE", "35"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::INFO => (" INFO", "32"),
            Level::WARN => (" WARN", "33"),
            Level::ERROR => ("ERROR", "31"),
        };
        if ansi {
            write!(writer, "\x1b[{colour}m{name}\x1b[0m ")?;
        } else {
            write!(writer, "{name} ")?;
        }
        let request = REQUEST.try_with(|r| -> fmt::Result {
            let (bold, dim, reset) = if ansi {
                ("\x1b[1m", "\x1b[2m", "\x1b[0m")
            } else {
                ("", "", "")
            };
            write!(
                writer,
                "{bold}request{{{reset}request_id={} method={} route={:?}{bold}}}{reset}{dim}:{reset}",
                r.id(),
                r.method,
                r.route(),
            )?;
            // The spans inside it follow at once, as spans do; else a space.
            if ctx.event_scope().is_none() {
                writer.write_char(' ')?;
            }
            Ok(())
        });
        if let Ok(written) = request {
            written?;
        }
        self.rest.format_event(ctx, writer, event)
    }
}

/// JSON lines as `tracing-subscriber` writes them (fields flattened), with
/// `request_id`, `method` and `route` first when there is a request.
struct JsonLine {
    line: Format<Json, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Ok(keys) = REQUEST.try_with(|r| {
            let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".to_owned());
            format!(
                "\"request_id\":{},\"method\":{},\"route\":{}",
                text(r.id()),
                text(r.method.as_str()),
                text(r.route())
            )
        }) else {
            return self.line.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.line.format_event(ctx, Writer::new(&mut line), event)?;
        // The formatter writes one object: the keys go in after its `{`.
        match line.strip_prefix('{') {
            Some(rest) if !rest.starts_with('}') => write!(writer, "{{{keys},{rest}"),
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(format: LogFormat, work: impl FnOnce()) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(layer(format, false, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, work);
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn context() -> RequestContext {
        RequestContext {
            id: HeaderValue::from_static("id-\"1\""),
            method: Method::POST,
            route: None,
        }
    }

    fn within_request(work: impl FnOnce()) {
        REQUEST.sync_scope(context(), work);
    }

    #[test]
    fn a_readable_line_names_its_request_before_its_spans_and_target() {
        let log = lines_of(LogFormat::Human, || {
            tracing::info!(answer = 42, "outside");
            within_request(|| {
                tracing::warn!("no span");
                let _span = tracing::info_span!("step", n = 1).entered();
                tracing::info!("in a span");
            });
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        assert!(
            lines[0].ends_with(" INFO ecom_runtime::logs::tests: outside answer=42"),
            "{log}"
        );
        assert!(!lines[0].contains("request"), "{log}");
        assert!(
            lines[1].ends_with(
                r#" WARN request{request_id=id-"1" method=POST route="unmatched"}: ecom_runtime::logs::tests: no span"#
            ),
            "{log}"
        );
        assert!(
            lines[2].ends_with(
                r#" INFO request{request_id=id-"1" method=POST route="unmatched"}:step{n=1}: ecom_runtime::logs::tests: in a span"#
            ),
            "{log}"
        );
        // The time comes first, as RFC 3339 in UTC.
        assert!(lines[1].starts_with("20") && lines[1].contains('T'), "{log}");
    }

    #[test]
    fn a_json_line_carries_its_request_as_keys() {
        let log = lines_of(LogFormat::Json, || {
            tracing::info!(answer = 42, "outside");
            within_request(|| tracing::info!(answer = 7, "inside"));
        });
        let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert_eq!(lines[0]["message"], "outside");
        assert_eq!(lines[0]["answer"], 42);
        assert!(lines[0].get("request_id").is_none(), "{log}");
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["answer"], 7);
        assert_eq!(lines[1]["request_id"], "id-\"1\"");
        assert_eq!(lines[1]["method"], "POST");
        assert_eq!(lines[1]["route"], "unmatched");
        assert_eq!(lines[1]["level"], "INFO");
    }
}
