//! Internal-call authentication: who is calling (the end user a gateway acts
//! for) and that the caller is one of ours (the shared service credential).
//!
//! Metadata on every internal call:
//! - `x-service-token`: the service credential; calls without it are refused
//!   with `UNAUTHENTICATED` by [`ServiceAuth`] on the server side.
//! - `x-user-id`, `x-username`: the acting user (ASCII by construction).
//! - `x-display-name-bin`: the acting user's display name, UTF-8 as binary
//!   metadata since gRPC text metadata is ASCII only.
//! - `x-client-addr`: the address of the end user's client as the gateway
//!   saw it, on calls whose abuse is counted per address (login).

use chat_proto::ErrorCode;
use chat_proto::credentials::SERVICE_TOKEN_KEY;
use subtle::ConstantTimeEq;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue, MetadataMap};
use tonic::{Request, Status};

use crate::Secret;

const USER_ID: &str = "x-user-id";
const USERNAME: &str = "x-username";
const DISPLAY_NAME: &str = "x-display-name-bin";
const CLIENT_ADDR: &str = "x-client-addr";

/// Puts the end user's client address on an outgoing call; an address that
/// is not ASCII metadata (never an IP address) is left out.
pub fn write_client_addr(metadata: &mut MetadataMap, addr: &str) {
    if let Ok(value) = AsciiMetadataValue::try_from(addr) {
        metadata.insert(CLIENT_ADDR, value);
    }
}

/// The end user's client address of an incoming call, if the caller gave
/// one. Trusted as given, like the acting user: only holders of the
/// service credential can call.
pub fn client_addr(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get(CLIENT_ADDR)?
        .to_str()
        .ok()
        .filter(|a| !a.is_empty())
}

/// The end user on whose behalf an internal call is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
}

impl Identity {
    /// The acting user of a request; `UNAUTHENTICATED` when absent.
    pub fn from_request<T>(request: &Request<T>) -> Result<Identity, Status> {
        Identity::from_metadata(request.metadata())
            .ok_or_else(|| ErrorCode::Unauthorized.status("no acting user on the call"))
    }

    pub fn from_metadata(metadata: &MetadataMap) -> Option<Identity> {
        let user_id = metadata.get(USER_ID)?.to_str().ok()?.to_owned();
        let username = metadata.get(USERNAME)?.to_str().ok()?.to_owned();
        let display_name = metadata
            .get_bin(DISPLAY_NAME)
            .and_then(|v| v.to_bytes().ok())
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .unwrap_or_else(|| username.clone());
        if user_id.is_empty() {
            return None;
        }
        Some(Identity {
            user_id,
            username,
            display_name,
        })
    }

    /// Writes this identity into outgoing metadata. Ids and usernames that
    /// are not valid ASCII metadata (never produced by our services) are
    /// left out, so the callee answers `UNAUTHENTICATED`.
    pub fn write_to(&self, metadata: &mut MetadataMap) {
        if let (Ok(id), Ok(name)) = (
            AsciiMetadataValue::try_from(self.user_id.as_str()),
            AsciiMetadataValue::try_from(self.username.as_str()),
        ) {
            metadata.insert(USER_ID, id);
            metadata.insert(USERNAME, name);
            metadata.insert_bin(
                DISPLAY_NAME,
                BinaryMetadataValue::from_bytes(self.display_name.as_bytes()),
            );
        }
    }

    /// A request carrying `message` on behalf of this user.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        self.write_to(request.metadata_mut());
        request
    }
}

/// Client-side interceptor adding the service credential to every call,
/// and server-side interceptor checking it.
#[derive(Clone)]
pub struct ServiceAuth {
    token: Secret,
    header: AsciiMetadataValue,
}

impl ServiceAuth {
    pub fn new(token: Secret) -> anyhow::Result<ServiceAuth> {
        let header = AsciiMetadataValue::try_from(token.expose())
            .map_err(|_| anyhow::anyhow!("the service token must be printable ASCII"))?;
        Ok(ServiceAuth { token, header })
    }

    /// Server side: refuses a call whose credential is missing or wrong.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get(SERVICE_TOKEN_KEY)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(presented.ct_eq(self.token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(ErrorCode::Unauthorized.status("missing or invalid service credential"))
        }
    }
}

/// As a tonic interceptor on a client, adds the credential; as one on a
/// server (`InterceptedService::new(svc, auth.server())`), checks it.
impl tonic::service::Interceptor for ServiceAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(SERVICE_TOKEN_KEY, self.header.clone());
        // Every internal call passes here, so this is where the caller's
        // trace context joins the call.
        crate::trace_context::inject(request.metadata_mut());
        Ok(request)
    }
}

impl ServiceAuth {
    /// The server-side interceptor.
    pub fn server(&self) -> ServiceAuthCheck {
        ServiceAuthCheck(self.clone())
    }
}

/// Server-side interceptor: refuses calls without the service credential.
#[derive(Clone)]
pub struct ServiceAuthCheck(ServiceAuth);

impl tonic::service::Interceptor for ServiceAuthCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.check(&request)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn identity() -> Identity {
        Identity {
            user_id: "u1".into(),
            username: "alice".into(),
            display_name: "Alice Ünicode".into(),
        }
    }

    #[test]
    fn identity_round_trips_through_metadata() {
        let request = identity().request(());
        assert_eq!(Identity::from_request(&request).ok(), Some(identity()));
    }

    #[test]
    fn client_addr_round_trips_through_metadata() {
        let mut metadata = MetadataMap::new();
        assert_eq!(client_addr(&metadata), None);
        write_client_addr(&mut metadata, "2001:db8::1");
        assert_eq!(client_addr(&metadata), Some("2001:db8::1"));
    }

    #[test]
    fn a_call_without_identity_is_unauthenticated() {
        let err = Identity::from_request(&Request::new(())).err();
        assert_eq!(err.map(|s| s.code()), Some(tonic::Code::Unauthenticated));
    }

    #[test]
    fn the_credential_added_by_a_client_passes_the_server_check() -> anyhow::Result<()> {
        let mut client = ServiceAuth::new(Secret::new("s3cret"))?;
        let request = client.call(Request::new(()))?;
        let mut server = ServiceAuth::new(Secret::new("s3cret"))?.server();
        assert!(server.call(request).is_ok());

        let mut other = ServiceAuth::new(Secret::new("other"))?.server();
        let request = client.call(Request::new(()))?;
        let refused = other.call(request).err().map(|s| s.code());
        assert_eq!(refused, Some(tonic::Code::Unauthenticated));
        let bare = other.call(Request::new(())).err().map(|s| s.code());
        assert_eq!(bare, Some(tonic::Code::Unauthenticated));
        Ok(())
    }
}
