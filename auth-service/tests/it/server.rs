//! What every gRPC server of the system offers: the service credential
//! check, health and reflection.

use chat_common::Secret;
use chat_common::identity::ServiceAuth;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::LoginRequest;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::{PASSWORD, TestServer, codes};

#[tokio::test]
async fn calls_without_the_service_credential_are_unauthenticated() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let login = || LoginRequest {
        username: "alice".into(),
        password: PASSWORD.into(),
    };
    let bare = AuthServiceClient::new(server.channel()?)
        .login(login())
        .await;
    assert_eq!(
        codes(bare)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    let wrong = AuthServiceClient::with_interceptor(
        server.channel()?,
        ServiceAuth::new(Secret::new("not the token"))?,
    )
    .login(login())
    .await;
    assert_eq!(
        codes(wrong)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.client.clone().login(login()).await?;
    server.stop().await
}

#[tokio::test]
async fn health_reports_serving() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut health = HealthClient::new(server.channel()?);
    for service in ["", chat_auth_service::SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    assert_eq!(chat_auth_service::SERVICE_NAME, "chat.auth.v1.AuthService");
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(Code::NotFound));
    server.stop().await
}

#[tokio::test]
async fn reflection_lists_the_service() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut reflection = ServerReflectionClient::new(server.channel()?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    let response = responses.message().await?.and_then(|r| r.message_response);
    let Some(MessageResponse::ListServicesResponse(list)) = response else {
        anyhow::bail!("unexpected reflection answer {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"chat.auth.v1.AuthService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await
}

#[tokio::test]
async fn a_server_on_a_bad_database_url_fails_to_start() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config =
        chat_auth_service::Config::new("mysql://nowhere/db", Secret::new("a"), Secret::new("b"));
    let result = chat_auth_service::serve(config, listener, chat_common::Shutdown::new()).await;
    assert!(result.is_err());
    Ok(())
}
