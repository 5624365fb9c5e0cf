//! The public HTTP JSON API, `/api/v1` (PROTOCOL.md "HTTP JSON API").

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chat_common::identity::Identity;
use chat_proto::ErrorCode;
use chat_proto::auth::v1 as auth;
use chat_proto::message::v1 as msg;
use chat_proto::presence::v1 as presence;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::{AuthUser, ClientAddr, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire;

/// History pages of the public API hold at most this many messages.
pub const MAX_HISTORY_LIMIT: u32 = 100;
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Bytes per chunk streamed to message-service.
const UPLOAD_CHUNK: usize = 64 * 1024;

pub fn router(state: &AppState) -> axum::Router<AppState> {
    // The body limit lets one byte past the attachment limit through, so
    // the handler can tell "too large" (413) from a complete upload.
    let upload_limit = usize::try_from(state.config.limits.max_attachment_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    axum::Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/password", post(change_password))
        .route("/me", get(me).patch(update_me))
        .route("/users", get(search_users))
        .route("/rooms", post(create_room).get(my_rooms))
        .route("/rooms/public", get(public_rooms))
        .route("/rooms/{id}", get(get_room))
        .route("/rooms/{id}/join", post(join_room))
        .route("/rooms/{id}/leave", post(leave_room))
        .route("/rooms/{id}/members", get(members).post(add_member))
        .route("/rooms/{id}/moderation", post(moderate))
        .route("/rooms/{id}/messages", get(history))
        .route(
            "/rooms/{id}/attachments",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/attachments/{id}", get(download))
        .route("/dms", post(open_dm))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

fn session(reply: auth::AuthResponse) -> Value {
    json!({
        "user": reply.user.as_ref().map(wire::user),
        "access_token": reply.access_token,
        "refresh_token": reply.refresh_token,
        "expires_in": reply.expires_in,
    })
}

#[derive(Deserialize)]
struct RegisterBody {
    username: String,
    password: String,
    display_name: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<impl IntoResponse> {
    let request = auth::RegisterRequest {
        username: body.username,
        password: body.password,
        display_name: body.display_name,
    };
    let reply = state.services.auth.clone().register(request).await?;
    Ok((StatusCode::CREATED, Json(session(reply.into_inner()))))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client_addr): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<Value>> {
    let mut request = tonic::Request::new(auth::LoginRequest {
        username: body.username,
        password: body.password,
    });
    // auth-service throttles failed logins per address too.
    if let Some(addr) = &client_addr {
        chat_common::identity::write_client_addr(request.metadata_mut(), addr);
    }
    let reply = state.services.auth.clone().login(request).await?;
    Ok(Json(session(reply.into_inner())))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<Value>> {
    let request = auth::RefreshRequest {
        refresh_token: body.refresh_token,
    };
    let reply = state.services.auth.clone().refresh(request).await?;
    Ok(Json(session(reply.into_inner())))
}

#[derive(Deserialize)]
struct LogoutBody {
    refresh_token: String,
    /// End every session of the user, not only this one.
    #[serde(default)]
    everywhere: bool,
}

async fn logout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LogoutBody>,
) -> ApiResult<StatusCode> {
    let request = auth::LogoutRequest {
        refresh_token: body.refresh_token,
        everywhere: body.everywhere,
    };
    state.services.auth.clone().logout(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PasswordBody {
    old_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<StatusCode> {
    let request = claims.identity().request(auth::ChangePasswordRequest {
        old_password: body.old_password,
        new_password: body.new_password,
    });
    state.services.auth.clone().change_password(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, AuthUser(claims): AuthUser) -> ApiResult<Json<Value>> {
    let user = get_user(&state, &claims.sub).await?;
    Ok(Json(json!({"user": wire::user(&user)})))
}

async fn get_user(state: &AppState, user_id: &str) -> ApiResult<auth::User> {
    let request = auth::GetUserRequest {
        user_id: user_id.to_owned(),
    };
    Ok(state
        .services
        .auth
        .clone()
        .get_user(request)
        .await?
        .into_inner())
}

#[derive(Deserialize)]
struct ProfileBody {
    display_name: String,
}

async fn update_me(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    JsonBody(body): JsonBody<ProfileBody>,
) -> ApiResult<Json<Value>> {
    let request = claims.identity().request(auth::UpdateProfileRequest {
        display_name: body.display_name,
    });
    let user = state.services.auth.clone().update_profile(request).await?;
    // The cached answer holds the user's row, which the next handshake's
    // `ready` shows: ask again rather than show the old name. (Other
    // gateways may show it until their answer expires.)
    state.revocations.forget(&claims.sub);
    Ok(Json(json!({"user": wire::user(user.get_ref())})))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search_users(
    State(state): State<AppState>,
    AuthUser(_): AuthUser,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Value>> {
    let request = auth::SearchUsersRequest {
        prefix: query.q,
        limit: 20,
    };
    let users = state
        .services
        .auth
        .clone()
        .search_users(request)
        .await?
        .into_inner()
        .users;
    let statuses = presence_of(&state, users.iter().map(|u| u.id.clone()).collect()).await;
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut value = wire::user(u);
            let p = statuses.iter().find(|p| p.user_id == u.id);
            if let Value::Object(fields) = &mut value {
                fields.insert(
                    "status".into(),
                    wire::status(p.map_or(0, |p| p.status)).into(),
                );
                fields.insert(
                    "last_seen".into(),
                    wire::time(p.and_then(|p| p.last_seen.as_ref())),
                );
            }
            value
        })
        .collect();
    Ok(Json(json!({"users": users})))
}

/// Presence of `user_ids`; everyone offline when presence-service cannot
/// answer (presence is advisory, never a reason to fail a call).
async fn presence_of(state: &AppState, user_ids: Vec<String>) -> Vec<presence::UserPresence> {
    if user_ids.is_empty() {
        return Vec::new();
    }
    let request = presence::GetPresenceRequest { user_ids };
    match state.services.presence.clone().get_presence(request).await {
        Ok(reply) => reply.into_inner().users,
        Err(status) => {
            tracing::warn!(%status, "presence unavailable");
            Vec::new()
        }
    }
}

#[derive(Deserialize)]
struct CreateRoomBody {
    name: String,
    visibility: String,
}

pub fn parse_visibility(v: &str) -> ApiResult<msg::Visibility> {
    match v {
        "public" => Ok(msg::Visibility::Public),
        "private" => Ok(msg::Visibility::Private),
        _ => Err(ApiError::invalid(
            "visibility must be \"public\" or \"private\"",
        )),
    }
}

async fn create_room(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    JsonBody(body): JsonBody<CreateRoomBody>,
) -> ApiResult<impl IntoResponse> {
    let request = claims.identity().request(msg::CreateRoomRequest {
        name: body.name,
        visibility: parse_visibility(&body.visibility)? as i32,
    });
    let room = state
        .services
        .messages
        .clone()
        .create_room(request)
        .await?
        .into_inner();
    joined(&state, &claims.sub, &room.id).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"room": wire::room(&room)})),
    ))
}

/// Puts the user's local connections in a room they just entered, so their
/// sockets receive it from the next event on. Other replicas learn the same
/// from the `user:{id}` event message-service publishes.
async fn joined(state: &AppState, user_id: &str, room: &str) {
    if !state.hub.add_room_for_user(user_id, room).await.is_empty() {
        state.sync_presence_rooms(user_id);
    }
}

async fn my_rooms(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> ApiResult<Json<Value>> {
    let request = claims.identity().request(msg::ListMyRoomsRequest {});
    let rooms = state
        .services
        .messages
        .clone()
        .list_my_rooms(request)
        .await?
        .into_inner()
        .rooms;
    let rooms: Vec<Value> = rooms.iter().map(wire::my_room).collect();
    Ok(Json(json!({"rooms": rooms})))
}

async fn public_rooms(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> ApiResult<Json<Value>> {
    let request = claims
        .identity()
        .request(msg::ListPublicRoomsRequest { limit: 100 });
    let rooms = state
        .services
        .messages
        .clone()
        .list_public_rooms(request)
        .await?
        .into_inner()
        .rooms;
    let rooms: Vec<Value> = rooms.iter().map(wire::room).collect();
    Ok(Json(json!({"rooms": rooms})))
}

async fn get_room(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let request = claims.identity().request(msg::GetRoomRequest { room });
    let room = state
        .services
        .messages
        .clone()
        .get_room(request)
        .await?
        .into_inner();
    Ok(Json(json!({"room": wire::room(&room)})))
}

async fn join_room(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room = join(&state, &claims.identity(), room).await?;
    Ok(Json(json!({"room": wire::room(&room)})))
}

pub async fn join(state: &AppState, identity: &Identity, room: String) -> ApiResult<msg::Room> {
    let request = identity.request(msg::JoinRoomRequest { room });
    let room = state
        .services
        .messages
        .clone()
        .join_room(request)
        .await?
        .into_inner();
    joined(state, &identity.user_id, &room.id).await;
    Ok(room)
}

async fn leave_room(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
) -> ApiResult<StatusCode> {
    leave(&state, &claims.identity(), room).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn leave(state: &AppState, identity: &Identity, room: String) -> ApiResult<()> {
    let request = identity.request(msg::LeaveRoomRequest { room: room.clone() });
    state.services.messages.clone().leave_room(request).await?;
    if !state
        .hub
        .remove_room_for_user(&identity.user_id, &room)
        .await
        .is_empty()
    {
        state.sync_presence_rooms(&identity.user_id);
    }
    Ok(())
}

async fn members(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let request = claims.identity().request(msg::ListMembersRequest { room });
    let members = state
        .services
        .messages
        .clone()
        .list_members(request)
        .await?
        .into_inner()
        .members;
    let statuses = presence_of(&state, members.iter().map(|m| m.user_id.clone()).collect()).await;
    let members: Vec<Value> = members
        .iter()
        .map(|m| {
            let status = statuses
                .iter()
                .find(|p| p.user_id == m.user_id)
                .map_or(0, |p| p.status);
            json!({
                "user_id": m.user_id,
                "username": m.username,
                "role": wire::role(m.role),
                "status": wire::status(status),
            })
        })
        .collect();
    Ok(Json(json!({"members": members})))
}

#[derive(Deserialize)]
struct AddMemberBody {
    user_id: String,
}

async fn add_member(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> ApiResult<impl IntoResponse> {
    let user = get_user(&state, &body.user_id).await?;
    let request = claims.identity().request(msg::AddMemberRequest {
        room: room.clone(),
        user_id: user.id.clone(),
        username: user.username,
        display_name: user.display_name,
    });
    let member = state
        .services
        .messages
        .clone()
        .add_member(request)
        .await?
        .into_inner();
    joined(&state, &user.id, &room).await;
    let member = member
        .member
        .map(|m| json!({"user_id": m.user_id, "username": m.username, "role": wire::role(m.role)}));
    Ok((StatusCode::CREATED, Json(json!({"member": member}))))
}

#[derive(Deserialize)]
struct ModerationBody {
    action: String,
    user_id: String,
    duration_s: Option<i64>,
}

async fn moderate(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<ModerationBody>,
) -> ApiResult<StatusCode> {
    use msg::ModerationAction as A;
    let action = match body.action.as_str() {
        "kick" => A::Kick,
        "ban" => A::Ban,
        "unban" => A::Unban,
        "mute" => A::Mute,
        "unmute" => A::Unmute,
        "promote" => A::Promote,
        "demote" => A::Demote,
        _ => {
            return Err(ApiError::invalid(
                "action must be one of kick, ban, unban, mute, unmute, promote, demote",
            ));
        }
    };
    if body.duration_s.is_some_and(|d| d <= 0) {
        return Err(ApiError::invalid("duration_s must be positive"));
    }
    let request = claims.identity().request(msg::ModerateRequest {
        room,
        action: action as i32,
        user_id: body.user_id,
        duration_s: body.duration_s,
    });
    state.services.messages.clone().moderate(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DmBody {
    user_id: String,
}

async fn open_dm(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    JsonBody(body): JsonBody<DmBody>,
) -> ApiResult<impl IntoResponse> {
    let other = get_user(&state, &body.user_id).await?;
    let request = claims.identity().request(msg::OpenDirectRequest {
        user_id: other.id.clone(),
        username: other.username,
        display_name: other.display_name,
    });
    let reply = state
        .services
        .messages
        .clone()
        .open_direct(request)
        .await?
        .into_inner();
    let room = reply.room.unwrap_or_default();
    let status = if reply.created {
        joined(&state, &claims.sub, &room.id).await;
        joined(&state, &other.id, &room.id).await;
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"room": wire::room(&room)}))))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<u32>,
}

/// Validates a public history request's paging.
pub fn history_request(
    room: String,
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<u32>,
) -> ApiResult<msg::HistoryRequest> {
    let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 100"));
    }
    if before.is_some() && after.is_some() {
        return Err(ApiError::invalid("give before or after, not both"));
    }
    Ok(msg::HistoryRequest {
        room,
        before,
        after,
        limit,
    })
}

async fn history(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let request = history_request(room, query.before, query.after, query.limit)?;
    let reply = state
        .services
        .messages
        .clone()
        .history(claims.identity().request(request))
        .await?
        .into_inner();
    Ok(Json(
        json!({"messages": wire::messages(&reply.messages), "has_more": reply.has_more}),
    ))
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: String,
}

/// Streams the request body to message-service in chunks. An upload over
/// the limit is cut off and answered 413; message-service never stores a
/// partial file, because the call is cancelled rather than ended.
async fn upload(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(room): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    let max = state.config.limits.max_attachment_bytes;
    let too_large = || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("attachments are limited to {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let meta = msg::UploadAttachmentRequest {
        part: Some(msg::upload_attachment_request::Part::Meta(
            msg::upload_attachment_request::Meta {
                room,
                filename: query.filename,
                content_type,
            },
        )),
    };
    let _ = tx.send(meta).await;
    let mut client = state.services.messages.clone();
    let call = client.upload_attachment(claims.identity().request(ReceiverStream::new(rx)));
    tokio::pin!(call);

    let pump = async move {
        let mut stream = body.into_data_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                if total >= max {
                    too_large()
                } else {
                    ApiError::invalid("the upload was interrupted")
                }
            })?;
            total += chunk.len() as u64;
            if total > max {
                return Err(too_large());
            }
            for piece in chunk.chunks(UPLOAD_CHUNK) {
                let part = msg::UploadAttachmentRequest {
                    part: Some(msg::upload_attachment_request::Part::Chunk(piece.to_vec())),
                };
                if tx.send(part).await.is_err() {
                    // The call ended early; its own result says why.
                    return Ok(());
                }
            }
        }
        Ok(())
    };

    let attachment = tokio::select! {
        result = &mut call => result?.into_inner(),
        pumped = pump => {
            pumped?;
            call.await?.into_inner()
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"attachment": wire::attachment(&attachment)})),
    ))
}

async fn download(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let request = claims
        .identity()
        .request(msg::DownloadAttachmentRequest { attachment_id: id });
    let mut stream = state
        .services
        .messages
        .clone()
        .download_attachment(request)
        .await?
        .into_inner();
    let first = stream.message().await?;
    let Some(msg::DownloadAttachmentResponse {
        part: Some(msg::download_attachment_response::Part::Attachment(attachment)),
    }) = first
    else {
        return Err(ApiError::new(ErrorCode::Internal, "internal error"));
    };
    let body = Body::from_stream(stream.filter_map(|part| async move {
        match part {
            Ok(msg::DownloadAttachmentResponse {
                part: Some(msg::download_attachment_response::Part::Chunk(bytes)),
            }) => Some(Ok(bytes::Bytes::from(bytes))),
            Ok(_) => None,
            Err(status) => Some(Err(std::io::Error::other(status.to_string()))),
        }
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&attachment.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    // Images are shown inline; anything else downloads, so an uploaded HTML
    // page never runs in the chat's origin.
    let inline = attachment.content_type.starts_with("image/")
        && !attachment.content_type.starts_with("image/svg");
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        percent_encode(&attachment.filename)
    );
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(len) = HeaderValue::from_str(&attachment.size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, len);
    }
    if let Ok(disposition) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    Ok(response)
}

/// RFC 5987 encoding for `filename*`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
