//! UploadAttachment and DownloadAttachment, and file messages.

use chat_proto::ErrorCode;
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::{download_attachment_response, upload_attachment_request};
use sha2::{Digest, Sha256};

use crate::helpers::{Client, Db, Identity, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(upload_download_and_send, upload_limits_and_rules);

fn meta(room: &str, filename: &str, content_type: &str) -> pb::UploadAttachmentRequest {
    pb::UploadAttachmentRequest {
        part: Some(upload_attachment_request::Part::Meta(
            upload_attachment_request::Meta {
                room: room.to_owned(),
                filename: filename.to_owned(),
                content_type: content_type.to_owned(),
            },
        )),
    }
}

fn chunk(bytes: &[u8]) -> pb::UploadAttachmentRequest {
    pb::UploadAttachmentRequest {
        part: Some(upload_attachment_request::Part::Chunk(bytes.to_vec())),
    }
}

async fn upload(
    client: &mut Client,
    who: &Identity,
    parts: Vec<pb::UploadAttachmentRequest>,
) -> Result<pb::Attachment, tonic::Status> {
    let request = who.request(tokio_stream::iter(parts));
    Ok(client.upload_attachment(request).await?.into_inner())
}

async fn download(
    client: &mut Client,
    who: &Identity,
    id: &str,
) -> Result<(pb::Attachment, Vec<usize>, Vec<u8>), tonic::Status> {
    let request = pb::DownloadAttachmentRequest {
        attachment_id: id.to_owned(),
    };
    let mut stream = client
        .download_attachment(who.request(request))
        .await?
        .into_inner();
    let mut attachment = None;
    let mut sizes = Vec::new();
    let mut bytes = Vec::new();
    while let Some(part) = stream.message().await? {
        match part.part {
            Some(download_attachment_response::Part::Attachment(a))
                if attachment.is_none() && sizes.is_empty() =>
            {
                attachment = Some(a)
            }
            Some(download_attachment_response::Part::Chunk(c)) if attachment.is_some() => {
                sizes.push(c.len());
                bytes.extend(c);
            }
            other => {
                return Err(tonic::Status::internal(format!(
                    "unexpected part {other:?}"
                )));
            }
        }
    }
    let attachment = attachment.ok_or_else(|| tonic::Status::internal("no attachment part"))?;
    Ok((attachment, sizes, bytes))
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn upload_download_and_send(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let mut client = server.client()?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let room = api.public_room(&alice, &[&bob]).await?;

    let data = sample(100_000);
    let parts = vec![
        meta(&room.id, "report.pdf", "application/pdf"),
        chunk(&data[..40_000]),
        chunk(&data[40_000..80_000]),
        chunk(&data[80_000..]),
    ];
    let attachment = upload(&mut client, &alice, parts).await?;
    assert_eq!(attachment.size, 100_000);
    assert_eq!(attachment.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(attachment.filename, "report.pdf");
    assert_eq!(attachment.content_type, "application/pdf");
    assert_eq!(attachment.room, room.id);
    assert_eq!(attachment.uploader_id, "u-alice");
    assert!(attachment.created_at.is_some() && !attachment.id.is_empty());

    // Any member downloads the same bytes, in 64 KiB chunks.
    let (meta_back, sizes, bytes) = download(&mut client, &bob, &attachment.id).await?;
    assert_eq!(meta_back, attachment);
    assert_eq!(sizes, [65_536, 100_000 - 65_536]);
    assert_eq!(bytes, data);
    assert_eq!(
        code(download(&mut client, &carol, &attachment.id).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(download(&mut client, &bob, "nope").await),
        Some(ErrorCode::NotFound)
    );

    // A file message: empty text allowed, attachment filled.
    let mut request = crate::helpers::send_request(&room.id, "", "f1");
    request.attachment_id = Some(attachment.id.clone());
    let sent = api
        .client
        .send_message(alice.request(request))
        .await?
        .into_inner();
    let message = sent.message.ok_or_else(|| anyhow::anyhow!("no message"))?;
    assert_eq!(message.kind, pb::MessageKind::File as i32);
    assert_eq!(message.attachment.as_ref(), Some(&attachment));
    let history = api.history(&bob, &room.id, None, None, 0).await?;
    assert_eq!(history.messages, [message]);

    // Only the uploader's attachments of this room.
    let mut request = crate::helpers::send_request(&room.id, "mine now", "f2");
    request.attachment_id = Some(attachment.id.clone());
    assert_eq!(
        code(api.client.send_message(bob.request(request)).await),
        Some(ErrorCode::InvalidArgument)
    );
    let other = api
        .create_room(&alice, "other", pb::Visibility::Public)
        .await?;
    let mut request = crate::helpers::send_request(&other.id, "elsewhere", "f3");
    request.attachment_id = Some(attachment.id.clone());
    assert_eq!(
        code(api.client.send_message(alice.request(request)).await),
        Some(ErrorCode::InvalidArgument)
    );
    let mut request = crate::helpers::send_request(&room.id, "", "f4");
    request.attachment_id = Some("nope".into());
    assert_eq!(
        code(api.client.send_message(alice.request(request)).await),
        Some(ErrorCode::InvalidArgument)
    );

    // Deleting the message detaches the attachment.
    let delete = pb::DeleteMessageRequest {
        room: room.id.clone(),
        seq: 1,
    };
    let tombstone = api
        .client
        .delete_message(alice.request(delete))
        .await?
        .into_inner();
    assert!(tombstone.deleted && tombstone.attachment.is_none());

    // Content type defaults; an empty file is a file.
    let empty = upload(&mut client, &bob, vec![meta(&room.id, "empty.bin", "")]).await?;
    assert_eq!(
        (empty.size, empty.content_type.as_str()),
        (0, "application/octet-stream")
    );
    assert_eq!(empty.sha256, hex::encode(Sha256::digest(b"")));
    let (_, sizes, bytes) = download(&mut client, &alice, &empty.id).await?;
    assert!(sizes.is_empty() && bytes.is_empty());
    server.stop().await
}

async fn upload_limits_and_rules(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start_with(db, |c| c.max_attachment_bytes = 1_000).await?;
    let mut api = server.api().await?;
    let mut client = server.client()?;
    let [alice, carol] = ["alice", "carol"].map(user);
    let room = api.public_room(&alice, &[]).await?;
    let data = sample(1_500);

    let parts = vec![
        meta(&room.id, "big", ""),
        chunk(&data[..500]),
        chunk(&data[500..1000]),
        chunk(&data[1000..]),
    ];
    assert_eq!(
        code(upload(&mut client, &alice, parts).await),
        Some(ErrorCode::TooLarge)
    );
    // Exactly the limit is fine.
    let parts = vec![
        meta(&room.id, "fits", ""),
        chunk(&data[..600]),
        chunk(&data[600..1000]),
    ];
    assert_eq!(upload(&mut client, &alice, parts).await?.size, 1_000);

    // The first part must be meta; meta comes once.
    assert_eq!(
        code(upload(&mut client, &alice, vec![chunk(b"x")]).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(upload(&mut client, &alice, vec![]).await),
        Some(ErrorCode::InvalidArgument)
    );
    let twice = vec![meta(&room.id, "a", ""), meta(&room.id, "b", "")];
    assert_eq!(
        code(upload(&mut client, &alice, twice).await),
        Some(ErrorCode::InvalidArgument)
    );
    // File names.
    for bad in ["", "a/b", "a\0b", &"f".repeat(256)] {
        let parts = vec![meta(&room.id, bad, ""), chunk(b"x")];
        assert_eq!(
            code(upload(&mut client, &alice, parts).await),
            Some(ErrorCode::InvalidArgument),
            "{bad:?}"
        );
    }
    // Members only.
    let parts = vec![meta(&room.id, "a", ""), chunk(b"x")];
    assert_eq!(
        code(upload(&mut client, &carol, parts).await),
        Some(ErrorCode::Forbidden)
    );
    let parts = vec![meta("nope", "a", ""), chunk(b"x")];
    assert_eq!(
        code(upload(&mut client, &alice, parts).await),
        Some(ErrorCode::NotFound)
    );
    server.stop().await
}
