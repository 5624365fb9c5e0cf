//! Admin calls: the RPCs of the `*.AdminService`s, made by internal tools
//! (chatctl, grpcurl, scripts). Besides the service credential that every
//! internal call carries, an admin call carries the access token of a user
//! whose system-wide role is "admin":
//!
//! ```text
//! x-service-token: <SERVICE_TOKEN>
//! authorization:   Bearer <access token>
//! ```
//!
//! The service credential says the caller is inside the deployment; the
//! access token says which person is acting and that they may administer.
//!
//! message- and presence-service check that token by calling auth-service's
//! `ValidateToken` rather than verifying the JWT locally:
//! - the signing key stays with auth-service and the gateway: whoever holds
//!   it can mint admin tokens, so fewer holders is a smaller attack surface;
//! - `ValidateToken` answers with the user's current database row, so a
//!   disabled or demoted admin is refused at once, not when their token
//!   expires (up to `ACCESS_TOKEN_TTL_S` later);
//! - admin calls are rare, so the extra hop costs nothing that matters, and
//!   the only new setting is auth-service's address (`AUTH_ADDR`), which a
//!   deployment knows anyway.

use chat_proto::ErrorCode;
use chat_proto::auth::v1::ValidateTokenRequest;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::identity::{Identity, ServiceAuth};

pub use chat_proto::credentials::{AUTHORIZATION, AdminCredentials};
/// The system-wide role that may make admin calls.
pub const ADMIN_ROLE: &str = "admin";
/// Why a signed-in user who is not an admin is refused.
pub const NOT_ADMIN: &str = "the admin role is required";
/// Why a call without a bearer token is refused.
pub const NO_BEARER: &str =
    "admin calls need an admin's access token in `authorization: Bearer <token>`";

/// A client of auth-service presenting the service credential.
pub type AuthClient = AuthServiceClient<InterceptedService<Channel, ServiceAuth>>;

/// The access token of `authorization: Bearer <token>`, if any. The scheme
/// is matched case-insensitively, as HTTP does.
pub fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks admin calls on services other than auth-service, through
/// auth-service's `ValidateToken`.
#[derive(Clone)]
pub struct AdminGuard {
    auth: AuthClient,
}

impl AdminGuard {
    /// A guard asking auth-service at `auth_addr` (`http://host:port`),
    /// over TLS with `tls`. The channel connects on first use, so
    /// auth-service may start later.
    pub fn new(
        auth_addr: &str,
        tls: Option<&crate::grpc::ClientTls>,
        service_auth: ServiceAuth,
    ) -> anyhow::Result<AdminGuard> {
        let channel = crate::grpc::channel_with_tls(auth_addr, tls)?;
        Ok(AdminGuard {
            auth: AuthServiceClient::with_interceptor(channel, service_auth),
        })
    }

    /// The admin making `request`, or the status refusing the call:
    /// `UNAUTHENTICATED` without a valid token, `PERMISSION_DENIED` for a
    /// user who is disabled or not an admin, `UNAVAILABLE` when auth-service
    /// cannot be asked.
    pub async fn authorize<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let token = bearer_token(request.metadata())
            .ok_or_else(|| ErrorCode::Unauthorized.status(NO_BEARER))?;
        let user = self
            .auth
            .clone()
            .validate_token(ValidateTokenRequest {
                access_token: token.to_owned(),
            })
            .await
            .map_err(refusal)?
            .into_inner()
            .user
            .ok_or_else(|| {
                tracing::error!("ValidateToken answered without a user");
                ErrorCode::Internal.status("internal error")
            })?;
        if user.role != ADMIN_ROLE {
            tracing::warn!(user_id = %user.id, "admin call by a user who is not an admin");
            return Err(ErrorCode::Forbidden.status(NOT_ADMIN));
        }
        Ok(Identity {
            user_id: user.id,
            username: user.username,
            display_name: user.display_name,
        })
    }

    /// The auth-service client, for looking up the users an admin names.
    pub fn auth(&self) -> AuthClient {
        self.auth.clone()
    }
}

/// The status to answer when `ValidateToken` failed: auth-service's own
/// refusals (bad, expired or disabled) pass through with their code and
/// message; failing to reach it is `unavailable`.
fn refusal(status: Status) -> Status {
    let code = ErrorCode::from_status(&status);
    match code {
        ErrorCode::Unauthorized | ErrorCode::Forbidden => code.status(status.message()),
        _ if status.code() == Code::Unavailable || code == ErrorCode::Unavailable => {
            tracing::warn!(error = %status, "cannot reach auth-service to check an admin token");
            ErrorCode::Unavailable
                .status("auth-service is unreachable; cannot check the admin token")
        }
        _ => {
            tracing::error!(error = %status, "ValidateToken failed");
            ErrorCode::Internal.status("internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn with_authorization(value: &'static str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(AUTHORIZATION, MetadataValue::from_static(value));
        metadata
    }

    #[test]
    fn the_bearer_token_is_taken_from_the_authorization_entry() {
        assert_eq!(
            bearer_token(&with_authorization("Bearer abc.def")),
            Some("abc.def")
        );
        assert_eq!(
            bearer_token(&with_authorization("bearer  xyz ")),
            Some("xyz")
        );
        assert_eq!(bearer_token(&with_authorization("Basic abc")), None);
        assert_eq!(bearer_token(&with_authorization("Bearer ")), None);
        assert_eq!(bearer_token(&with_authorization("abc")), None);
        assert_eq!(bearer_token(&MetadataMap::new()), None);
    }

    #[test]
    fn refusals_keep_auth_service_codes_and_hide_the_rest() {
        let expired = refusal(ErrorCode::Unauthorized.status("access token expired"));
        assert_eq!(
            (expired.code(), expired.message()),
            (Code::Unauthenticated, "access token expired")
        );
        let disabled = refusal(ErrorCode::Forbidden.status("account disabled"));
        assert_eq!(
            (disabled.code(), disabled.message()),
            (Code::PermissionDenied, "account disabled")
        );
        let down = refusal(Status::unavailable("tcp connect error"));
        assert_eq!(ErrorCode::from_status(&down), ErrorCode::Unavailable);
        assert_eq!(
            down.message(),
            "auth-service is unreachable; cannot check the admin token"
        );
        let broken = refusal(ErrorCode::Internal.status("internal error"));
        assert_eq!(
            (broken.code(), broken.message()),
            (Code::Internal, "internal error")
        );
    }
}
