//! The one integration-test binary of presence-service: a real gRPC client
//! against `serve` on a port-0 listener with in-process buses, and the
//! contract suite of the store port, run against memory and Redis.

mod admin;
mod helpers;
mod notifications;
mod presence;
mod redis_store;
mod service;
mod store_contract;
