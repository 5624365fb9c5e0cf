//! The WebSocket frames of PROTOCOL.md that the load generator sends and
//! reads. Server frames are parsed into a struct that names only the fields
//! used, which is cheaper than a full `serde_json::Value` per delivery.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio_tungstenite::tungstenite::Message;

use crate::net::Ws;

#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(rename = "ref", default, borrow)]
    pub reference: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub room: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub message: Option<FrameMessage<'a>>,
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// A `history` reply's page; only its length is used.
    #[serde(default)]
    pub messages: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
pub struct FrameMessage<'a> {
    #[serde(default)]
    pub seq: u64,
    #[serde(default, borrow)]
    pub text: Cow<'a, str>,
    #[serde(default, borrow)]
    pub room: Option<Cow<'a, str>>,
}

impl<'a> Frame<'a> {
    pub fn parse(text: &'a str) -> Option<Frame<'a>> {
        serde_json::from_str(text).ok()
    }

    /// The room of a `message` event: the frame's, else the message's.
    pub fn message_room(&self) -> Option<&str> {
        self.room
            .as_deref()
            .or_else(|| self.message.as_ref().and_then(|m| m.room.as_deref()))
    }
}

/// The `ready` frame's rooms: `(room id, last_seq)`.
pub type ReadyRooms = Vec<(String, u64)>;

/// Reads until the server's `ready` frame. A close before it (4001 for a
/// refused token) is an error naming the close code.
pub async fn read_ready(ws: &mut Ws, timeout: Duration) -> anyhow::Result<ReadyRooms> {
    let wait = async {
        while let Some(message) = ws.next().await {
            match message.context("reading the ready frame")? {
                Message::Text(text) => {
                    let value: serde_json::Value = match serde_json::from_str(text.as_str()) {
                        Ok(value) => value,
                        Err(_) => continue,
                    };
                    if value["type"] != "ready" {
                        continue;
                    }
                    let rooms = value["rooms"]
                        .as_array()
                        .map(|rooms| {
                            rooms
                                .iter()
                                .filter_map(|r| {
                                    Some((
                                        r["id"].as_str()?.to_owned(),
                                        r["last_seq"].as_u64().unwrap_or(0),
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(rooms);
                }
                Message::Close(frame) => {
                    let code = frame.map(|f| u16::from(f.code));
                    bail!("closed before ready (code {code:?})");
                }
                _ => {}
            }
        }
        bail!("connection ended before ready")
    };
    tokio::time::timeout(timeout, wait)
        .await
        .context("no ready frame in time")?
}

/// Wall-clock nanoseconds: the send time written into a message's text, so
/// that any process on the same machine can compute the delivery latency.
pub fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Builds `send` frames for one room from one sender, reusing the encoded
/// room id.
pub struct SendFrames {
    /// `{"type":"send","room":"<id>",`
    head: String,
    /// Run tag and sender index, the start of every text.
    text_prefix: String,
    padding: String,
}

impl SendFrames {
    pub fn new(room: &str, tag: &str, sender: usize, text_bytes: usize) -> SendFrames {
        let room = serde_json::Value::from(room).to_string();
        let text_prefix = format!("{tag}|{sender}|");
        // "<tag>|<sender>|<n>|<nanos>|" is about 40 bytes; pad to the
        // requested message size with characters that need no escaping.
        let padding = "x".repeat(text_bytes.saturating_sub(text_prefix.len() + 30));
        SendFrames {
            head: format!("{{\"type\":\"send\",\"room\":{room},"),
            text_prefix,
            padding,
        }
    }

    /// The `n`th message, stamped now; `ref` and `client_msg_id` are `n`.
    pub fn frame(&self, n: u64) -> String {
        format!(
            "{}\"ref\":\"{n}\",\"client_msg_id\":\"{n}\",\"text\":\"{}{n}|{}|{}\"}}",
            self.head,
            self.text_prefix,
            wall_nanos(),
            self.padding
        )
    }
}

/// The send time stamped into a text of this run (`tag`), if it is one.
pub fn sent_at(text: &str, tag: &str) -> Option<u64> {
    let rest = text.strip_prefix(tag)?.strip_prefix('|')?;
    let mut fields = rest.split('|');
    let _sender = fields.next()?;
    let _n = fields.next()?;
    fields.next()?.parse().ok()
}

/// The latency of a delivery stamped at `sent_nanos`, as seen now.
pub fn since(sent_nanos: u64) -> Duration {
    Duration::from_nanos(wall_nanos().saturating_sub(sent_nanos))
}

/// A fresh tag for the texts of one run, so that messages from earlier
/// runs (replayed by `resume`, say) are not counted.
pub fn new_tag() -> String {
    format!("lg{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_frame_carries_its_timestamp_back() -> anyhow::Result<()> {
        let frames = SendFrames::new("room\"1", "lgtag", 3, 100);
        let frame: serde_json::Value = serde_json::from_str(&frames.frame(7))?;
        assert_eq!(frame["room"], "room\"1");
        assert_eq!(frame["ref"], "7");
        let text = frame["text"].as_str().context("no text")?;
        assert!(
            text.len() >= 90,
            "padded to about the requested size: {text}"
        );
        let stamp = sent_at(text, "lgtag").context("no stamp")?;
        assert!(stamp > 0 && stamp <= wall_nanos());
        assert_eq!(sent_at(text, "other"), None);
        Ok(())
    }
}
