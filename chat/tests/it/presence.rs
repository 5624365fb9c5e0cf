//! Presence: online while any connection is open, events to users who share
//! a room, the `presence` query frame.

use serde_json::json;

use crate::support::{Deployment, TestSystem};

async fn a_user_is_offline_only_when_the_last_connection_closes(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    // Carol shares no room with bob: she hears nothing of him.
    let mut c = t.ws(&carol).await?;

    let b1 = t.ws(&bob).await?;
    let online = a.next_of("presence").await?;
    assert_eq!(
        (&online["user_id"], &online["status"]),
        (&json!(bob.id), &json!("online"))
    );
    let b2 = t.ws(&bob).await?;
    b1.close().await?;
    a.assert_no("presence").await?;

    let query = a
        .request(json!({"type": "presence", "user_ids": [bob.id, carol.id]}))
        .await?;
    assert_eq!(query["users"][0]["status"], "online");
    assert_eq!(query["users"][1]["status"], "online");

    b2.close().await?;
    let offline = a.next_of("presence").await?;
    assert_eq!(
        (&offline["user_id"], &offline["status"]),
        (&json!(bob.id), &json!("offline"))
    );
    assert!(
        offline["last_seen"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    c.assert_no("presence").await?;

    let query = a
        .request(json!({"type": "presence", "user_ids": [bob.id]}))
        .await?;
    assert_eq!(query["type"], "presence");
    assert_eq!(query["users"][0]["status"], "offline");
    assert_eq!(query["users"][0]["last_seen"], offline["last_seen"]);
    Ok(())
}

crate::on_both_deployments!(a_user_is_offline_only_when_the_last_connection_closes,);
