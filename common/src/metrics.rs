//! Prometheus metrics: the process's one recorder, its `/metrics` route, the
//! small HTTP server services expose it on (`METRICS_LISTEN`), the gRPC
//! latency layer, and the names of the series this crate records.
//!
//! A process has one registry however many parts it runs: the embedded
//! `chat` process serves the sum of its gateway and three services at the
//! gateway's `/metrics` (their series differ by name or by their `service`
//! label). Series follow Prometheus conventions: base units, `_total`
//! counters, `_seconds` histograms, and labels of bounded cardinality only,
//! never user or room ids.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use metrics::{Unit, describe_counter, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tonic::codegen::http;

use crate::Shutdown;

/// gRPC calls served, by `service`, `method` and `code`.
pub const GRPC_SERVER_DURATION: &str = "chat_grpc_server_duration_seconds";
/// gRPC calls made, by `service`, `method` and `code`.
pub const GRPC_CLIENT_DURATION: &str = "chat_grpc_client_duration_seconds";
/// Redis pub/sub subscriber connections re-established.
pub const REDIS_PUBSUB_RECONNECTS: &str = "chat_redis_pubsub_reconnects_total";
/// RabbitMQ connections re-established, by `role` (publisher, consumer).
pub const RABBITMQ_RECONNECTS: &str = "chat_rabbitmq_reconnects_total";

/// Buckets of every `_seconds` histogram: from half a millisecond (a
/// loopback call) to ten seconds (a call that is as good as failed).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histograms keep their raw samples until this runs (at a scrape, or
/// here): without it an unscraped process would grow without bound.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder on first call and returns its handle;
/// later calls (several parts, or several systems in one test process)
/// return the same handle. Call it before recording: until then the
/// `metrics` macros record nothing.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // The buckets are a non-empty constant, so this cannot fail.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only code outside this module could have set one; its series
            // would be missing from our `/metrics`.
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        let upkeep = handle.clone();
        // A thread, not a task: it must outlive whichever runtime (a test's)
        // happened to install the recorder.
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start metrics upkeep; histograms drain only at scrapes");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_histogram!(
        GRPC_SERVER_DURATION,
        Unit::Seconds,
        "gRPC calls served until response headers, by service, method and status code"
    );
    describe_histogram!(
        GRPC_CLIENT_DURATION,
        Unit::Seconds,
        "gRPC calls made until response headers, by service, method and status code"
    );
    describe_counter!(
        REDIS_PUBSUB_RECONNECTS,
        "Redis pub/sub subscriber connections re-established (live events in between were lost)"
    );
    describe_counter!(
        RABBITMQ_RECONNECTS,
        "RabbitMQ connections re-established, by role (publisher, consumer)"
    );
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// `GET /metrics`, for the gateway's router and the metrics listener.
pub async fn scrape() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    install();
    let app = Router::new().route("/metrics", get(scrape));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Binds `addr` (a service's `METRICS_LISTEN`) and serves `/metrics` there
/// in the background until `shutdown`; `None` serves nothing.
pub async fn spawn_listener(addr: Option<SocketAddr>, shutdown: &Shutdown) -> anyhow::Result<()> {
    install();
    let Some(addr) = addr else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (METRICS_LISTEN)"))?;
    // The bound address: with port 0 the caller learns the port here.
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = serve(listener, shutdown).await {
            tracing::error!(%error, "metrics listener failed");
        }
    });
    Ok(())
}

/// A tower layer recording the latency of gRPC calls by service, method
/// and status code: on servers ([`GrpcMetricsLayer::server`], applied by
/// [`crate::grpc::serve`]) and on client channels
/// ([`GrpcMetricsLayer::client`]).
///
/// Latency runs until the response headers, which for a unary call is the
/// whole call. The code is the `grpc-status` header of a trailers-only
/// response (every error tonic returns), else OK: a success carries its
/// status in trailers, read after the call is timed.
#[derive(Debug, Clone, Copy)]
pub struct GrpcMetricsLayer {
    histogram: &'static str,
    /// On a server the path comes from the client: names it does not serve
    /// are recorded as `unknown`, so scans cannot grow the label set.
    untrusted_paths: bool,
}

impl GrpcMetricsLayer {
    pub fn server() -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            histogram: GRPC_SERVER_DURATION,
            untrusted_paths: true,
        }
    }

    pub fn client() -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            histogram: GRPC_CLIENT_DURATION,
            untrusted_paths: false,
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            layer: *self,
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
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
        let (service, method) = split_path(request.uri().path());
        let (service, method) = (service.to_owned(), method.to_owned());
        let layer = self.layer;
        let call = self.inner.call(request);
        Box::pin(async move {
            let started = Instant::now();
            let result = call.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes())),
                // The call never got an answer (connection refused or reset);
                // tonic reports it to the caller as UNAVAILABLE too.
                Err(_) => tonic::Code::Unavailable,
            };
            let (service, method) = if layer.untrusted_paths && code == tonic::Code::Unimplemented {
                ("unknown".to_owned(), "unknown".to_owned())
            } else {
                (service, method)
            };
            metrics::histogram!(
                layer.histogram,
                "service" => service,
                "method" => method,
                "code" => chat_proto::grpc_code_name(code),
            )
            .record(started.elapsed());
            result
        })
    }
}

/// `/pkg.Service/Method` into its two names.
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("unknown", "unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/chat.message.v1.MessageService/SendMessage"),
            ("chat.message.v1.MessageService", "SendMessage")
        );
        assert_eq!(split_path("/nonsense"), ("unknown", "unknown"));
    }
}
