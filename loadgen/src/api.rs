//! The HTTP JSON API calls a load generator needs to set up real clients:
//! register or log in, create and join rooms, read history.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

/// Every load generator account has this password.
const PASSWORD: &str = "loadgen-password";

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

impl Api {
    pub fn new(timeout: Duration, concurrency: usize) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(concurrency)
            .build()?;
        Ok(Api { http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| url.clone())?;
        let status = response.status().as_u16();
        let text = response.text().await.with_context(|| url.clone())?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{url} answered {status} with non-JSON"))?
        };
        Ok((status, value))
    }

    /// Registers `username`, or logs in when it exists (a rerun with the
    /// same `--user-prefix`).
    pub async fn user(&self, base: &str, username: &str) -> anyhow::Result<User> {
        let credentials = json!({"username": username, "password": PASSWORD});
        let (mut status, mut body) = self
            .call(
                reqwest::Method::POST,
                format!("{base}/api/v1/auth/register"),
                None,
                Some(credentials.clone()),
            )
            .await?;
        if status == 409 {
            (status, body) = self
                .call(
                    reqwest::Method::POST,
                    format!("{base}/api/v1/auth/login"),
                    None,
                    Some(credentials),
                )
                .await?;
        }
        if status != 200 && status != 201 {
            bail!("registering {username} answered {status}: {body}");
        }
        Ok(User {
            id: body["user"]["id"]
                .as_str()
                .context("no user id in the auth reply")?
                .to_owned(),
            token: body["access_token"]
                .as_str()
                .context("no access token in the auth reply")?
                .to_owned(),
        })
    }

    /// Registers (or logs in) `count` users named `<prefix><i>`, a few at a
    /// time: each costs the server an argon2 hash.
    pub async fn users(
        &self,
        bases: &[String],
        prefix: &str,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<User>> {
        futures::stream::iter(0..count)
            .map(|i| {
                let base = &bases[i % bases.len()];
                async move { self.user(base, &format!("{prefix}{i}")).await }
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// Creates a public room owned by `owner`; returns its id.
    pub async fn create_room(
        &self,
        base: &str,
        owner: &User,
        name: &str,
    ) -> anyhow::Result<String> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                format!("{base}/api/v1/rooms"),
                Some(&owner.token),
                Some(json!({"name": name, "visibility": "public"})),
            )
            .await?;
        if status != 201 {
            bail!("creating room {name} answered {status}: {body}");
        }
        Ok(body["room"]["id"]
            .as_str()
            .context("no room id in the reply")?
            .to_owned())
    }

    pub async fn join(&self, base: &str, user: &User, room: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                format!("{base}/api/v1/rooms/{room}/join"),
                Some(&user.token),
                Some(json!({})),
            )
            .await?;
        // Already a member (its owner, say) is as good as joined.
        if status != 200 && status != 201 && status != 409 {
            bail!("joining room {room} answered {status}: {body}");
        }
        Ok(())
    }

    /// Makes every one of `users` a member of `room`, a few at a time.
    pub async fn join_all(
        &self,
        bases: &[String],
        users: &[User],
        room: &str,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        futures::stream::iter(users.iter().enumerate())
            .map(|(i, user)| self.join(&bases[i % bases.len()], user, room))
            .buffer_unordered(concurrency.max(1))
            .try_collect::<()>()
            .await
    }

    /// The room's `last_seq`, from the caller's room list.
    pub async fn last_seq(&self, base: &str, user: &User, room: &str) -> anyhow::Result<u64> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                format!("{base}/api/v1/rooms"),
                Some(&user.token),
                None,
            )
            .await?;
        if status != 200 {
            bail!("listing rooms answered {status}: {body}");
        }
        body["rooms"]
            .as_array()
            .and_then(|rooms| rooms.iter().find(|r| r["id"] == room))
            .and_then(|r| r["last_seq"].as_u64())
            .with_context(|| format!("room {room} is not among the user's rooms"))
    }

    /// One history page over HTTP; returns how many messages it held.
    pub async fn history(
        &self,
        base: &str,
        user: &User,
        room: &str,
        before: u64,
        limit: u64,
    ) -> anyhow::Result<usize> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                format!("{base}/api/v1/rooms/{room}/messages?before={before}&limit={limit}"),
                Some(&user.token),
                None,
            )
            .await?;
        if status != 200 {
            bail!("history answered {status}: {body}");
        }
        Ok(body["messages"].as_array().map_or(0, Vec::len))
    }
}
