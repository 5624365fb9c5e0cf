//! Read receipts and unread counts.

use serde_json::json;

use crate::support::{Deployment, TestSystem};

async fn read_positions_move_forward_and_tell_the_room(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b1 = t.ws(&bob).await?;
    let mut b2 = t.ws(&bob).await?;
    for i in 1..=3 {
        a.request(json!({"type": "send", "room": room, "text": format!("m{i}"), "client_msg_id": i.to_string()})).await?;
    }
    let (_, rooms) = t.get("/rooms", Some(&alice.token)).await?;
    assert_eq!(
        (
            &rooms["rooms"][0]["last_read_seq"],
            &rooms["rooms"][0]["unread"]
        ),
        (&json!(3), &json!(0)),
        "own sends are read"
    );
    let (_, rooms) = t.get("/rooms", Some(&bob.token)).await?;
    assert_eq!(
        (
            &rooms["rooms"][0]["last_read_seq"],
            &rooms["rooms"][0]["unread"]
        ),
        (&json!(0), &json!(3))
    );

    let ack = b1
        .request(json!({"type": "read", "room": room, "seq": 2}))
        .await?;
    assert_eq!(ack, json!({"type": "ack", "ref": "r1", "last_read_seq": 2}));
    let expected = json!({"type": "read", "room": room, "user_id": bob.id, "seq": 2});
    assert_eq!(a.next_of("read").await?, expected);
    assert_eq!(
        b2.next_of("read").await?,
        expected,
        "the reader's other connections hear it"
    );
    b1.assert_no("read").await?;
    let (_, rooms) = t.get("/rooms", Some(&bob.token)).await?;
    assert_eq!(
        (
            &rooms["rooms"][0]["last_read_seq"],
            &rooms["rooms"][0]["unread"]
        ),
        (&json!(2), &json!(1))
    );

    let ack = b1
        .request(json!({"type": "read", "room": room, "seq": 1}))
        .await?;
    assert_eq!(ack["last_read_seq"], 2, "never backwards");
    a.assert_no("read").await?;
    let b3 = t.ws(&bob).await?;
    assert_eq!(
        b3.ready["rooms"][0],
        json!({"id": room, "last_seq": 3, "last_read_seq": 2, "unread": 1})
    );

    let mut eve_ws = t.ws(&t.register("eve").await?).await?;
    let error = eve_ws
        .request(json!({"type": "read", "room": room, "seq": 1}))
        .await?;
    assert_eq!(error["code"], "forbidden");
    a.assert_no("read").await?;
    Ok(())
}

crate::on_both_deployments!(read_positions_move_forward_and_tell_the_room,);
