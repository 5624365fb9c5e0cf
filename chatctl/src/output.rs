//! What commands print: an aligned table for people, JSON for scripts, and
//! the JSON and table forms of the services' messages.

use std::fmt;

use chat_proto::auth::v1 as auth;
use chat_proto::events::v1 as ev;
use chat_proto::message::v1 as msg;
use chat_proto::presence::v1 as presence;
use serde_json::{Value, json};

/// Columns separated by two spaces, each as wide as its widest cell; the
/// last column is not padded, so no line ends in spaces.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A two-column FIELD/VALUE table of one object.
    pub fn fields(pairs: Vec<(&'static str, String)>) -> Table {
        let mut table = Table::new(&["FIELD", "VALUE"]);
        for (name, value) in pairs {
            table.row(vec![name.to_owned(), value]);
        }
        table
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let pad = widths.get(i).copied().unwrap_or(0);
                    line.push_str(&format!("{cell:<pad$}  "));
                } else {
                    line.push_str(cell);
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A value as JSON for `--json`, else as a table.
pub fn print(json: bool, value: Value, table: Table) {
    if json {
        out(format_args!("{value:#}\n"));
    } else {
        out(format_args!("{table}"));
    }
}

/// Writes to stdout. When the reader has gone (`chatctl ... | head`) the
/// program ends quietly with 0, as command-line tools killed by SIGPIPE do,
/// where `println!` would panic; any other write error is exit code 1.
pub fn out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("chatctl: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// RFC 3339 UTC to the second; empty when absent.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(chat_proto::from_timestamp)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn time_json(t: Option<&prost_types::Timestamp>) -> Value {
    match time(t) {
        s if s.is_empty() => Value::Null,
        s => Value::String(s),
    }
}

pub fn user_json(u: &auth::User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "role": u.role,
        "disabled": u.disabled,
        "created_at": time_json(u.created_at.as_ref()),
    })
}

pub const USER_COLUMNS: &[&str] = &[
    "ID",
    "USERNAME",
    "DISPLAY_NAME",
    "ROLE",
    "STATUS",
    "CREATED",
];

pub fn user_row(u: &auth::User) -> Vec<String> {
    vec![
        u.id.clone(),
        u.username.clone(),
        u.display_name.clone(),
        u.role.clone(),
        status(u).to_owned(),
        time(u.created_at.as_ref()),
    ]
}

fn status(u: &auth::User) -> &'static str {
    if u.disabled { "disabled" } else { "active" }
}

pub fn user_fields(u: &auth::User) -> Table {
    Table::fields(vec![
        ("id", u.id.clone()),
        ("username", u.username.clone()),
        ("display_name", u.display_name.clone()),
        ("role", u.role.clone()),
        ("status", status(u).to_owned()),
        ("created_at", time(u.created_at.as_ref())),
    ])
}

fn kind(room: &msg::Room) -> &'static str {
    match room.kind() {
        msg::RoomKind::Group => "group",
        msg::RoomKind::Dm => "dm",
        msg::RoomKind::Unspecified => "",
    }
}

fn visibility(room: &msg::Room) -> &'static str {
    match room.visibility() {
        msg::Visibility::Public => "public",
        msg::Visibility::Private => "private",
        msg::Visibility::Unspecified => "",
    }
}

pub fn room_json(summary: &msg::RoomSummary) -> Value {
    let room = summary.room.clone().unwrap_or_default();
    json!({
        "id": room.id,
        "name": room.name,
        "kind": kind(&room),
        "visibility": visibility(&room),
        "owner_id": room.owner_id,
        "created_at": time_json(room.created_at.as_ref()),
        "last_seq": room.last_seq,
        "member_count": summary.member_count,
    })
}

pub const ROOM_COLUMNS: &[&str] = &[
    "ID",
    "NAME",
    "KIND",
    "VISIBILITY",
    "MEMBERS",
    "LAST_SEQ",
    "OWNER",
    "CREATED",
];

pub fn room_row(summary: &msg::RoomSummary) -> Vec<String> {
    let room = summary.room.clone().unwrap_or_default();
    vec![
        room.id.clone(),
        room.name.clone(),
        kind(&room).to_owned(),
        visibility(&room).to_owned(),
        summary.member_count.to_string(),
        room.last_seq.to_string(),
        room.owner_id.clone(),
        time(room.created_at.as_ref()),
    ]
}

pub fn room_fields(summary: &msg::RoomSummary) -> Table {
    let room = summary.room.clone().unwrap_or_default();
    Table::fields(vec![
        ("id", room.id.clone()),
        ("name", room.name.clone()),
        ("kind", kind(&room).to_owned()),
        ("visibility", visibility(&room).to_owned()),
        ("members", summary.member_count.to_string()),
        ("last_seq", room.last_seq.to_string()),
        ("owner_id", room.owner_id.clone()),
        ("created_at", time(room.created_at.as_ref())),
    ])
}

fn room_role(m: &msg::Member) -> &'static str {
    match m.role() {
        msg::Role::Owner => "owner",
        msg::Role::Admin => "admin",
        msg::Role::Member => "member",
        msg::Role::Unspecified => "",
    }
}

fn muted(m: &msg::Member) -> String {
    if m.muted_forever {
        "forever".to_owned()
    } else if m.muted_until.is_some() {
        format!("until {}", time(m.muted_until.as_ref()))
    } else {
        "no".to_owned()
    }
}

pub fn member_json(m: &msg::Member) -> Value {
    json!({
        "user_id": m.user_id,
        "username": m.username,
        "role": room_role(m),
        "muted_until": time_json(m.muted_until.as_ref()),
        "muted_forever": m.muted_forever,
        "joined_at": time_json(m.joined_at.as_ref()),
    })
}

pub const MEMBER_COLUMNS: &[&str] = &["USER_ID", "USERNAME", "ROLE", "MUTED", "JOINED"];

pub fn member_row(m: &msg::Member) -> Vec<String> {
    vec![
        m.user_id.clone(),
        m.username.clone(),
        room_role(m).to_owned(),
        muted(m),
        time(m.joined_at.as_ref()),
    ]
}

pub fn message_json(m: &msg::Message) -> Value {
    let kind = match m.kind() {
        msg::MessageKind::Text => "text",
        msg::MessageKind::File => "file",
        msg::MessageKind::System => "system",
        msg::MessageKind::Unspecified => "",
    };
    json!({
        "id": m.id,
        "room": m.room,
        "seq": m.seq,
        "sender_id": m.sender_id,
        "sender_name": m.sender_name,
        "kind": kind,
        "text": m.text,
        "attachment": m.attachment.as_ref().map(|a| json!({
            "id": a.id,
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
        })),
        "reply_to": m.reply_to,
        "client_msg_id": m.client_msg_id,
        "created_at": time_json(m.created_at.as_ref()),
        "edited_at": time_json(m.edited_at.as_ref()),
        "deleted": m.deleted,
        "mentions": m.mentions,
    })
}

pub const MESSAGE_COLUMNS: &[&str] = &["SEQ", "TIME", "SENDER", "TEXT"];

/// The text as shown: a recalled message as "(deleted)", an edited one
/// marked, an attachment named; line breaks kept off the table.
fn shown_text(m: &msg::Message) -> String {
    if m.deleted {
        return "(deleted)".to_owned();
    }
    let mut text = m.text.replace('\n', " ");
    if let Some(attachment) = &m.attachment {
        text = format!("[file {}] {text}", attachment.filename)
            .trim_end()
            .to_owned();
    }
    if m.edited_at.is_some() {
        text.push_str(" (edited)");
    }
    text
}

pub fn message_row(m: &msg::Message) -> Vec<String> {
    vec![
        m.seq.to_string(),
        time(m.created_at.as_ref()),
        m.sender_name.clone(),
        shown_text(m),
    ]
}

/// A live room event as one JSON line.
pub fn event_json(event: &ev::RoomEvent) -> Value {
    use ev::room_event::Event;
    let room = &event.room;
    match &event.event {
        Some(Event::MessageCreated(m)) => {
            json!({"event": "message", "room": room, "message": message_json(m)})
        }
        Some(Event::MessageEdited(m)) => {
            json!({"event": "message_edited", "room": room, "message": message_json(m)})
        }
        Some(Event::MessageDeleted(d)) => {
            json!({"event": "message_deleted", "room": room, "seq": d.seq, "deleted_by": d.deleted_by})
        }
        Some(Event::MemberJoined(j)) => {
            json!({"event": "member_joined", "room": room, "user_id": j.user_id, "username": j.username})
        }
        Some(Event::MemberLeft(l)) => {
            json!({"event": "member_left", "room": room, "user_id": l.user_id, "reason": l.reason})
        }
        Some(Event::Typing(t)) => {
            json!({"event": "typing", "room": room, "user_id": t.user_id, "username": t.username})
        }
        Some(Event::Read(r)) => {
            json!({"event": "read", "room": room, "user_id": r.user_id, "seq": r.seq})
        }
        None => json!({"event": "unknown", "room": room}),
    }
}

/// A live room event as one line for people; `None` for the chatter
/// (typing, read positions) that only `--json` shows.
pub fn event_line(event: &ev::RoomEvent) -> Option<String> {
    use ev::room_event::Event;
    match event.event.as_ref()? {
        Event::MessageCreated(m) => Some(format!(
            "#{} {} {}: {}",
            m.seq,
            time(m.created_at.as_ref()),
            m.sender_name,
            shown_text(m)
        )),
        Event::MessageEdited(m) => Some(format!(
            "#{} edited by {}: {}",
            m.seq,
            m.sender_name,
            m.text.replace('\n', " ")
        )),
        Event::MessageDeleted(d) => Some(format!("#{} deleted by {}", d.seq, d.deleted_by)),
        Event::MemberJoined(j) => Some(format!("* {} ({}) joined", j.username, j.user_id)),
        Event::MemberLeft(l) => Some(format!("* {} left ({})", l.user_id, l.reason)),
        Event::Typing(_) | Event::Read(_) => None,
    }
}

pub fn notification_json(n: &presence::Notification) -> Value {
    json!({
        "id": n.id,
        "user_id": n.user_id,
        "kind": notification_kind(n),
        "room": n.room,
        "seq": n.seq,
        "from": n.from,
        "from_name": n.from_name,
        "created_at": time_json(n.created_at.as_ref()),
    })
}

fn notification_kind(n: &presence::Notification) -> &'static str {
    match n.kind() {
        presence::NotificationKind::Mention => "mention",
        presence::NotificationKind::Dm => "dm",
        presence::NotificationKind::Unspecified => "",
    }
}

pub const NOTIFICATION_COLUMNS: &[&str] = &["CREATED", "KIND", "ROOM", "SEQ", "FROM"];

pub fn notification_row(n: &presence::Notification) -> Vec<String> {
    vec![
        time(n.created_at.as_ref()),
        notification_kind(n).to_owned(),
        n.room.clone(),
        n.seq.to_string(),
        n.from_name.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["A", "LONGER", "C"]);
        table.row(vec!["wide cell".into(), "x".into(), "".into()]);
        table.row(vec!["y".into(), "z".into(), "last".into()]);
        assert_eq!(
            table.to_string(),
            "A          LONGER  C\nwide cell  x\ny          z       last\n"
        );
    }

    #[test]
    fn times_are_rfc3339_to_the_second() {
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 999_000_000,
        };
        assert_eq!(time(Some(&t)), "2023-11-14T22:13:20Z");
        assert_eq!(time(None), "");
    }
}
