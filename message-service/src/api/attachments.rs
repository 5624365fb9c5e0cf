//! Attachment upload (client-streaming) and download (server-streaming).

use bytes::Bytes;
use chat_common::identity::Identity;
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::{download_attachment_response, upload_attachment_request};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tonic::{Status, Streaming};

use super::{DownloadStream, convert, load_room, require_member};
use crate::domain::validate;
use crate::error::Error;
use crate::state::State;
use crate::store::AttachmentRecord;

/// Size of the chunks a download is sent in.
pub const CHUNK: usize = 64 * 1024;

#[tracing::instrument(skip_all, fields(user = %who.user_id, room = tracing::field::Empty))]
pub async fn upload(
    state: &State,
    who: &Identity,
    mut parts: Streaming<pb::UploadAttachmentRequest>,
) -> Result<pb::Attachment, Status> {
    let meta = match parts.message().await? {
        Some(pb::UploadAttachmentRequest {
            part: Some(upload_attachment_request::Part::Meta(meta)),
        }) => meta,
        _ => return Err(Error::invalid("the first part of an upload must be meta").into()),
    };
    tracing::Span::current().record("room", meta.room.as_str());
    let filename = validate::filename(&meta.filename)?;
    let content_type = validate::content_type(&meta.content_type)?;
    {
        // Checked, then released: the upload itself holds no connection.
        let mut tx = state.store.begin().await?;
        let room = load_room(tx.as_mut(), &meta.room).await?;
        require_member(tx.as_mut(), &room.id, &who.user_id).await?;
    }

    let limit = state.limits.max_attachment_bytes;
    let mut data: Vec<u8> = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(part) = parts.message().await? {
        match part.part {
            Some(upload_attachment_request::Part::Chunk(chunk)) => {
                let size = data.len() as u64 + chunk.len() as u64;
                if size > limit {
                    // Stop reading: the rest of the stream is not wanted.
                    return Err(Error::TooLarge(format!(
                        "attachments are limited to {limit} bytes"
                    ))
                    .into());
                }
                hasher.update(&chunk);
                data.extend_from_slice(&chunk);
            }
            Some(upload_attachment_request::Part::Meta(_)) => {
                return Err(Error::invalid("meta may only be the first part").into());
            }
            None => {}
        }
    }
    let record = AttachmentRecord {
        id: uuid::Uuid::now_v7().to_string(),
        room_id: meta.room,
        uploader_id: who.user_id.clone(),
        filename,
        content_type,
        size: i64::try_from(data.len())
            .map_err(|_| Error::TooLarge("attachment too large".into()))?,
        sha256: hex::encode(hasher.finalize()),
        created_at: state.clock.now_ms(),
    };
    state.attachments.save(&record, Bytes::from(data)).await?;
    tracing::info!(attachment = %record.id, size = record.size, "attachment stored");
    Ok(convert::attachment(&record))
}

#[tracing::instrument(skip_all, fields(user = %who.user_id, attachment = %req.attachment_id))]
pub async fn download(
    state: &State,
    who: &Identity,
    req: pb::DownloadAttachmentRequest,
) -> Result<DownloadStream, Error> {
    let meta = state
        .attachments
        .find(&req.attachment_id)
        .await?
        .ok_or_else(|| Error::not_found("attachment not found"))?;
    {
        let mut tx = state.store.begin().await?;
        require_member(tx.as_mut(), &meta.room_id, &who.user_id).await?;
    }
    let data = state
        .attachments
        .load(&meta.id)
        .await?
        .ok_or_else(|| Error::not_found("attachment not found"))?;
    let first = pb::DownloadAttachmentResponse {
        part: Some(download_attachment_response::Part::Attachment(
            convert::attachment(&meta),
        )),
    };
    let chunks = futures::stream::unfold(0usize, move |offset| {
        let data = data.clone();
        async move {
            if offset >= data.len() {
                return None;
            }
            let end = (offset + CHUNK).min(data.len());
            let part = pb::DownloadAttachmentResponse {
                part: Some(download_attachment_response::Part::Chunk(
                    data[offset..end].to_vec(),
                )),
            };
            Some((Ok(part), end))
        }
    });
    Ok(Box::pin(
        futures::stream::once(async { Ok(first) }).chain(chunks),
    ))
}
