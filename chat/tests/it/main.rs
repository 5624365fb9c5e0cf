//! End-to-end tests of the embedded system, driven as a client would: a real
//! HTTP client and real WebSocket clients against the gateway on port 0.

mod accounts;
mod bad_input;
mod messaging;
mod operations;
mod presence;
mod rooms;
mod support;
