//! `chatctl rooms ...`.

use serde_json::json;

use crate::support::{TestSystem, assert_like};

#[tokio::test]
async fn rooms_are_created_listed_and_shown() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;

    let created = sys
        .run(&[
            "--json",
            "rooms",
            "create",
            "plans",
            "--visibility",
            "private",
            "--owner",
            "alice",
        ])
        .await?
        .json()?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let created_at = created["created_at"].clone();
    assert_eq!(
        created,
        json!({
            "id": id,
            "name": "plans",
            "kind": "group",
            "visibility": "private",
            "owner_id": alice.id,
            "created_at": created_at,
            "last_seq": 0,
            "member_count": 1,
        })
    );
    let mine = sys.room(&alice, "lobby", "public").await?;
    sys.send(&alice, &mine, "hi").await?;

    let listed = sys.run(&["rooms", "list"]).await?.ok()?;
    assert_like(
        &listed,
        &format!(
            "ID                                    NAME   KIND   VISIBILITY  MEMBERS  LAST_SEQ  OWNER                                 CREATED\n\
             {id}  plans  group  private     1        0         {owner}  *\n\
             {mine}  lobby  group  public      1        1         {owner}  *\n",
            owner = alice.id
        ),
    );

    let shown = sys.run(&["rooms", "show", &mine]).await?.ok()?;
    assert_like(
        &shown,
        &format!(
            "FIELD       VALUE\n\
             id          {mine}\n\
             name        lobby\n\
             kind        group\n\
             visibility  public\n\
             members     1\n\
             last_seq    1\n\
             owner_id    {}\n\
             created_at  *\n",
            alice.id
        ),
    );

    // Without --owner the admin owns the room.
    let own = sys
        .run(&["--json", "rooms", "create", "ops"])
        .await?
        .json()?;
    assert_eq!(
        (&own["owner_id"], &own["visibility"]),
        (&json!(sys.root.id), &json!("public"))
    );

    let missing = sys.run(&["rooms", "show", "no-such-room"]).await?;
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (
            Some(6),
            "chatctl: message-service refused the call: NOT_FOUND (not_found): room not found\n"
        )
    );
    Ok(())
}

#[tokio::test]
async fn members_are_added_listed_and_moderated() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let bob = sys.register("bob").await?;
    let room = sys.room(&alice, "club", "private").await?;

    let added = sys
        .run(&["rooms", "add-member", &room, "bob"])
        .await?
        .ok()?;
    assert_like(
        &added,
        &format!(
            "USER_ID                               USERNAME  ROLE    MUTED  JOINED\n\
             {}  bob       member  no     *\n",
            bob.id
        ),
    );
    let again = sys.run(&["rooms", "add-member", &room, &bob.id]).await?;
    assert_eq!(
        (again.code, again.stderr.as_str()),
        (
            Some(7),
            "chatctl: message-service refused the call: ALREADY_EXISTS (conflict): \
             the user is already a member\n"
        )
    );

    let muted = sys
        .run(&[
            "rooms",
            "moderate",
            &room,
            "mute",
            "bob",
            "--duration-s",
            "600",
        ])
        .await?
        .ok()?;
    assert_eq!(
        muted,
        format!(
            "FIELD     VALUE\n\
             room      {room}\n\
             action    mute\n\
             user      bob ({})\n\
             duration  600s\n",
            bob.id
        )
    );
    let members = sys
        .run(&["--json", "rooms", "members", &room])
        .await?
        .json()?;
    let rows: Vec<(String, String, bool, bool)> = members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["username"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["muted_until"].is_string(),
                m["muted_forever"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("alice".into(), "owner".into(), false, false),
            ("bob".into(), "member".into(), true, false),
        ]
    );

    let owner = sys
        .run(&["rooms", "moderate", &room, "kick", "alice"])
        .await?;
    assert_eq!(
        (owner.code, owner.stderr.as_str()),
        (
            Some(5),
            "chatctl: message-service refused the call: PERMISSION_DENIED (forbidden): \
             the owner cannot be moderated\n"
        )
    );
    let kicked = sys
        .run(&["--json", "rooms", "moderate", &room, "kick", "bob"])
        .await?
        .json()?;
    assert_eq!(
        kicked,
        json!({
            "room": room,
            "action": "kick",
            "user_id": bob.id,
            "username": "bob",
            "duration_s": null,
        })
    );
    let members = sys.run(&["rooms", "members", &room]).await?.ok()?;
    assert_like(
        &members,
        &format!(
            "USER_ID                               USERNAME  ROLE   MUTED  JOINED\n\
             {}  alice     owner  no     *\n",
            alice.id
        ),
    );
    let unknown = sys.run(&["rooms", "add-member", &room, "ghost"]).await?;
    assert_eq!(
        (unknown.code, unknown.stderr.as_str()),
        (
            Some(6),
            "chatctl: auth-service refused the call: NOT_FOUND (not_found): user not found\n"
        )
    );
    Ok(())
}
