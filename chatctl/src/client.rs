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
use tonic::transport::{Channel, Endpoint};
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

    /// A channel to `service`, connecting on the first call.
    pub fn channel(&self, service: Service) -> Result<Channel, Failure> {
        let addr = self.addr(service);
        let endpoint = Endpoint::from_shared(addr.clone()).map_err(|e| {
            Failure::Usage(format!(
                "{} address {addr:?} is not a URL: {e}",
                service.name()
            ))
        })?;
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
