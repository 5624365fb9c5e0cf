//! One function per command: the calls it makes and what it prints.

use std::collections::HashMap;

use chat_proto::auth::v1 as auth;
use chat_proto::message::v1 as msg;
use chat_proto::presence::v1 as presence;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::{self, Command};
use crate::client::Clients;
use crate::error::{Failure, Service};
use crate::output::{self, Table, print};

pub async fn run(clients: &Clients, command: Command) -> Result<(), Failure> {
    match command {
        Command::Users(users) => self::users(clients, users).await,
        Command::Rooms(rooms) => self::rooms(clients, rooms).await,
        Command::Messages(messages) => self::messages(clients, messages).await,
        Command::Presence(cli::Presence::Who) => who(clients).await,
        Command::Notifications(cli::Notifications::List { target, all }) => {
            notifications(clients, &target, all).await
        }
        Command::Health => health(clients).await,
    }
}

/// A user by id or username.
async fn find_user(clients: &Clients, user: &str) -> Result<auth::User, Failure> {
    let request = auth::FindUserRequest {
        user: user.to_owned(),
    };
    Ok(clients
        .auth_admin()
        .await?
        .find_user(clients.request(request))
        .await
        .map_err(clients.failed(Service::Auth))?
        .into_inner())
}

fn print_user(clients: &Clients, user: &auth::User) {
    print(
        clients.json(),
        output::user_json(user),
        output::user_fields(user),
    );
}

async fn users(clients: &Clients, command: cli::Users) -> Result<(), Failure> {
    let failed = clients.failed(Service::Auth);
    match command {
        cli::Users::List {
            prefix,
            after,
            limit,
        } => {
            let request = auth::ListUsersRequest {
                prefix,
                after,
                limit,
            };
            let page = clients
                .auth_admin()
                .await?
                .list_users(clients.request(request))
                .await
                .map_err(failed)?
                .into_inner();
            let mut table = Table::new(output::USER_COLUMNS);
            for user in &page.users {
                table.row(output::user_row(user));
            }
            let next = (!page.next_after.is_empty()).then(|| page.next_after.clone());
            let users: Vec<Value> = page.users.iter().map(output::user_json).collect();
            print(
                clients.json(),
                json!({"users": users, "next_after": next}),
                table,
            );
            if let (Some(next), false) = (next, clients.json()) {
                eprintln!("more users follow: --after {next}");
            }
        }
        cli::Users::Show { target } => print_user(clients, &find_user(clients, &target).await?),
        cli::Users::Disable { target } => set_disabled(clients, target, true).await?,
        cli::Users::Enable { target } => set_disabled(clients, target, false).await?,
        cli::Users::SetRole { target, role } => {
            let request = auth::SetRoleRequest {
                user: target,
                role: role.as_str().to_owned(),
            };
            let user = clients
                .auth_admin()
                .await?
                .set_role(clients.request(request))
                .await
                .map_err(failed)?
                .into_inner();
            print_user(clients, &user);
        }
    }
    Ok(())
}

async fn set_disabled(clients: &Clients, user: String, disabled: bool) -> Result<(), Failure> {
    let request = auth::SetDisabledRequest { user, disabled };
    let user = clients
        .auth_admin()
        .await?
        .set_disabled(clients.request(request))
        .await
        .map_err(clients.failed(Service::Auth))?
        .into_inner();
    print_user(clients, &user);
    Ok(())
}

fn print_room(clients: &Clients, room: &msg::RoomSummary) {
    print(
        clients.json(),
        output::room_json(room),
        output::room_fields(room),
    );
}

async fn rooms(clients: &Clients, command: cli::Rooms) -> Result<(), Failure> {
    let failed = clients.failed(Service::Message);
    match command {
        cli::Rooms::List { after, limit } => {
            let request = msg::ListRoomsRequest { after, limit };
            let page = clients
                .message_admin()
                .await?
                .list_rooms(clients.request(request))
                .await
                .map_err(failed)?
                .into_inner();
            let mut table = Table::new(output::ROOM_COLUMNS);
            for room in &page.rooms {
                table.row(output::room_row(room));
            }
            let next = (!page.next_after.is_empty()).then(|| page.next_after.clone());
            let rooms: Vec<Value> = page.rooms.iter().map(output::room_json).collect();
            print(
                clients.json(),
                json!({"rooms": rooms, "next_after": next}),
                table,
            );
            if let (Some(next), false) = (next, clients.json()) {
                eprintln!("more rooms follow: --after {next}");
            }
        }
        cli::Rooms::Show { room } => {
            let room = clients
                .message_admin()
                .await?
                .get_room(clients.request(msg::GetRoomRequest { room }))
                .await
                .map_err(failed)?
                .into_inner();
            print_room(clients, &room);
        }
        cli::Rooms::Create {
            name,
            visibility,
            owner,
        } => {
            let owner_id = match owner {
                Some(owner) => Some(find_user(clients, &owner).await?.id),
                None => None,
            };
            let visibility = match visibility {
                cli::Visibility::Public => msg::Visibility::Public,
                cli::Visibility::Private => msg::Visibility::Private,
            };
            let request = msg::AdminCreateRoomRequest {
                name,
                visibility: visibility.into(),
                owner_id,
            };
            let room = clients
                .message_admin()
                .await?
                .create_room(clients.request(request))
                .await
                .map_err(failed)?
                .into_inner();
            print_room(clients, &room);
        }
        cli::Rooms::Members { room } => {
            let members = clients
                .message_admin()
                .await?
                .list_members(clients.request(msg::ListMembersRequest { room }))
                .await
                .map_err(failed)?
                .into_inner()
                .members;
            let mut table = Table::new(output::MEMBER_COLUMNS);
            for member in &members {
                table.row(output::member_row(member));
            }
            let members: Vec<Value> = members.iter().map(output::member_json).collect();
            print(clients.json(), json!({"members": members}), table);
        }
        cli::Rooms::AddMember { room, target } => {
            let user = find_user(clients, &target).await?;
            let request = msg::AdminAddMemberRequest {
                room,
                user_id: user.id,
            };
            let member = clients
                .message_admin()
                .await?
                .add_member(clients.request(request))
                .await
                .map_err(failed)?
                .into_inner()
                .member
                .ok_or_else(|| anyhow::anyhow!("message-service answered without the member"))?;
            let mut table = Table::new(output::MEMBER_COLUMNS);
            table.row(output::member_row(&member));
            print(clients.json(), output::member_json(&member), table);
        }
        cli::Rooms::Moderate {
            room,
            action,
            target,
            duration_s,
        } => {
            let user = find_user(clients, &target).await?;
            let request = msg::ModerateRequest {
                room: room.clone(),
                action: moderation_action(action).into(),
                user_id: user.id.clone(),
                duration_s,
            };
            clients
                .message_admin()
                .await?
                .moderate(clients.request(request))
                .await
                .map_err(failed)?;
            let done = json!({
                "room": room,
                "action": action.as_str(),
                "user_id": user.id,
                "username": user.username,
                "duration_s": duration_s,
            });
            let table = Table::fields(vec![
                ("room", room),
                ("action", action.as_str().to_owned()),
                ("user", format!("{} ({})", user.username, user.id)),
                (
                    "duration",
                    duration_s.map_or_else(|| "until undone".to_owned(), |d| format!("{d}s")),
                ),
            ]);
            print(clients.json(), done, table);
        }
    }
    Ok(())
}

fn moderation_action(action: cli::Action) -> msg::ModerationAction {
    match action {
        cli::Action::Kick => msg::ModerationAction::Kick,
        cli::Action::Ban => msg::ModerationAction::Ban,
        cli::Action::Unban => msg::ModerationAction::Unban,
        cli::Action::Mute => msg::ModerationAction::Mute,
        cli::Action::Unmute => msg::ModerationAction::Unmute,
        cli::Action::Promote => msg::ModerationAction::Promote,
        cli::Action::Demote => msg::ModerationAction::Demote,
    }
}

async fn messages(clients: &Clients, command: cli::Messages) -> Result<(), Failure> {
    let failed = clients.failed(Service::Message);
    match command {
        cli::Messages::History {
            room,
            before,
            after,
            limit,
        } => {
            let request = msg::HistoryRequest {
                room,
                before,
                after,
                limit,
            };
            let page = clients
                .message_admin()
                .await?
                .history(clients.request(request))
                .await
                .map_err(failed)?
                .into_inner();
            let mut table = Table::new(output::MESSAGE_COLUMNS);
            for message in &page.messages {
                table.row(output::message_row(message));
            }
            let messages: Vec<Value> = page.messages.iter().map(output::message_json).collect();
            print(
                clients.json(),
                json!({"messages": messages, "has_more": page.has_more}),
                table,
            );
        }
        cli::Messages::Tail { room, last } => tail(clients, room, last).await?,
    }
    Ok(())
}

/// Prints the last `last` messages and then every live event of `room`
/// until Ctrl-C (exit 0) or the stream fails.
async fn tail(clients: &Clients, room: String, last: i64) -> Result<(), Failure> {
    let failed = clients.failed(Service::Message);
    let mut admin = clients.message_admin().await?;
    let last_seq = admin
        .get_room(clients.request(msg::GetRoomRequest { room: room.clone() }))
        .await
        .map_err(&failed)?
        .into_inner()
        .room
        .map_or(0, |r| r.last_seq);
    // The server replays from history after `after`, then follows live
    // with no gap between the two.
    let request = msg::WatchRequest {
        room: room.clone(),
        after: Some(last_seq.saturating_sub(last.max(0)).max(0)),
    };
    let mut stream = admin.watch(request).await.map_err(&failed)?.into_inner();
    // On stderr, so stdout holds only events; scripts (and tests) can wait
    // for it to know the subscription is in place.
    eprintln!("following room {room} (Ctrl-C to stop)");
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            event = stream.message() => match event.map_err(&failed)? {
                Some(event) if clients.json() => {
                    output::out(format_args!("{}\n", output::event_json(&event)));
                }
                Some(event) => {
                    if let Some(line) = output::event_line(&event) {
                        output::out(format_args!("{line}\n"));
                    }
                }
                None => {
                    return Err(Failure::Other(anyhow::anyhow!(
                        "message-service ended the stream of room {room}"
                    )));
                }
            },
        }
    }
}

async fn who(clients: &Clients) -> Result<(), Failure> {
    let users = clients
        .presence_admin()
        .await?
        .list_online(clients.request(presence::ListOnlineRequest {}))
        .await
        .map_err(clients.failed(Service::Presence))?
        .into_inner()
        .users;
    let ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
    let names: HashMap<String, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        clients
            .auth()?
            .get_users(clients.request(auth::GetUsersRequest { user_ids: ids }))
            .await
            .map_err(clients.failed(Service::Auth))?
            .into_inner()
            .users
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect()
    };
    let name = |id: &str| names.get(id).cloned().unwrap_or_default();
    // One row per user and gateway, by gateway then username.
    let mut rows: Vec<(String, String, String, u32)> = users
        .iter()
        .flat_map(|u| {
            u.gateways.iter().map(|g| {
                (
                    g.gateway_id.clone(),
                    name(&u.user_id),
                    u.user_id.clone(),
                    g.connections,
                )
            })
        })
        .collect();
    rows.sort();
    let mut table = Table::new(&["GATEWAY", "USERNAME", "USER_ID", "CONNECTIONS"]);
    for (gateway, username, user_id, connections) in &rows {
        table.row(vec![
            gateway.clone(),
            username.clone(),
            user_id.clone(),
            connections.to_string(),
        ]);
    }
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({
                "user_id": u.user_id,
                "username": name(&u.user_id),
                "connections": u.connections,
                "gateways": u.gateways.iter().map(|g| json!({
                    "gateway_id": g.gateway_id,
                    "connections": g.connections,
                })).collect::<Vec<Value>>(),
            })
        })
        .collect();
    print(clients.json(), json!({"users": users}), table);
    Ok(())
}

async fn notifications(clients: &Clients, target: &str, all: bool) -> Result<(), Failure> {
    let user = find_user(clients, target).await?;
    let request = presence::ListNotificationsRequest {
        user_id: user.id,
        include_delivered: all,
    };
    let notifications = clients
        .presence_admin()
        .await?
        .list_notifications(clients.request(request))
        .await
        .map_err(clients.failed(Service::Presence))?
        .into_inner()
        .notifications;
    let mut table = Table::new(output::NOTIFICATION_COLUMNS);
    for notification in &notifications {
        table.row(output::notification_row(notification));
    }
    let notifications: Vec<Value> = notifications
        .iter()
        .map(output::notification_json)
        .collect();
    print(
        clients.json(),
        json!({"notifications": notifications}),
        table,
    );
    Ok(())
}

/// The gRPC services each part serves, besides the whole server (`""`).
fn grpc_services(service: Service) -> [&'static str; 2] {
    match service {
        Service::Auth => ["chat.auth.v1.AuthService", "chat.auth.v1.AdminService"],
        Service::Message => [
            "chat.message.v1.MessageService",
            "chat.message.v1.AdminService",
        ],
        Service::Presence => [
            "chat.presence.v1.PresenceService",
            "chat.presence.v1.AdminService",
        ],
    }
}

/// One health answer: the status name, or why there is none.
async fn check(
    clients: &Clients,
    health: &mut HealthClient<tonic::transport::Channel>,
    service: Service,
    name: &str,
) -> Result<String, Failure> {
    let request = clients.request(HealthCheckRequest {
        service: name.to_owned(),
    });
    match health.check(request).await {
        Ok(reply) => Ok(ServingStatus::try_from(reply.into_inner().status)
            .map_or("UNKNOWN", |s| s.as_str_name())
            .to_owned()),
        Err(status) => match Failure::from_status(service, &clients.addr(service), status) {
            Failure::Refused { status, .. } => {
                Ok(chat_proto::grpc_code_name(status.code()).to_owned())
            }
            unreachable => Err(unreachable),
        },
    }
}

async fn health(clients: &Clients) -> Result<(), Failure> {
    let checks = Service::ALL.map(|service| async move {
        let addr = clients.addr(service);
        let mut health = HealthClient::new(clients.channel(service)?);
        let mut rows = Vec::new();
        for name in std::iter::once("").chain(grpc_services(service)) {
            match check(clients, &mut health, service, name).await {
                Ok(status) => rows.push((service, addr.clone(), name, status)),
                // Unreachable: one row for the whole part, no use asking more.
                Err(failure) => {
                    let detail = match failure {
                        Failure::Unreachable { detail, .. } => detail,
                        other => other.to_string(),
                    };
                    rows.push((service, addr.clone(), "", format!("UNREACHABLE: {detail}")));
                    break;
                }
            }
        }
        Ok::<_, Failure>(rows)
    });
    let [auth, message, presence] = checks;
    let (auth, message, presence) = tokio::join!(auth, message, presence);
    let rows: Vec<_> = [auth?, message?, presence?].into_iter().flatten().collect();

    let mut table = Table::new(&["SERVICE", "ADDRESS", "GRPC_SERVICE", "STATUS"]);
    let mut unhealthy = Vec::new();
    for (service, addr, name, status) in &rows {
        if status != "SERVING" {
            unhealthy.push(format!("{} {}", service.name(), status));
        }
        let shown = if name.is_empty() { "(server)" } else { name };
        table.row(vec![
            service.name().to_owned(),
            addr.clone(),
            shown.to_owned(),
            status.clone(),
        ]);
    }
    let checks: Vec<Value> = rows
        .iter()
        .map(|(service, addr, name, status)| {
            json!({"service": service.name(), "address": addr, "grpc_service": name, "status": status})
        })
        .collect();
    print(
        clients.json(),
        json!({"healthy": unhealthy.is_empty(), "checks": checks}),
        table,
    );
    if unhealthy.is_empty() {
        Ok(())
    } else {
        Err(Failure::Unhealthy(format!(
            "not healthy: {}",
            unhealthy.join("; ")
        )))
    }
}
