//! The credentials internal callers present, as gRPC metadata:
//!
//! ```text
//! x-service-token: <SERVICE_TOKEN>          every internal call
//! authorization:   Bearer <access token>    admin calls: an admin's token
//! ```
//!
//! The names live here, beside the protos, because every client needs them,
//! including tools (chatctl) that link nothing else of the services.

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata entry carrying the service credential.
pub const SERVICE_TOKEN_KEY: &str = "x-service-token";
/// The metadata entry carrying `Bearer <access token>`.
pub const AUTHORIZATION: &str = "authorization";

/// What a client of the admin services presents on every call: the service
/// credential and an admin's access token. Either may be left out (a tool
/// logging in needs no bearer yet; tests of refusals leave parts out).
/// Deliberately not `Debug`: both parts are secrets.
#[derive(Clone, Default)]
pub struct AdminCredentials {
    service_token: Option<AsciiMetadataValue>,
    bearer: Option<AsciiMetadataValue>,
}

/// A credential that cannot travel as gRPC metadata.
#[derive(Debug)]
pub struct UnsendableCredential(&'static str);

impl std::fmt::Display for UnsendableCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} must be printable ASCII", self.0)
    }
}

impl std::error::Error for UnsendableCredential {}

impl AdminCredentials {
    pub fn new(
        service_token: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<AdminCredentials, UnsendableCredential> {
        let service_token = service_token
            .map(AsciiMetadataValue::try_from)
            .transpose()
            .map_err(|_| UnsendableCredential("service token"))?;
        let bearer = access_token
            .map(|token| AsciiMetadataValue::try_from(format!("Bearer {token}")))
            .transpose()
            .map_err(|_| UnsendableCredential("access token"))?;
        Ok(AdminCredentials {
            service_token,
            bearer,
        })
    }

    /// The same service credential with `access_token` as bearer.
    pub fn with_access_token(
        &self,
        access_token: &str,
    ) -> Result<AdminCredentials, UnsendableCredential> {
        let bearer = AsciiMetadataValue::try_from(format!("Bearer {access_token}"))
            .map_err(|_| UnsendableCredential("access token"))?;
        Ok(AdminCredentials {
            service_token: self.service_token.clone(),
            bearer: Some(bearer),
        })
    }
}

impl Interceptor for AdminCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        if let Some(token) = &self.service_token {
            metadata.insert(SERVICE_TOKEN_KEY, token.clone());
        }
        if let Some(bearer) = &self.bearer {
            metadata.insert(AUTHORIZATION, bearer.clone());
        }
        Ok(request)
    }
}
