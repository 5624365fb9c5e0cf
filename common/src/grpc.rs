//! Serving a gRPC server the way every chat service does: the service's own
//! routes plus `grpc.health.v1` and reflection (v1 and v1alpha, since many
//! clients, Python grpcio-reflection and older grpcurl among them, speak
//! only v1alpha), until shutdown.
//!
//! Health follows the service's dependencies: each [`Probe`] is checked
//! every [`PROBE_INTERVAL`], and while any fails every name reports
//! NOT_SERVING, so load balancers and the gateway's `/readyz` stop sending
//! calls that could only fail. Once shutdown starts, health stays
//! NOT_SERVING while in-flight calls finish.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Shutdown;

/// How often dependencies are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe that takes longer than this counts as failed: a dependency that
/// slow would time out the calls that need it anyway.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

type Check = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A named check of one dependency the service cannot answer without
/// (its database, its Redis).
#[derive(Clone)]
pub struct Probe {
    pub name: &'static str,
    check: Arc<Check>,
}

impl Probe {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Probe
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Probe {
            name,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

/// Serves `routes` with health and reflection on `listener` until
/// `shutdown` is cancelled, then finishes in-flight calls. Every name in
/// `service_names` (and the server as a whole, `""`) reports SERVING while
/// every probe passes, NOT_SERVING otherwise and from shutdown on.
pub async fn serve(
    listener: TcpListener,
    shutdown: Shutdown,
    mut routes: RoutesBuilder,
    service_names: &[&str],
    probes: Vec<Probe>,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    set_all(&reporter, service_names, ServingStatus::Serving).await;
    let reflection_v1 = reflection(service_names).build_v1()?;
    let reflection_v1alpha = reflection(service_names).build_v1alpha()?;
    routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
    let stopping = {
        let shutdown = shutdown.clone();
        async move {
            watch_dependencies(&reporter, &names, &probes, &shutdown).await;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            set_all(&reporter, &names, ServingStatus::NotServing).await;
        }
    };
    crate::metrics::install();
    tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::server())
        .layer(crate::trace_context::TraceContextLayer)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopping)
        .await?;
    Ok(())
}

/// Probes the dependencies until shutdown, keeping health in step with
/// them; logs each change once.
async fn watch_dependencies(
    reporter: &HealthReporter,
    names: &[String],
    probes: &[Probe],
    shutdown: &Shutdown,
) {
    if probes.is_empty() {
        shutdown.cancelled().await;
        return;
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let results = futures::future::join_all(probes.iter().map(Probe::run)).await;
        let failures: Vec<String> = probes
            .iter()
            .zip(results)
            .filter_map(|(probe, result)| result.err().map(|e| format!("{}: {e}", probe.name)))
            .collect();
        let now_serving = failures.is_empty();
        if now_serving != serving {
            if now_serving {
                tracing::info!("dependencies reachable again: health SERVING");
            } else {
                tracing::warn!(failures = ?failures, "a dependency is down: health NOT_SERVING");
            }
            let status = if now_serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_all(reporter, &names, status).await;
            serving = now_serving;
        }
    }
}

/// Reflection of every chat proto (so any message type can be described),
/// listing only the services this server serves: the descriptor set holds
/// every service of the system, and a client listing one server must not be
/// told of another's.
fn reflection<'a>(service_names: &[&str]) -> tonic_reflection::server::Builder<'a> {
    let served = service_names.iter().map(|s| (*s).to_owned()).chain(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        .map(String::from),
    );
    served.fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(chat_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ),
        |builder, name| builder.with_service_name(name),
    )
}

async fn set_all(reporter: &HealthReporter, names: &[&str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// A lazily connecting channel to `addr` (`http://host:port`): the first
/// call connects, and a service that starts later is still reached.
pub fn channel(addr: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(addr.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .connect_lazy())
}
