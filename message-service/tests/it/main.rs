//! Integration tests: the service started on port 0 with a fresh database,
//! driven by the generated gRPC client the way the gateway calls it.
//! Tests named `*::sqlite` and `*::postgres` run the same body against each
//! SQL backend.

mod helpers;

mod admin;
mod attachments;
mod direct;
mod edit_delete;
mod history;
mod metrics;
mod moderation;
mod outbox;
mod reads;
mod rooms;
mod send;
mod service;
