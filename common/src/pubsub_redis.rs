//! The Redis backend of the pub/sub port.
