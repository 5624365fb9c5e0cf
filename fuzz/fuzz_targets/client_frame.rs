//! The WebSocket client frame decoder (`frames::decode`): whatever text a
//! client sends must give a frame or an `invalid_argument` error echoing
//! the client's `ref`, never a panic.

#![no_main]

use chat_gateway::api::frames::{ClientFrame, decode};
use chat_proto::ErrorCode;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The frame types of PROTOCOL.md "Client frames" the decoder accepts
/// (`auth` only before `ready`, so it is an error here).
const KNOWN: &[&str] = &[
    "send", "edit", "delete", "history", "resume", "typing", "read", "join", "leave", "presence",
    "ping",
];

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are valid UTF-8 (tungstenite checks it).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = decode(text);
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    };
    // The `ref` is echoed exactly when the text is an object carrying one.
    assert_eq!(
        decoded.reference,
        object.as_ref().and_then(|o| o.get("ref")).cloned()
    );
    let kind = object
        .as_ref()
        .and_then(|o| o.get("type"))
        .and_then(Value::as_str);
    assert_eq!(decoded.kind.as_deref(), kind);
    match decoded.frame {
        Err(error) => assert_eq!(error.code, ErrorCode::InvalidArgument, "{error:?}"),
        Ok(frame) => {
            assert!(kind.is_some_and(|k| KNOWN.contains(&k)), "{kind:?} decoded");
            if let ClientFrame::Presence(_) = frame {
                let ids = object
                    .as_ref()
                    .and_then(|o| o.get("user_ids"))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                assert!(ids <= 500, "a presence query of {ids} users passed");
            }
        }
    }
});
