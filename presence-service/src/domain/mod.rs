//! Types and rules of presence and notifications, free of I/O.

mod ids;
mod notification;
mod presence;

pub use ids::{ConnectionId, GatewayId, InvalidId, RoomId, UserId};
pub use notification::{Notification, NotificationKind, recipients};
pub use presence::{Presence, Status};
