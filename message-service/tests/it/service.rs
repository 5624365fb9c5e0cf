//! The service as a gRPC server: credential checks, health, reflection.

use chat_common::Secret;
use chat_common::identity::ServiceAuth;
use chat_message_service::SERVICE_NAME;
use chat_proto::ErrorCode;
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::message_service_client::MessageServiceClient;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::{Db, TestServer, code, user};

#[tokio::test]
async fn calls_need_the_service_credential_and_a_user() -> anyhow::Result<()> {
    let server = TestServer::start(Db::Sqlite).await?;
    let alice = user("alice");
    let request = || pb::ListMyRoomsRequest {};

    let mut bare = MessageServiceClient::new(server.channel());
    assert_eq!(
        code(bare.list_my_rooms(alice.request(request())).await),
        Some(ErrorCode::Unauthorized)
    );
    let status = bare.list_my_rooms(alice.request(request())).await.err();
    assert_eq!(status.map(|s| s.code()), Some(tonic::Code::Unauthenticated));

    let wrong = ServiceAuth::new(Secret::new("wrong"))?;
    let mut wrong = MessageServiceClient::with_interceptor(server.channel(), wrong);
    assert_eq!(
        code(wrong.list_my_rooms(alice.request(request())).await),
        Some(ErrorCode::Unauthorized)
    );

    // The credential without an acting user.
    let mut client = server.client()?;
    assert_eq!(
        code(client.list_my_rooms(request()).await),
        Some(ErrorCode::Unauthorized)
    );
    assert!(client.list_my_rooms(alice.request(request())).await.is_ok());
    server.stop().await
}

#[tokio::test]
async fn health_and_reflection() -> anyhow::Result<()> {
    let server = TestServer::start(Db::Sqlite).await?;
    let mut health = HealthClient::new(server.channel());
    for service in ["", SERVICE_NAME] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(server.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let reply = replies
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no reflection reply"))?;
    let services: Vec<String> = match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => anyhow::bail!("unexpected reflection reply {other:?}"),
    };
    assert!(services.iter().any(|s| s == SERVICE_NAME), "{services:?}");
    server.stop().await
}
