//! Connections to the services and the credentials every admin call
//! carries: the service credential (`x-service-token`) and an admin's access
//! token (`authorization: Bearer`), taken from `--token` or got by logging in
//! with `--user` and `--password` the first time a command needs it.

use std::time::Duration;

use chat_proto::AdminCredentials;
use chat_proto::auth::v1::LoginRequest;
use chat_proto::auth::v1::admin_service_client::AdminServiceClient as AuthAdminClient;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use chat_proto::message::v1::admin_service_client::AdminServiceClient as MessageAdminClient;
use chat_proto::presence::v1::admin_service_client::AdminServiceClient as PresenceAdminClient;
use tokio::sync::OnceCell;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::cli::Global;
use crate::error::{Failure, Service};

pub type Authed = InterceptedService<Channel, AdminCredentials>;

pub struct Clients {
    global: Global,
    /// The service credential, without a bearer yet.
    service: AdminCredentials,
    /// The admin's access token, once known.
    token: OnceCell<String>,
    /// TLS of every call (`GRPC_TLS_CA`...); `None`: plaintext.
    tls: Option<ClientTlsConfig>,
}

/// The TLS of calls to the services, from the `GRPC_TLS_*` settings (the
/// gateway's); `None` without a CA.
fn tls(global: &Global) -> Result<Option<ClientTlsConfig>, Failure> {
    let set = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let read = |name: &str, path: &str| {
        std::fs::read(path).map_err(|e| Failure::Usage(format!("{name}: cannot read {path}: {e}")))
    };
    let server_name = set(&global.grpc_tls_server_name);
    let cert = set(&global.grpc_tls_client_cert);
    let key = set(&global.grpc_tls_client_key);
    let Some(ca) = set(&global.grpc_tls_ca) else {
        if server_name.is_some() || cert.is_some() || key.is_some() {
            return Err(Failure::Usage(
                "GRPC_TLS_SERVER_NAME, GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY need \
                 GRPC_TLS_CA (--grpc-tls-ca)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("GRPC_TLS_CA", &ca)?));
    if let Some(name) = server_name {
        config = config.domain_name(name);
    }
    match (cert, key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("GRPC_TLS_CLIENT_CERT", &cert)?,
                read("GRPC_TLS_CLIENT_KEY", &key)?,
            ));
        }
        _ => {
            return Err(Failure::Usage(
                "GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY must be set together".into(),
            ));
        }
    }
    // rustls parses the files when a connector is built: a bad one is
    // reported now, before any call.
    Endpoint::from_static("https://localhost")
        .tls_config(config.clone())
        .map_err(|e| Failure::Usage(format!("GRPC_TLS_* settings: {}", chain(&e))))?;
    Ok(Some(config))
}

/// An error and its sources on one line: tonic's own display is only
/// "transport error".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `host:port` as `http://host:port`; a URL as it is.
fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

impl Clients {
    pub fn new(global: Global) -> Result<Clients, Failure> {
        let service = AdminCredentials::new(Some(&global.service_token), None)
            .map_err(|_| Failure::Usage("--service-token must be printable ASCII".into()))?;
        Ok(Clients {
            tls: tls(&global)?,
            global,
            service,
            token: OnceCell::new(),
        })
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.global.timeout_s.max(1))
    }

    pub fn addr(&self, service: Service) -> String {
        url(match service {
            Service::Auth => &self.global.auth_addr,
            Service::Message => &self.global.message_addr,
            Service::Presence => &self.global.presence_addr,
        })
    }

    /// A channel to `service`, connecting on the first call. With TLS an
    /// `http://` address is dialled as `https://`: tonic would otherwise
    /// speak plaintext to it despite the TLS settings.
    pub fn channel(&self, service: Service) -> Result<Channel, Failure> {
        let addr = self.addr(service);
        let target = match (&self.tls, addr.split_once("://")) {
            (Some(_), Some(("http" | "https", rest))) => format!("https://{rest}"),
            (None, Some(("https", _))) => {
                return Err(Failure::Usage(format!(
                    "{} address {addr} is https:// but GRPC_TLS_CA (--grpc-tls-ca) is not set",
                    service.name()
                )));
            }
            _ => addr.clone(),
        };
        let mut endpoint = Endpoint::from_shared(target).map_err(|e| {
            Failure::Usage(format!(
                "{} address {addr:?} is not a URL: {e}",
                service.name()
            ))
        })?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| {
                Failure::Usage(format!("cannot set up TLS to {addr}: {}", chain(&e)))
            })?;
        }
        Ok(endpoint
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .connect_lazy())
    }

    /// A request with the per-call deadline (not for streams, which run
    /// until stopped).
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout());
        request
    }

    fn credentials(&self, bearer: Option<&str>) -> Result<AdminCredentials, Failure> {
        match bearer {
            None => Ok(self.service.clone()),
            Some(token) => self
                .service
                .with_access_token(token)
                .map_err(|_| Failure::Usage("the access token must be printable ASCII".into())),
        }
    }

    /// auth-service with the service credential only (login, lookups).
    pub fn auth(&self) -> Result<AuthServiceClient<Authed>, Failure> {
        Ok(AuthServiceClient::with_interceptor(
            self.channel(Service::Auth)?,
            self.credentials(None)?,
        ))
    }

    /// The admin's access token: `--token`, else a login.
    async fn token(&self) -> Result<&str, Failure> {
        self.token
            .get_or_try_init(|| async {
                if let Some(token) = &self.global.token {
                    return Ok(token.clone());
                }
                let (Some(user), Some(password)) = (&self.global.login_user, &self.global.password)
                else {
                    return Err(Failure::Usage(
                        "this command needs an admin: pass --token (CHATCTL_TOKEN), or --user and \
                         --password (CHATCTL_USER, CHATCTL_PASSWORD)"
                            .into(),
                    ));
                };
                let login = LoginRequest {
                    username: user.clone(),
                    password: password.clone(),
                };
                let reply = self.auth()?.login(self.request(login)).await.map_err(|s| {
                    Failure::from_status(Service::Auth, &self.addr(Service::Auth), s)
                })?;
                Ok(reply.into_inner().access_token)
            })
            .await
            .map(String::as_str)
    }

    pub async fn auth_admin(&self) -> Result<AuthAdminClient<Authed>, Failure> {
        let credentials = self.credentials(Some(self.token().await?))?;
        Ok(AuthAdminClient::with_interceptor(
            self.channel(Service::Auth)?,
            credentials,
        ))
    }

    pub async fn message_admin(&self) -> Result<MessageAdminClient<Authed>, Failure> {
        let credentials = self.credentials(Some(self.token().await?))?;
        Ok(MessageAdminClient::with_interceptor(
            self.channel(Service::Message)?,
            credentials,
        ))
    }

    pub async fn presence_admin(&self) -> Result<PresenceAdminClient<Authed>, Failure> {
        let credentials = self.credentials(Some(self.token().await?))?;
        Ok(PresenceAdminClient::with_interceptor(
            self.channel(Service::Presence)?,
            credentials,
        ))
    }

    /// Turns the status of a failed call to `service` into a [`Failure`].
    pub fn failed(&self, service: Service) -> impl Fn(Status) -> Failure + '_ {
        move |status| Failure::from_status(service, &self.addr(service), status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(url("https://auth:443"), "https://auth:443");
    }
}
