//! End-to-end tests of the embedded system, driven as a client would: a real
//! HTTP client and real WebSocket clients against the gateway on port 0.

mod accounts;
mod attachments;
mod bad_input;
mod browser;
mod cluster;
mod distributed;
mod dms;
mod edits;
mod faults;
mod messaging;
mod metrics;
mod moderation;
mod notifications;
mod operations;
mod presence;
mod properties;
mod receipts;
mod revocation;
mod rooms;
mod secrets;
mod support;
mod tls;
mod tokens;
mod tracing;
