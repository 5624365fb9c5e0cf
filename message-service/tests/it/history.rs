//! History paging exactly per PROTOCOL "History paging".

use chat_proto::ErrorCode;
use chat_proto::message::v1 as pb;

use crate::helpers::{Api, Db, Identity, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(history_pages_exactly, history_is_for_members_only);

async fn page(
    api: &mut Api,
    who: &Identity,
    room: &str,
    before: Option<i64>,
    after: Option<i64>,
    limit: u32,
) -> anyhow::Result<(Vec<i64>, bool)> {
    let reply = api.history(who, room, before, after, limit).await?;
    Ok((
        reply.messages.iter().map(|m| m.seq).collect(),
        reply.has_more,
    ))
}

fn seqs(range: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    range.collect()
}

async fn history_pages_exactly(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let alice = user("alice");
    let room = api.public_room(&alice, &[]).await?;
    assert_eq!(
        page(&mut api, &alice, &room.id, None, None, 0).await?,
        (vec![], false)
    );
    for i in 1..=120 {
        api.send_ok(&alice, &room.id, &format!("message {i}"))
            .await?;
    }
    let r = room.id.as_str();

    // Neither: the latest `limit`.
    assert_eq!(
        page(&mut api, &alice, r, None, None, 0).await?,
        (seqs(71..=120), true)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, None, 120).await?,
        (seqs(1..=120), false)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, None, 1000).await?,
        (seqs(1..=120), false)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, None, 119).await?,
        (seqs(2..=120), true)
    );

    // Before: the latest `limit` below it.
    assert_eq!(
        page(&mut api, &alice, r, Some(71), None, 50).await?,
        (seqs(21..=70), true)
    );
    assert_eq!(
        page(&mut api, &alice, r, Some(21), None, 50).await?,
        (seqs(1..=20), false)
    );
    assert_eq!(
        page(&mut api, &alice, r, Some(51), None, 50).await?,
        (seqs(1..=50), false)
    );
    assert_eq!(
        page(&mut api, &alice, r, Some(52), None, 50).await?,
        (seqs(2..=51), true)
    );
    assert_eq!(
        page(&mut api, &alice, r, Some(1), None, 50).await?,
        (vec![], false)
    );
    assert_eq!(
        page(&mut api, &alice, r, Some(500), None, 10).await?,
        (seqs(111..=120), true)
    );

    // After: the first `limit` above it.
    assert_eq!(
        page(&mut api, &alice, r, None, Some(0), 50).await?,
        (seqs(1..=50), true)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, Some(70), 50).await?,
        (seqs(71..=120), false)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, Some(69), 50).await?,
        (seqs(70..=119), true)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, Some(120), 50).await?,
        (vec![], false)
    );
    assert_eq!(
        page(&mut api, &alice, r, None, Some(-5), 3).await?,
        (seqs(1..=3), true)
    );

    // Paging backwards from the end visits every message once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let (mut batch, more) = page(&mut api, &alice, r, before, None, 33).await?;
        before = batch.first().copied();
        batch.extend(seen);
        seen = batch;
        if !more {
            break;
        }
    }
    assert_eq!(seen, seqs(1..=120));

    // Messages come whole.
    let reply = api.history(&alice, r, None, Some(4), 1).await?;
    assert_eq!(reply.messages[0].text, "message 5");
    assert_eq!(reply.messages[0].sender_name, "Alice");

    // Bad requests.
    assert_eq!(
        code(api.history(&alice, r, None, None, 1001).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.history(&alice, r, Some(5), Some(1), 10).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.history(&alice, "nope", None, None, 10).await),
        Some(ErrorCode::NotFound)
    );
    server.stop().await
}

async fn history_is_for_members_only(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let (alice, bob) = (user("alice"), user("bob"));
    let public = api.public_room(&alice, &[]).await?;
    let private = api
        .create_room(&alice, "private", pb::Visibility::Private)
        .await?;
    api.send_ok(&alice, &public.id, "hi").await?;
    // Public rooms included.
    assert_eq!(
        code(api.history(&bob, &public.id, None, None, 0).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.history(&bob, &private.id, None, None, 0).await),
        Some(ErrorCode::Forbidden)
    );
    api.join(&bob, &public.id).await?;
    assert_eq!(
        api.history(&bob, &public.id, None, None, 0)
            .await?
            .messages
            .len(),
        1
    );
    server.stop().await
}
