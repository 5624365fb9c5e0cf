//! Entry points: the gRPC services, and the conversions they share with the
//! events this service publishes.

pub(crate) mod admin;
pub(crate) mod convert;
pub(crate) mod grpc;
