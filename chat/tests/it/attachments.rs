//! Attachments: upload streamed to message-service, limit, download for
//! members only, `file` messages.

use serde_json::{Value, json};

use crate::support::{Deployment, TestSystem, User, str_of};

const CONTENT: &str = "hello attachment";
/// SHA-256 of [`CONTENT`].
const CONTENT_SHA256: &str = "7fa36b95d5c98859ed72b4787f3c28b29eaa103970786755c9711cbb19be631c";

async fn upload(
    t: &TestSystem,
    user: &User,
    room: &str,
    body: reqwest::Body,
) -> anyhow::Result<(u16, Value)> {
    let response = t
        .http
        .post(t.url(&format!(
            "/rooms/{room}/attachments?filename=hello%20world.txt"
        )))
        .bearer_auth(&user.token)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn an_uploaded_file_is_sent_and_downloaded_by_members_only(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let eve = t.register("eve").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;

    let (status, body) = upload(&t, &alice, &room, CONTENT.into()).await?;
    assert_eq!(status, 201, "{body}");
    let attachment = &body["attachment"];
    let id = str_of(&attachment["id"])?;
    assert_eq!(
        attachment,
        &json!({"id": id, "filename": "hello world.txt", "content_type": "text/plain", "size": 16, "sha256": CONTENT_SHA256})
    );

    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    let ack = a.request(json!({"type": "send", "room": room, "text": "", "client_msg_id": "f", "attachment_id": id})).await?;
    assert_eq!(ack["message"]["kind"], "file");
    assert_eq!(&ack["message"]["attachment"], attachment);
    assert_eq!(
        b.next_of("message").await?["message"]["attachment"]["id"],
        id.as_str()
    );

    let response = t
        .http
        .get(t.url(&format!("/attachments/{id}")))
        .bearer_auth(&bob.token)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename*=UTF-8''hello%20world.txt"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.text().await?, CONTENT);

    let (status, body) = t
        .get(&format!("/attachments/{id}"), Some(&eve.token))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = upload(&t, &eve, &room, CONTENT.into()).await?;
    assert_eq!(status, 403, "non-members cannot upload");
    let (status, _) = t
        .get(
            "/attachments/00000000-0000-0000-0000-000000000000",
            Some(&bob.token),
        )
        .await?;
    assert_eq!(status, 404);
    Ok(())
}

async fn uploads_over_the_limit_are_refused_with_413(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| o.gateway_limits.max_attachment_bytes = 1000)
        .await?;
    let alice = t.register("alice").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let (status, body) = upload(&t, &alice, &room, vec![7u8; 1001].into()).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );

    // Without a Content-Length the stream is cut off once it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..5).map(|_| Ok(vec![1u8; 300])).collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, body) = upload(&t, &alice, &room, streamed).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );

    let (status, body) = upload(&t, &alice, &room, vec![7u8; 1000].into()).await?;
    assert_eq!(
        (status, &body["attachment"]["size"]),
        (201, &json!(1000)),
        "exactly the limit is fine"
    );
    Ok(())
}

crate::on_both_deployments!(
    an_uploaded_file_is_sent_and_downloaded_by_members_only,
    uploads_over_the_limit_are_refused_with_413,
);
