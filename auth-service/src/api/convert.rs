//! Domain types to their protobuf form.

use chat_common::db::ms_to_datetime;
use chat_proto::auth::v1 as pb;

use crate::domain::User;

pub fn user_to_proto(user: User) -> pb::User {
    pb::User {
        created_at: Some(chat_proto::to_timestamp(ms_to_datetime(user.created_at_ms))),
        role: user.role.as_str().to_owned(),
        disabled: user.disabled,
        id: user.id,
        username: user.username.into_string(),
        display_name: user.display_name.into_string(),
    }
}
