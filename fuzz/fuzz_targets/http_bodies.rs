//! The JSON bodies (and the history query) of the HTTP API, against the
//! whole embedded system on loopback: the first byte picks the endpoint,
//! the rest is the body. Whatever the bytes, the answer is a success or a
//! protocol error with its matching status, never `internal` or a panic.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use chat_proto::ErrorCode;
use libfuzzer_sys::fuzz_target;
use reqwest::Method;
use serde_json::{Value, json};

/// (method, path, signed in) of each endpoint that reads a JSON body;
/// `{room}` is a room of the signed-in user.
const ENDPOINTS: &[(Method, &str, bool)] = &[
    (Method::POST, "/auth/register", false),
    (Method::POST, "/auth/login", false),
    (Method::POST, "/auth/refresh", false),
    (Method::POST, "/auth/logout", false),
    (Method::POST, "/auth/password", true),
    (Method::PATCH, "/me", true),
    (Method::POST, "/rooms", true),
    (Method::POST, "/rooms/{room}/members", true),
    (Method::POST, "/rooms/{room}/moderation", true),
    (Method::POST, "/dms", true),
    // The input is the query string here.
    (Method::GET, "/rooms/{room}/messages?", true),
];

struct Target {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: String,
    room: String,
    /// Keeps the system running.
    _system: chat::System,
    _dir: std::path::PathBuf,
}

async fn call(
    http: &reqwest::Client,
    request: reqwest::RequestBuilder,
) -> (u16, Value) {
    let response = http
        .execute(request.build().expect("a request"))
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("a body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"))
    };
    (status, value)
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("chat-fuzz-{}", std::process::id()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let (system, base, token, room) = runtime.block_on(async {
            let options = chat::Options::new("127.0.0.1:0", &dir);
            let system = chat::start(options, chat_common::Shutdown::new())
                .await
                .expect("the embedded system");
            let base = format!("http://{}/api/v1", system.addr);
            let (status, session) = call(
                &http,
                http.post(format!("{base}/auth/register"))
                    .json(&json!({"username": "fuzzer", "password": "correct horse"})),
            )
            .await;
            assert_eq!(status, 201, "{session}");
            let token = session["access_token"].as_str().expect("a token").to_owned();
            let (status, room) = call(
                &http,
                http.post(format!("{base}/rooms"))
                    .bearer_auth(&token)
                    .json(&json!({"name": "fuzz", "visibility": "public"})),
            )
            .await;
            assert_eq!(status, 201, "{room}");
            let room = room["room"]["id"].as_str().expect("a room").to_owned();
            (system, base, token, room)
        });
        Target {
            runtime,
            http,
            base,
            token,
            room,
            _system: system,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (method, path, signed_in) = &ENDPOINTS[usize::from(selector) % ENDPOINTS.len()];
    let target = target();
    let path = path.replace("{room}", &target.room);
    let mut request = if *method == Method::GET {
        // Only what a URL can carry reaches the handler.
        let Ok(query) = std::str::from_utf8(body) else {
            return;
        };
        let Ok(url) = reqwest::Url::parse(&format!("{}{path}{query}", target.base)) else {
            return;
        };
        target.http.request(method.clone(), url)
    } else {
        target
            .http
            .request(method.clone(), format!("{}{path}", target.base))
            .header("content-type", "application/json")
            .body(body.to_vec())
    };
    if *signed_in {
        request = request.bearer_auth(&target.token);
    }
    let (status, reply) = target.runtime.block_on(call(&target.http, request));
    if status < 400 {
        return;
    }
    let code = reply["error"]["code"]
        .as_str()
        .and_then(ErrorCode::parse)
        .unwrap_or_else(|| panic!("{status}: not a protocol error: {reply}"));
    assert_ne!(code, ErrorCode::Internal, "{status}: {reply}");
    assert_eq!(code.http_status(), status, "{reply}");
});
