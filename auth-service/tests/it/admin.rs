//! `chat.auth.v1.AdminService`: who may call it, bootstrap admins, and what
//! each call does.

use chat_proto::ErrorCode;
use chat_proto::auth::v1::{
    FindUserRequest, ListUsersRequest, LoginRequest, RefreshRequest, SetDisabledRequest,
    SetRoleRequest, ValidateTokenRequest,
};
use tonic::Code;

use crate::helpers::{PASSWORD, SERVICE_TOKEN, TestServer, codes};
use chat_proto::AdminCredentials;

/// A server whose `root` account is an admin, with `root` and `alice`
/// registered; returns their access tokens.
async fn with_root_and_alice() -> anyhow::Result<(TestServer, String, String)> {
    let server = TestServer::start_with(|c| c.admin_usernames = vec!["root".into()]).await?;
    let root = server.register("root").await?;
    let alice = server.register("alice").await?;
    Ok((server, root.access_token, alice.access_token))
}

fn list_all() -> ListUsersRequest {
    ListUsersRequest {
        prefix: String::new(),
        after: String::new(),
        limit: 0,
    }
}

/// The code, protocol code and message of a failed call.
fn refusal<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
) -> anyhow::Result<(Code, ErrorCode, String)> {
    match result {
        Ok(value) => anyhow::bail!("expected a refusal, got {value:?}"),
        Err(s) => Ok((s.code(), ErrorCode::from_status(&s), s.message().to_owned())),
    }
}

#[tokio::test]
async fn only_an_admin_with_the_service_credential_is_served() -> anyhow::Result<()> {
    let (server, root, alice) = with_root_and_alice().await?;

    let no_service_token = server.admin_with(AdminCredentials::new(None, Some(root.as_str()))?)?;
    assert_eq!(
        refusal(no_service_token.clone().list_users(list_all()).await)?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            "missing or invalid service credential".into()
        )
    );
    let no_bearer = server.admin_with(AdminCredentials::new(Some(SERVICE_TOKEN), None)?)?;
    assert_eq!(
        refusal(no_bearer.clone().list_users(list_all()).await)?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            chat_common::admin::NO_BEARER.into()
        )
    );
    assert_eq!(
        refusal(server.admin("not.a.jwt")?.list_users(list_all()).await)?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            "invalid access token".into()
        )
    );
    assert_eq!(
        refusal(server.admin(&alice)?.list_users(list_all()).await)?,
        (
            Code::PermissionDenied,
            ErrorCode::Forbidden,
            "the admin role is required".into()
        )
    );

    let users = server
        .admin(&root)?
        .list_users(list_all())
        .await?
        .into_inner();
    let listed: Vec<(&str, &str, bool)> = users
        .users
        .iter()
        .map(|u| (u.username.as_str(), u.role.as_str(), u.disabled))
        .collect();
    assert_eq!(listed, [("alice", "user", false), ("root", "admin", false)]);
    assert_eq!(users.next_after, "");
    server.stop().await
}

#[tokio::test]
async fn bootstrap_admins_are_made_at_registration_and_at_start_up() -> anyhow::Result<()> {
    let first = TestServer::start().await?;
    let ops = first.register("ops").await?;
    assert_eq!(ops.user.as_ref().map(|u| u.role.as_str()), Some("user"));

    // A second server on the same database names `ops` (existing) and
    // `boss` (not yet registered).
    let database_url = first.database_url.clone();
    let second = TestServer::start_with(|c| {
        c.database_url = database_url;
        c.admin_usernames = vec!["ops".into(), " Boss ".into()];
    })
    .await?;
    let ops = second
        .client
        .clone()
        .login(LoginRequest {
            username: "ops".into(),
            password: PASSWORD.into(),
        })
        .await?
        .into_inner();
    assert_eq!(ops.user.as_ref().map(|u| u.role.as_str()), Some("admin"));
    let boss = second.register("boss").await?;
    assert_eq!(boss.user.as_ref().map(|u| u.role.as_str()), Some("admin"));
    let carol = second.register("carol").await?;
    assert_eq!(carol.user.as_ref().map(|u| u.role.as_str()), Some("user"));
    // The promoted account's fresh token opens the admin service.
    let found = second
        .admin(&ops.access_token)?
        .find_user(FindUserRequest {
            user: "boss".into(),
        })
        .await?
        .into_inner();
    assert_eq!(Some(found), boss.user);
    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn a_bad_admin_username_stops_the_start() -> anyhow::Result<()> {
    let result = TestServer::start_with(|c| c.admin_usernames = vec!["Not Valid".into()]).await;
    let error = result.err().map(|e| format!("{e:#}"));
    assert_eq!(
        error.as_deref(),
        Some(
            "ADMIN_USERNAMES: \"not valid\" is not a username (username: may only contain \
             lowercase letters a-z, digits 0-9, '_', '.' and '-')"
        )
    );
    Ok(())
}

#[tokio::test]
async fn users_are_found_by_id_or_username_and_listed_in_pages() -> anyhow::Result<()> {
    let (server, root, _alice) = with_root_and_alice().await?;
    for name in ["bob", "al.x", "zed"] {
        server.register(name).await?;
    }
    let mut admin = server.admin(&root)?;
    let by_name = admin
        .find_user(FindUserRequest {
            user: "ALICE".into(),
        })
        .await?
        .into_inner();
    assert_eq!(by_name.username, "alice");
    let by_id = admin
        .find_user(FindUserRequest {
            user: by_name.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(by_id, by_name);
    for unknown in ["nobody", "", &uuid::Uuid::now_v7().to_string()] {
        assert_eq!(
            refusal(
                admin
                    .find_user(FindUserRequest {
                        user: unknown.into()
                    })
                    .await
            )?,
            (Code::NotFound, ErrorCode::NotFound, "user not found".into()),
            "{unknown:?}"
        );
    }

    let page = |prefix: &str, after: &str, limit: u32| {
        let request = ListUsersRequest {
            prefix: prefix.into(),
            after: after.into(),
            limit,
        };
        let mut admin = admin.clone();
        async move {
            let page = admin.list_users(request).await?.into_inner();
            let names: Vec<String> = page.users.into_iter().map(|u| u.username).collect();
            anyhow::Ok((names, page.next_after))
        }
    };
    assert_eq!(
        page("", "", 2).await?,
        (vec!["al.x".into(), "alice".into()], "alice".into())
    );
    assert_eq!(
        page("", "alice", 2).await?,
        (vec!["bob".into(), "root".into()], "root".into())
    );
    assert_eq!(
        page("", "root", 2).await?,
        (vec!["zed".into()], String::new())
    );
    assert_eq!(
        page("AL", "", 0).await?,
        (vec!["al.x".into(), "alice".into()], String::new())
    );
    let too_many = admin
        .list_users(ListUsersRequest {
            limit: 1001,
            ..list_all()
        })
        .await;
    assert_eq!(
        refusal(too_many)?,
        (
            Code::InvalidArgument,
            ErrorCode::InvalidArgument,
            "limit: must be 1 to 1000".into()
        )
    );
    server.stop().await
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_refresh_or_use_a_token_until_enabled() -> anyhow::Result<()>
{
    let (server, root, _) = with_root_and_alice().await?;
    let mut client = server.client.clone();
    let bob = server.register("bob").await?;
    let mut admin = server.admin(&root)?;

    let disabled = admin
        .set_disabled(SetDisabledRequest {
            user: "bob".into(),
            disabled: true,
        })
        .await?
        .into_inner();
    assert!(disabled.disabled);
    assert_eq!(Some(&disabled.id), bob.user.as_ref().map(|u| &u.id));

    let login = || LoginRequest {
        username: "bob".into(),
        password: PASSWORD.into(),
    };
    let account_disabled = (
        Code::PermissionDenied,
        ErrorCode::Forbidden,
        "account disabled".to_owned(),
    );
    assert_eq!(refusal(client.login(login()).await)?, account_disabled);
    let refresh = client
        .refresh(RefreshRequest {
            refresh_token: bob.refresh_token.clone(),
        })
        .await;
    assert_eq!(refusal(refresh)?, account_disabled);
    let validate = client
        .validate_token(ValidateTokenRequest {
            access_token: bob.access_token.clone(),
        })
        .await;
    assert_eq!(refusal(validate)?, account_disabled);

    let enabled = admin
        .set_disabled(SetDisabledRequest {
            user: disabled.id.clone(),
            disabled: false,
        })
        .await?
        .into_inner();
    assert!(!enabled.disabled);
    client.login(login()).await?;
    // Disabling revoked the refresh token for good.
    let refresh = client
        .refresh(RefreshRequest {
            refresh_token: bob.refresh_token.clone(),
        })
        .await;
    assert_eq!(
        codes(refresh)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

#[tokio::test]
async fn roles_are_read_from_the_database_on_every_call() -> anyhow::Result<()> {
    let (server, root, alice) = with_root_and_alice().await?;
    let mut admin = server.admin(&root)?;
    let promoted = admin
        .set_role(SetRoleRequest {
            user: "alice".into(),
            role: "admin".into(),
        })
        .await?
        .into_inner();
    assert_eq!(promoted.role, "admin");
    // Alice's token was signed with role "user"; it opens the service now.
    let listed = server.admin(&alice)?.list_users(list_all()).await?;
    assert_eq!(listed.into_inner().users.len(), 2);

    let demoted = server
        .admin(&alice)?
        .set_role(SetRoleRequest {
            user: "root".into(),
            role: "user".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (demoted.username.as_str(), demoted.role.as_str()),
        ("root", "user")
    );
    assert_eq!(
        refusal(admin.list_users(list_all()).await)?,
        (
            Code::PermissionDenied,
            ErrorCode::Forbidden,
            "the admin role is required".into()
        )
    );
    server.stop().await
}

#[tokio::test]
async fn an_admin_cannot_lock_themselves_out_or_set_an_unknown_role() -> anyhow::Result<()> {
    let (server, root, _) = with_root_and_alice().await?;
    let mut admin = server.admin(&root)?;
    let lockout = (
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "an admin cannot disable or demote themselves".to_owned(),
    );
    let demote = admin
        .set_role(SetRoleRequest {
            user: "root".into(),
            role: "user".into(),
        })
        .await;
    assert_eq!(refusal(demote)?, lockout);
    let disable = admin
        .set_disabled(SetDisabledRequest {
            user: "root".into(),
            disabled: true,
        })
        .await;
    assert_eq!(refusal(disable)?, lockout);
    let unknown_role = admin
        .set_role(SetRoleRequest {
            user: "alice".into(),
            role: "superuser".into(),
        })
        .await;
    assert_eq!(
        refusal(unknown_role)?,
        (
            Code::InvalidArgument,
            ErrorCode::InvalidArgument,
            "role: must be \"user\" or \"admin\"".into()
        )
    );
    let unknown_user = admin
        .set_disabled(SetDisabledRequest {
            user: "ghost".into(),
            disabled: true,
        })
        .await;
    assert_eq!(
        refusal(unknown_user)?,
        (Code::NotFound, ErrorCode::NotFound, "user not found".into())
    );
    // Nothing changed.
    let me = admin
        .find_user(FindUserRequest {
            user: "root".into(),
        })
        .await?
        .into_inner();
    assert_eq!((me.role.as_str(), me.disabled), ("admin", false));
    server.stop().await
}

#[tokio::test]
async fn the_admin_service_reports_health_and_is_reflected() -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start().await?;
    assert_eq!(
        chat_auth_service::ADMIN_SERVICE_NAME,
        "chat.auth.v1.AdminService"
    );
    let status = HealthClient::new(server.channel()?)
        .check(HealthCheckRequest {
            service: chat_auth_service::ADMIN_SERVICE_NAME.into(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // v1alpha, the version Python grpcio-reflection and older grpcurl use:
    // exactly this server's services, none of the other services' protos.
    let ask = |request: MessageRequest| {
        let channel = server.channel();
        async move {
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            };
            let mut responses = ServerReflectionClient::new(channel?)
                .server_reflection_info(tokio_stream::once(request))
                .await?
                .into_inner();
            anyhow::Ok(responses.message().await?.and_then(|r| r.message_response))
        }
    };
    let listed = ask(MessageRequest::ListServices(String::new())).await?;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        anyhow::bail!("unexpected reflection answer {listed:?}");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "chat.auth.v1.AdminService",
            "chat.auth.v1.AuthService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    let response = ask(MessageRequest::FileContainingSymbol(
        "chat.auth.v1.AdminService".into(),
    ))
    .await?;
    let Some(MessageResponse::FileDescriptorResponse(files)) = response else {
        anyhow::bail!("unexpected reflection answer {response:?}");
    };
    use prost::Message as _;
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice()).map(|f| f.name().to_owned())
        })
        .collect::<Result<_, _>>()?;
    assert!(
        names.contains(&"chat/auth/v1/admin.proto".to_owned()),
        "{names:?}"
    );
    server.stop().await
}
