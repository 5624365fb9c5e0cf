//! W3C trace context across process boundaries, so one client action is one
//! trace: `traceparent` goes into the metadata of every internal gRPC call
//! ([`crate::identity::ServiceAuth`] adds it, [`TraceContextLayer`] reads it
//! on every server), into outbox rows and onto bus messages.
//!
//! Only `traceparent` travels (no `tracestate`: nothing here sets vendor
//! state). Everything is a no-op until [`crate::telemetry`] has installed an
//! exporter, so a process without one pays nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::codegen::http;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (and gRPC metadata key, outbox column, AMQP header) holding
/// the context.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Called once spans are exported.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The `traceparent` of the current span, if spans are exported.
pub fn current() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` the child of the remote span `traceparent` names. A missing
/// or malformed value leaves `span` a root: a bad header from a peer costs
/// the link, never the call.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| enabled()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled: then there is nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to each of `others`: a span that does the work of many
/// calls at once (a batch) can be the child of only one of them; the
/// others' traces reach it by the link.
pub fn link<'a>(span: &tracing::Span, others: impl IntoIterator<Item = &'a tracing::Span>) {
    if !enabled() {
        return;
    }
    for other in others {
        let context = other.context().span().span_context().clone();
        if context.is_valid() {
            span.add_link(context);
        }
    }
}

/// Adds the current span's `traceparent` to outgoing gRPC metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(value) = current().and_then(|v| v.parse().ok()) {
        metadata.insert(TRACEPARENT, value);
    }
}

/// The `traceparent` of incoming HTTP or gRPC headers.
pub fn from_headers(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(TRACEPARENT)?.to_str().ok()
}

/// A tower layer for gRPC servers (applied by [`crate::grpc::serve`]): each
/// call runs in a `grpc.server` span, the child of the caller's span named
/// by its `traceparent`, so the handler's spans join the caller's trace.
/// Health checks and reflection get no span: probes every second would bury
/// the traces that matter.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> TraceContext<S> {
        TraceContext { inner }
    }
}

/// See [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct TraceContext<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for TraceContext<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if !enabled() || path.starts_with("/grpc.") {
            return Box::pin(self.inner.call(request));
        }
        let (service, method) = crate::metrics::split_path(path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
        );
        set_parent(&span, from_headers(request.headers()));
        // Entered for the call too: tonic may start the handler there.
        let call = span.in_scope(|| self.inner.call(request));
        Box::pin(call.instrument(span))
    }
}
