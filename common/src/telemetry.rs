//! Logging and tracing set-up: `RUST_LOG` filters the logs (default
//! `info`), `LOG_FORMAT=json` switches to one JSON object per line, and
//! `OTEL_EXPORTER_OTLP_ENDPOINT` turns on OpenTelemetry: spans exported
//! over OTLP/gRPC as service `OTEL_SERVICE_NAME` (default: the binary's
//! name), and every log line inside a span carrying its `trace_id` and
//! `span_id`. Without the endpoint there is no exporter and no OpenTelemetry
//! layer at all.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

/// Where spans go, from the environment.
#[derive(Debug, Clone, Default)]
pub struct TracingConfig {
    /// An OTLP/gRPC collector (`http://jaeger:4317`); `None` exports nothing.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl TracingConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (empty counts as unset, so a deployment
    /// can list the variable without a collector) and `OTEL_SERVICE_NAME`,
    /// else `default_service_name`.
    pub fn from_env(default_service_name: &str) -> TracingConfig {
        let set = |value: Result<String, _>| value.ok().filter(|v: &String| !v.trim().is_empty());
        TracingConfig {
            otlp_endpoint: set(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")),
            service_name: set(std::env::var("OTEL_SERVICE_NAME"))
                .unwrap_or_else(|| default_service_name.to_owned()),
        }
    }
}

/// Keeps the exporter of [`init`]; [`Telemetry::shutdown`] sends what is
/// still buffered.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// How long the last export at shutdown may take: a collector that is down
/// must not hold up the exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl Telemetry {
    /// Whether this call installed an exporter.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // Blocking: the batch processor's thread exports through a tonic
        // channel whose tasks need this runtime's other threads meanwhile.
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot flush the last spans"),
            Err(error) => tracing::warn!(%error, "span flush failed"),
        }
    }

    /// Exports every span ended so far (tests read them from a receiver).
    pub async fn flush(&self) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!("cannot flush spans");
        }
    }
}

/// Installs the global subscriber from the environment. Call it inside the
/// Tokio runtime: the exporter's gRPC channel lives there.
pub fn init(service_name: &str) -> Telemetry {
    init_with(&TracingConfig::from_env(service_name))
}

/// Installs the global subscriber. Safe to call more than once (tests start
/// several services in one process): later calls do nothing and return a
/// [`Telemetry`] without exporter.
pub fn init_with(config: &TracingConfig) -> Telemetry {
    let log_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let logs = if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .event_format(WithTraceIds(fmt::format().json().with_current_span(true)))
            .with_filter(log_filter())
            .boxed()
    } else {
        fmt::layer()
            .event_format(WithTraceIds(fmt::format().compact()))
            .with_filter(log_filter())
            .boxed()
    };
    let provider = match &config.otlp_endpoint {
        None => None,
        Some(endpoint) => match provider(endpoint, &config.service_name) {
            Ok(provider) => Some(provider),
            Err(error) => {
                // Tracing is an aid: a bad endpoint must not keep the service
                // down. Said on stderr, as the subscriber is not up yet.
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT {endpoint}: {error:#}; not exporting spans");
                None
            }
        },
    };
    // Exported: what RUST_LOG lets through plus our own spans from `debug`
    // (the store and Redis calls; `chat` matches every crate of the system
    // by prefix). A global filter, not one on the OpenTelemetry layer: a
    // per-layer filter there lost spans (seen with the RabbitMQ bus): a
    // verdict on a callsite that was probed but never created is left
    // behind for the next span.
    let global = match provider {
        Some(_) => match "chat=debug".parse() {
            Ok(ours) => log_filter().add_directive(ours),
            Err(_) => log_filter(),
        },
        None => log_filter(),
    };
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("chat")));
    let installed = tracing_subscriber::registry()
        .with(global)
        .with(logs)
        .with(otel)
        .try_init()
        .is_ok();
    if !installed {
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Telemetry { provider: None };
    }
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        crate::trace_context::enable();
        tracing::info!(
            endpoint = config.otlp_endpoint.as_deref().unwrap_or_default(),
            service = %config.service_name,
            "exporting spans over OTLP"
        );
    }
    tracing::debug!(service = %config.service_name, "telemetry initialised");
    Telemetry { provider }
}

fn provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// An event format that adds the current span's OpenTelemetry ids to each
/// line: as `trace_id`/`span_id` keys of the JSON object, or appended to a
/// text line. Lines outside any exported span are left as they are.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = crate::trace_context::enabled()
            .then(|| {
                let cx = tracing::Span::current().context();
                let span = cx.span();
                let span = span.span_context();
                span.is_valid()
                    .then(|| (span.trace_id().to_string(), span.span_id().to_string()))
            })
            .flatten();
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        // Formatted aside to add the ids: such text lines lose their colours
        // (a writer's ANSI switch is not public), which only matters on a
        // terminal that also exports spans.
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        match body.strip_suffix('}') {
            // A JSON object: two more keys before its closing brace. Hex ids
            // need no escaping.
            Some(object) if body.starts_with('{') => {
                write!(
                    writer,
                    "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                )?;
            }
            _ => write!(writer, "{body} trace_id={trace_id} span_id={span_id}")?,
        }
        writeln!(writer)
    }
}
