//! Background tasks of the service; each stops when shutdown is cancelled.

pub(crate) mod notifications;
pub(crate) mod sweeper;
