//! The web client in a real browser: two headless Chromium instances, each
//! with its own fresh profile, driven over WebDriver (chromedriver) as two
//! people who register, meet in a room, talk, send files, and live through
//! a gateway restart.
//!
//! The WebDriver client is the few JSON-over-HTTP calls below, on the
//! `reqwest` client the other tests use: the `fantoccini` crate would bring
//! a second `http` crate and an ICU stack into the tree for the same calls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use serde_json::{Value, json};

use crate::support::{Deployment, TestSystem, User, str_of};

/// How long the browser gets to show something (two Chromiums and the
/// system share a small machine).
const PATIENCE: Duration = Duration::from_secs(20);
/// W3C WebDriver's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";
const PASSWORD: &str = "correct horse";
const XSS: &str = "<img src=x onerror=alert(1)>";
/// Messages of the room that needs scrolling back: more than a page (50).
const ARCHIVED: i64 = 60;

/// Another client fills a room with more than the 40-frame burst the rate
/// limit allows; the browsers are not what that limit is about.
fn unlimited(options: &mut chat::Options) {
    options.gateway_limits.frames_per_second = 10_000;
    options.gateway_limits.frame_burst = 10_000;
}

#[tokio::test]
async fn two_people_chat_in_real_browsers() -> anyhow::Result<()> {
    let Some(tools) = browser_tools()? else {
        return Ok(());
    };
    for name in ["alice", "bob"] {
        // A failure screenshot of an earlier run would mislead.
        let _ = std::fs::remove_file(screenshot_dir().join(format!("{name}-failure.png")));
    }
    let driver = ChromeDriver::start(&tools).await?;
    let t = TestSystem::start_with(Deployment::Embedded, unlimited).await?;
    let alice = driver.session("alice", (1280, 800)).await?;
    // Bob is on a phone-sized window: the responsive layout gets used too.
    let bob = driver.session("bob", (412, 860)).await?;

    let outcome = scenario(t, &alice, &bob).await;
    if outcome.is_err() {
        for page in [&alice, &bob] {
            let path = screenshot_dir().join(format!("{}-failure.png", page.name));
            if page.screenshot(&path).await.is_ok() {
                eprintln!("screenshot of {} at failure: {}", page.name, path.display());
            }
        }
        eprintln!("chromedriver log: {}", driver.log.display());
    }
    alice.quit().await;
    bob.quit().await;
    drop(driver);
    outcome?.stop().await?;
    Ok(())
}

async fn scenario(t: TestSystem, alice: &Page, bob: &Page) -> anyhow::Result<TestSystem> {
    let addr = t.system()?.addr;
    let site = format!("http://{addr}/");

    // Both sign up through the page, and its WebSocket passes the gateway's
    // same-origin check (a refused socket never gets to "online").
    for page in [alice, bob] {
        page.goto(&site).await?;
        page.js(
            "window.__violations = [];
             document.addEventListener('securitypolicyviolation',
                 (e) => window.__violations.push(e.violatedDirective));",
            json!([]),
        )
        .await?;
        page.type_into("#auth-username", page.name).await?;
        page.type_into("#auth-password", PASSWORD).await?;
        page.click("#register-button").await?;
        wait_online(page).await?;
    }

    // Alice creates a public room; Bob finds it and joins from his phone.
    alice.click("#create-room summary").await?;
    alice.type_into("#new-room-name", "lobby").await?;
    alice.click("#create-room-form button[type=submit]").await?;
    wait_title(alice, "lobby").await?;
    bob.click("#toggle-sidebar").await?;
    bob.click("#browse summary").await?;
    bob.wait(
        "lobby listed",
        "return document.querySelector('#public-list button[aria-label=\"Join lobby\"]') !== null",
        json!([]),
    )
    .await?;
    bob.click("#public-list button[aria-label=\"Join lobby\"]")
        .await?;
    wait_title(bob, "lobby").await?;

    // Messages both ways, one of them corrected.
    send(alice, "helo bob").await?;
    wait_text(bob, "helo bob").await?;
    let seq = seq_of(alice, "helo bob").await?;
    alice
        .click(&format!("#message-list li[data-seq=\"{seq}\"] button.edit"))
        .await?;
    alice.clear("#composer-input").await?;
    send(alice, "hello bob").await?;
    bob.wait(
        "the corrected message",
        "const li = document.querySelector(`#message-list li[data-seq=\"${arguments[0]}\"]`);
         return li?.querySelector('.msg-text').textContent === 'hello bob'
             && li.querySelector('.edited') !== null",
        json!([seq]),
    )
    .await?;
    send(bob, "hi alice").await?;
    wait_text(alice, "hi alice").await?;

    // Typing and presence.
    bob.type_into("#composer-input", "I am writing").await?;
    alice
        .wait(
            "bob is typing",
            "return document.querySelector('#typing').textContent.includes('bob is typing')",
            json!([]),
        )
        .await?;
    bob.clear("#composer-input").await?;
    for (page, other) in [(alice, "bob"), (bob, "alice")] {
        page.wait(
            &format!("{other} shown online"),
            "return document.querySelector(
                 `#member-list li[data-username=\"${arguments[0]}\"] .dot[data-status=\"online\"]`) !== null",
            json!([other]),
        )
        .await?;
    }

    // Alice recalls a message: it disappears from Bob's screen.
    send(alice, "this one I take back").await?;
    wait_text(bob, "this one I take back").await?;
    let seq = seq_of(alice, "this one I take back").await?;
    alice
        .click(&format!(
            "#message-list li[data-seq=\"{seq}\"] button.recall"
        ))
        .await?;
    bob.wait(
        "the recalled message gone",
        "const li = document.querySelector(`#message-list li[data-seq=\"${arguments[0]}\"]`);
         return li !== null && li.classList.contains('deleted')
             && !li.textContent.includes('this one I take back')",
        json!([seq]),
    )
    .await?;

    // Markup in a message is text: shown literally, never an element, and
    // nothing runs.
    send(alice, XSS).await?;
    for page in [alice, bob] {
        wait_text(page, XSS).await?;
        let images = page
            .js(
                "return document.querySelectorAll('#message-list img').length",
                json!([]),
            )
            .await?;
        ensure!(images == 0, "{}: markup became an element", page.name);
        ensure!(
            page.dialog().await?.is_none(),
            "{}: a dialog opened",
            page.name
        );
    }

    // Bob has the page open, so he has read it: Alice sees that.
    let seq = seq_of(alice, XSS).await?;
    alice
        .wait(
            "a read receipt from bob",
            "return document.querySelector(`#message-list li[data-seq=\"${arguments[0]}\"] .receipts`)
                 ?.textContent === 'Seen by bob'",
            json!([seq]),
        )
        .await?;

    // Files: an image shows inline for Bob; a text file downloads.
    let files = tempfile::tempdir()?;
    let picture = files.path().join("picture.png");
    alice.screenshot(&picture).await?;
    let notes = files.path().join("notes.txt");
    let notes_body = "minutes of the meeting\n";
    std::fs::write(&notes, notes_body)?;
    for file in [&picture, &notes] {
        alice
            .type_into("#file-input", &file.display().to_string())
            .await?;
    }
    for page in [alice, bob] {
        page.wait(
            "the picture shown",
            "const img = document.querySelector('#message-list img.thumb[alt=\"picture.png\"]');
             return img !== null && img.complete && img.naturalWidth > 0",
            json!([]),
        )
        .await?;
    }
    let attachment = bob
        .wait(
            "the notes listed",
            "const b = [...document.querySelectorAll('#message-list button.download')]
                 .find((b) => b.textContent.includes('notes.txt'));
             return b ? b.dataset.attachment : null",
            json!([]),
        )
        .await?;
    let attachment = attachment.as_str().context("attachment id")?;
    bob.click(&format!(
        "button.download[data-attachment=\"{attachment}\"]"
    ))
    .await?;
    let downloaded = bob.downloads.path().join("notes.txt");
    eventually("the notes downloaded", || {
        std::fs::read_to_string(&downloaded).is_ok_and(|body| body == notes_body)
    })
    .await?;

    // Unread counts and scroll-back: Bob, from another client, fills a
    // room with more than a page of history while Alice looks at the lobby.
    let alice_api = login(&t, "alice").await?;
    let bob_api = login(&t, "bob").await?;
    let archive = t.room(&alice_api, "archive", "public").await?;
    t.join(&bob_api, &archive).await?;
    let mut ws = t.ws(&bob_api).await?;
    for i in 1..=ARCHIVED {
        let ack = ws
            .request(
                json!({"type": "send", "room": archive, "text": format!("archived {i}"),
                "client_msg_id": format!("archived-{i}")}),
            )
            .await?;
        ensure!(ack["type"] == "ack", "seeding the archive: {ack}");
    }
    ws.close().await?;
    let archive_button = format!("#room-list button[data-room=\"{archive}\"]");
    alice
        .wait(
            "the archive's unread count",
            "return document.querySelector(`${arguments[0]} .badge`)?.textContent === arguments[1]",
            json!([archive_button, ARCHIVED.to_string()]),
        )
        .await?;
    alice.click(&archive_button).await?;
    wait_text(alice, &format!("archived {ARCHIVED}")).await?;
    // Scrolling to the top brings the older page.
    alice
        .js(
            "document.querySelector('#scroller').scrollTop = 0",
            json!([]),
        )
        .await?;
    wait_text(alice, "archived 1").await?;
    let seqs = alice
        .js(
            "return [...document.querySelectorAll('#message-list li.msg[data-seq]')]
                 .map((li) => Number(li.dataset.seq))",
            json!([]),
        )
        .await?;
    ensure!(
        seqs == json!((1..=ARCHIVED).collect::<Vec<_>>()),
        "archive seqs on screen: {seqs}"
    );
    let lobby = alice
        .js(
            "return [...document.querySelectorAll('#room-list button.room-button')]
                 .find((b) => b.querySelector('.room-name').textContent === 'lobby').dataset.room",
            json!([]),
        )
        .await?;
    let lobby = lobby.as_str().context("lobby id")?;
    alice
        .click(&format!("#room-list button[data-room=\"{lobby}\"]"))
        .await?;
    wait_title(alice, "lobby").await?;
    alice
        .wait(
            "the archive read",
            "return document.querySelector(`${arguments[0]} .badge`) === null",
            json!([archive_button]),
        )
        .await?;

    // The gateway restarts on the same address and data; meanwhile Alice
    // writes a message that waits for the connection.
    let dir = t.stop().await?;
    for page in [alice, bob] {
        page.wait(
            "the disconnect shown",
            "return document.querySelector('#conn-state').dataset.state !== 'online'",
            json!([]),
        )
        .await?;
    }
    send(alice, "written while offline").await?;
    alice
        .wait(
            "the send pending",
            "return document.querySelector('#message-list li.pending') !== null",
            json!([]),
        )
        .await?;
    let t = TestSystem::start_in(dir, |options| {
        unlimited(options);
        options.listen = addr.to_string();
    })
    .await?;
    for page in [alice, bob] {
        wait_online(page).await?;
    }
    wait_text(bob, "written while offline").await?;
    let seq = seq_of(bob, "written while offline").await?;
    bob.click(&format!(
        "#message-list li[data-seq=\"{seq}\"] button.reply"
    ))
    .await?;
    send(bob, "welcome back").await?;
    alice
        .wait(
            "the reply",
            "return [...document.querySelectorAll('#message-list li.msg[data-seq]')].some((li) =>
                 li.querySelector('.msg-text')?.textContent === 'welcome back'
                 && li.querySelector('.quote')?.textContent === '↪ alice: written while offline')",
            json!([]),
        )
        .await?;

    // Each page shows every message once, in order, and nothing pending.
    let expected = [
        "hello bob",
        "hi alice",
        XSS,
        "written while offline",
        "welcome back",
    ];
    for page in [alice, bob] {
        let shown = page
            .js(
                "return [...document.querySelectorAll('#message-list li.msg')].map((li) => ({
                     seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
                     text: li.querySelector('.msg-text')?.textContent ?? '',
                     pending: li.classList.contains('pending'),
                 }))",
                json!([]),
            )
            .await?;
        let shown = shown.as_array().context("message list")?;
        let seqs: Vec<Option<i64>> = shown.iter().map(|m| m["seq"].as_i64()).collect();
        let all: Vec<Option<i64>> = (1..=8).map(Some).collect();
        ensure!(seqs == all, "{}: seqs on screen {seqs:?}", page.name);
        for text in expected {
            let count = shown.iter().filter(|m| m["text"] == text).count();
            ensure!(count == 1, "{}: {text:?} shown {count} times", page.name);
        }
        let violations = page.js("return window.__violations", json!([])).await?;
        ensure!(
            violations == json!([]),
            "{}: Content-Security-Policy violations {violations}",
            page.name
        );
    }

    // Something to look at: the final state of both pages.
    let shots = screenshot_dir();
    for page in [alice, bob] {
        let path = shots.join(format!("{}.png", page.name));
        page.screenshot(&path).await?;
        eprintln!("screenshot of {}: {}", page.name, path.display());
    }
    Ok(t)
}

/// A client of the API besides the page, signed in as `username`.
async fn login(t: &TestSystem, username: &str) -> anyhow::Result<User> {
    let (status, body) = t
        .post(
            "/auth/login",
            None,
            json!({"username": username, "password": PASSWORD}),
        )
        .await?;
    ensure!(status == 200, "login {username}: {status} {body}");
    Ok(User {
        id: str_of(&body["user"]["id"])?,
        token: str_of(&body["access_token"])?,
        refresh: str_of(&body["refresh_token"])?,
    })
}

async fn wait_online(page: &Page) -> anyhow::Result<()> {
    page.wait(
        "connected",
        "return document.querySelector('#conn-state').dataset.state === 'online'",
        json!([]),
    )
    .await
    .map(drop)
}

async fn wait_title(page: &Page, title: &str) -> anyhow::Result<()> {
    page.wait(
        &format!("room {title} open"),
        "return document.querySelector('#room-title').textContent === arguments[0]",
        json!([title]),
    )
    .await
    .map(drop)
}

async fn wait_text(page: &Page, text: &str) -> anyhow::Result<()> {
    page.wait(
        &format!("message {text:?}"),
        "return [...document.querySelectorAll('#message-list li.msg[data-seq] .msg-text')]
             .some((p) => p.textContent === arguments[0])",
        json!([text]),
    )
    .await
    .map(drop)
}

/// Types a message and presses Enter, as a person does.
async fn send(page: &Page, text: &str) -> anyhow::Result<()> {
    page.type_into("#composer-input", &format!("{text}{ENTER}"))
        .await
}

async fn seq_of(page: &Page, text: &str) -> anyhow::Result<i64> {
    page.wait(
        &format!("seq of {text:?}"),
        "const li = [...document.querySelectorAll('#message-list li.msg[data-seq]')]
             .find((li) => li.querySelector('.msg-text')?.textContent === arguments[0]);
         return li ? Number(li.dataset.seq) : null",
        json!([text]),
    )
    .await?
    .as_i64()
    .context("seq")
}

async fn eventually(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots")
}

/// Chromium and its WebDriver, from Debian's `chromium` and
/// `chromium-driver`.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The tools, or `None` (after a loud SKIP) when they are not installed;
/// with `CI` set their absence is a failure.
fn browser_tools() -> anyhow::Result<Option<Tools>> {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = find_program(&["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Ok(Some(Tools {
            chromium,
            chromedriver,
        })),
        _ if std::env::var_os("CI").is_some() => {
            bail!(
                "chromium and chromedriver are not installed; .ci/run installs them (apt-get install chromium chromium-driver)"
            )
        }
        _ => {
            eprintln!(
                "SKIP two_people_chat_in_real_browsers: chromium or chromedriver not installed (apt-get install chromium chromium-driver; set CI=1 to make this a failure)"
            );
            Ok(None)
        }
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A chromedriver on a free loopback port. It runs in a process group of
/// its own, so dropping it ends it and every Chromium it started, even
/// when a test fails half-way.
struct ChromeDriver {
    child: Child,
    url: String,
    chromium: PathBuf,
    http: reqwest::Client,
    log: PathBuf,
}

impl ChromeDriver {
    async fn start(tools: &Tools) -> anyhow::Result<ChromeDriver> {
        use std::os::unix::process::CommandExt;

        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Beside the screenshots, so it outlives a failed run.
        std::fs::create_dir_all(screenshot_dir())?;
        let log = screenshot_dir().join("chromedriver.log");
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", tools.chromedriver.display()))?;
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium: tools.chromium.clone(),
            // Starting a browser can take a while on a busy machine.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            log,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(driver);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chromedriver did not become ready on {}", driver.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new browser with a fresh profile of its own, and a download
    /// directory to look in.
    async fn session(&self, name: &'static str, size: (u32, u32)) -> anyhow::Result<Page> {
        let profile = tempfile::tempdir()?;
        let downloads = tempfile::tempdir()?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Leave dialogs open, so the test sees any that appears.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--no-default-browser-check",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", size.0, size.1),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let response = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await?;
        let body: Value = response.json().await?;
        let id = body["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("new session for {name}: {body}"))?;
        Ok(Page {
            name,
            url: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
            downloads,
            _profile: profile,
        })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); the group
        // holds only what this test started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window, driven over WebDriver.
struct Page {
    name: &'static str,
    /// `<chromedriver>/session/<id>`.
    url: String,
    http: reqwest::Client,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Page {
    /// One WebDriver command; its `value`, or the WebDriver error.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let mut body: Value = response.json().await?;
        let value = body["value"].take();
        if !status.is_success() {
            bail!(
                "{}: {path}: {} {}",
                self.name,
                value["error"],
                value["message"]
            );
        }
        Ok(value)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({"url": url})).await.map(drop)
    }

    async fn find(&self, css: &str) -> anyhow::Result<String> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no element reference for {css}"))
    }

    /// Clicks like a person: the element must be visible and on top.
    async fn click(&self, css: &str) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            let element = self.find(css).await?;
            match self
                .post(&format!("/element/{element}/click"), json!({}))
                .await
            {
                // Replaced by a re-render between finding and clicking:
                // find it again, as a person's next look would.
                Err(e) if tries < 3 && e.to_string().contains("stale element") => tries += 1,
                result => return result.map(drop),
            }
        }
    }

    /// Types into an element with real key events (or, for a file input,
    /// chooses that file).
    async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await
            .map(drop)
    }

    async fn clear(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await
            .map(drop)
    }

    /// Runs a function body in the page and returns what it returns.
    async fn js(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Polls `script` until it returns something other than false or null.
    async fn wait(&self, what: &str, script: &str, args: Value) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.js(script, args.clone()).await?;
            if value != Value::Bool(false) && !value.is_null() {
                return Ok(value);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{}: timed out waiting for {what}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of an open alert, confirm or prompt dialog, if any.
    async fn dialog(&self) -> anyhow::Result<Option<String>> {
        let response = self
            .http
            .get(format!("{}/alert/text", self.url))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status.is_success() {
            return Ok(Some(body["value"].as_str().unwrap_or_default().to_owned()));
        }
        ensure!(
            body["value"]["error"] == "no such alert",
            "{}: asking for a dialog: {body}",
            self.name
        );
        Ok(None)
    }

    async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("screenshot data")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Closes the browser (best effort: the driver's drop kills it anyway).
    async fn quit(&self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }
}
