//! Shared plumbing of the chat services. Holds no domain logic: shutdown,
//! telemetry and trace-context propagation, Prometheus metrics,
//! configuration helpers, gRPC serving with
//! health and reflection, internal-call identity, access tokens, the SQL
//! connection helper, and the pub/sub and event-bus ports with their
//! backends.

pub mod admin;
pub mod backends;
pub mod bus;
pub mod bus_rabbitmq;
pub mod config;
pub mod db;
pub mod error_chain;
pub mod grpc;
pub mod identity;
pub mod metrics;
pub mod namespace;
pub mod pubsub;
pub mod pubsub_redis;
pub mod shutdown;
pub mod telemetry;
pub mod token;
pub mod trace_context;

pub use backends::Backends;
pub use config::Secret;
pub use error_chain::ErrorChain;
pub use namespace::Namespace;
pub use shutdown::Shutdown;
