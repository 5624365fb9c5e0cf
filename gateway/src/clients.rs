//! gRPC clients of the three services. The gateway reaches them only through
//! these, never by calling their code. Every call carries the service
//! credential (interceptor) and, where a user acts, their identity, and is
//! timed by service, method and status code.

use chat_common::grpc::ClientTls;
use chat_common::identity::ServiceAuth;
use chat_common::metrics::{GrpcMetrics, GrpcMetricsLayer};
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use chat_proto::message::v1::message_service_client::MessageServiceClient;
use chat_proto::presence::v1::presence_service_client::PresenceServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tower::Layer;

pub type Authenticated = InterceptedService<GrpcMetrics<Channel>, ServiceAuth>;

#[derive(Clone)]
pub struct Services {
    pub auth: AuthServiceClient<Authenticated>,
    pub messages: MessageServiceClient<Authenticated>,
    pub presence: PresenceServiceClient<Authenticated>,
    /// Plain channels, for health checks.
    pub channels: [(&'static str, Channel); 3],
}

impl Services {
    pub fn connect(
        auth_addr: &str,
        message_addr: &str,
        presence_addr: &str,
        tls: Option<&ClientTls>,
        credential: ServiceAuth,
    ) -> anyhow::Result<Services> {
        let auth = chat_common::grpc::channel_with_tls(auth_addr, tls)?;
        let messages = chat_common::grpc::channel_with_tls(message_addr, tls)?;
        let presence = chat_common::grpc::channel_with_tls(presence_addr, tls)?;
        let timed = |channel: &Channel| GrpcMetricsLayer::client().layer(channel.clone());
        Ok(Services {
            auth: AuthServiceClient::with_interceptor(timed(&auth), credential.clone()),
            messages: MessageServiceClient::with_interceptor(timed(&messages), credential.clone()),
            presence: PresenceServiceClient::with_interceptor(timed(&presence), credential),
            channels: [
                ("auth-service", auth),
                ("message-service", messages),
                ("presence-service", presence),
            ],
        })
    }
}
