//! The server as a whole: the service credential, health, reflection and
//! shutdown.

use chat_common::Secret;
use chat_common::identity::ServiceAuth;
use chat_presence_service::SERVICE_NAME;
use chat_proto::presence::v1 as pb;
use chat_proto::presence::v1::presence_service_client::PresenceServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::TestServer;

#[tokio::test]
async fn a_call_without_the_service_credential_is_unauthenticated() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let bare = PresenceServiceClient::new(server.channel.clone())
        .get_presence(pb::GetPresenceRequest {
            user_ids: vec!["alice".into()],
        })
        .await;
    let status = bare.err().ok_or_else(|| anyhow::anyhow!("accepted"))?;
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        chat_proto::ErrorCode::from_status(&status),
        chat_proto::ErrorCode::Unauthorized
    );

    let wrong = ServiceAuth::new(Secret::new("not-the-token"))?;
    let refused = PresenceServiceClient::with_interceptor(server.channel.clone(), wrong)
        .list_online(pb::ListOnlineRequest {})
        .await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );
    // Refused calls changed nothing.
    assert!(server.presence(&["alice"]).await?[0].last_seen.is_none());
    Ok(())
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut health = HealthClient::new(server.channel.clone());
    for service in ["", SERVICE_NAME] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(
            response.status,
            i32::from(ServingStatus::Serving),
            "{service:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn reflection_lists_the_service() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no reflection response"))?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        anyhow::bail!("unexpected reflection response: {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SERVICE_NAME), "{names:?}");
    Ok(())
}

#[tokio::test]
async fn serve_returns_after_shutdown() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let addr = server.addr;
    server.stop().await?;
    // The port is released: nothing answers there any more.
    let connected = tokio::net::TcpStream::connect(addr).await;
    assert!(connected.is_err(), "still accepting on {addr}");
    Ok(())
}
