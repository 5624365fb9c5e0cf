//! The distributed topology with gRPC over mutual TLS: `scripts/cluster`
//! with `GRPC_TLS=1` makes a CA and certificates with openssl and starts
//! the real service and gateway binaries with the `GRPC_TLS_*` settings;
//! clients use the gateway as ever, while the services' ports speak TLS
//! only, to clients with a certificate from that CA.

use std::net::SocketAddr;

use anyhow::Context;
use chat_common::grpc::ClientTlsArgs;
use chat_proto::AdminCredentials;
use chat_proto::message::v1::ListRoomsRequest;
use chat_proto::message::v1::admin_service_client::AdminServiceClient as MessageAdmin;
use chat_proto::presence::v1::ListOnlineRequest;
use chat_proto::presence::v1::admin_service_client::AdminServiceClient as PresenceAdmin;
use serde_json::json;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cluster::{Cluster, Servers, skip_without};

/// The overall health of auth-service as a client with `tls` sees it.
async fn auth_health(addr: SocketAddr, tls: &ClientTlsArgs) -> anyhow::Result<Result<i32, String>> {
    let channel =
        chat_common::grpc::channel_with_tls(&format!("http://{addr}"), tls.load()?.as_ref())?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    Ok(match answer {
        Ok(response) => Ok(response.into_inner().status),
        Err(status) => {
            // tonic answers for a connection that failed below gRPC with
            // one of these, depending on when the failure arrives (the
            // server hanging up on a plaintext request mid-flight gives
            // Cancelled).
            anyhow::ensure!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
                ),
                "{status:?}"
            );
            let mut reason = status.message().to_owned();
            let mut source = std::error::Error::source(&status);
            while let Some(cause) = source {
                reason.push_str(": ");
                reason.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(reason)
        }
    })
}

#[tokio::test]
async fn the_services_and_gateways_talk_over_mutual_tls() -> anyhow::Result<()> {
    const TEST: &str = "the_services_and_gateways_talk_over_mutual_tls";
    if skip_without(TEST, &["openssl"])? {
        return Ok(());
    }
    let cluster =
        Cluster::up_with_env(Servers::default(), vec![("GRPC_TLS".into(), "1".into())]).await?;
    let result = scenario(&cluster).await;
    let logs = cluster.logs();
    cluster.down().await?;
    result.with_context(|| logs)
}

async fn scenario(cluster: &Cluster) -> anyhow::Result<()> {
    // Through a gateway, every service is reached: accounts (auth),
    // rooms and messages (message), sockets (presence).
    let api = &cluster.gateways[0];
    let alice = api.register("alice").await?;
    let bob = api.register("bob").await?;
    let room = api.room(&alice, "over-tls", "public").await?;
    api.join(&bob, &room).await?;
    let mut a = api.ws(&alice).await?;
    let mut b = cluster.gateways[1].ws(&bob).await?;
    a.request(json!({"type": "send", "room": room, "text": "sealed", "client_msg_id": "tls-1"}))
        .await?;
    let received = b.next_of("message").await?;
    assert_eq!(received["message"]["text"], "sealed");

    let tls = std::path::Path::new(cluster.setting("CLUSTER_DIR")?).join("tls");
    let file = |name: &str| Some(tls.join(name).display().to_string());
    let auth: SocketAddr = format!("127.0.0.1:{}", cluster.setting("AUTH_PORT")?).parse()?;

    let plaintext = auth_health(auth, &ClientTlsArgs::default()).await?;
    assert!(plaintext.is_err(), "{plaintext:?}");
    let without_certificate = ClientTlsArgs {
        grpc_tls_ca: file("ca.pem"),
        ..ClientTlsArgs::default()
    };
    // In TLS 1.3 the client's handshake completes before the server checks
    // the client's certificate, so the server's alert races the request:
    // the client sees the alert, or the connection closed under it (while
    // reading, or as a broken pipe while writing).
    let refused = auth_health(auth, &without_certificate).await?;
    assert!(
        refused.as_ref().is_err_and(|e| {
            e.contains("received fatal alert: CertificateRequired")
                || e.ends_with("connection closed")
                || e.ends_with("stream closed because of a broken pipe")
        }),
        "{refused:?}"
    );
    let with_certificate = ClientTlsArgs {
        grpc_tls_client_cert: file("client.pem"),
        grpc_tls_client_key: file("client-key.pem"),
        ..without_certificate
    };
    assert_eq!(
        auth_health(auth, &with_certificate).await?,
        Ok(ServingStatus::Serving as i32)
    );

    // Admin calls make message- and presence-service ask auth-service
    // (ValidateToken) over their own TLS client: alice is refused for her
    // role, which only auth-service's answer can tell (unreachable, it
    // would be UNAVAILABLE).
    let tls = with_certificate.load()?;
    let credentials = AdminCredentials::new(Some(&cluster.service_token()?), Some(&alice.token))?;
    let at = |port: &str| -> anyhow::Result<_> {
        let addr = format!("http://127.0.0.1:{}", cluster.setting(port)?);
        chat_common::grpc::channel_with_tls(&addr, tls.as_ref())
    };
    let rooms = MessageAdmin::with_interceptor(at("MESSAGE_PORT")?, credentials.clone())
        .list_rooms(ListRoomsRequest::default())
        .await;
    let online = PresenceAdmin::with_interceptor(at("PRESENCE_PORT")?, credentials)
        .list_online(ListOnlineRequest::default())
        .await;
    for refused in [rooms.map(|_| ()), online.map(|_| ())] {
        let status = refused
            .err()
            .context("an admin call by a member succeeded")?;
        assert_eq!(
            (status.code(), status.message()),
            (Code::PermissionDenied, "the admin role is required")
        );
    }
    Ok(())
}
