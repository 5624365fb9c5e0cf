//! Entry points: the gRPC service, and the conversions it shares with the
//! events this service publishes.

pub(crate) mod convert;
pub(crate) mod grpc;
