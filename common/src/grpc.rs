//! Serving a gRPC server the way every chat service does: the service's own
//! routes plus `grpc.health.v1` and reflection (v1 and v1alpha, since many
//! clients, Python grpcio-reflection and older grpcurl among them, speak
//! only v1alpha), until shutdown.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Shutdown;

/// Serves `routes` with health and reflection on `listener` until
/// `shutdown` is cancelled, then finishes in-flight calls. Every name in
/// `service_names` (and the server as a whole, `""`) reports SERVING.
pub async fn serve(
    listener: TcpListener,
    shutdown: Shutdown,
    mut routes: RoutesBuilder,
    service_names: &[&str],
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    set_all(&reporter, service_names, ServingStatus::Serving).await;
    let reflection_v1 = reflection(service_names).build_v1()?;
    let reflection_v1alpha = reflection(service_names).build_v1alpha()?;
    routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let stopping = {
        let shutdown = shutdown.clone();
        let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
        async move {
            shutdown.cancelled().await;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            set_all(&reporter, &names, ServingStatus::NotServing).await;
        }
    };
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopping)
        .await?;
    Ok(())
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
