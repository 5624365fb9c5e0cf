//! Generated gRPC code for the chat services, conversions between protobuf
//! timestamps and `chrono`, and the one mapping between the protocol's error
//! codes and gRPC status codes.

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("chat.auth.v1");
    }
}

pub mod message {
    pub mod v1 {
        tonic::include_proto!("chat.message.v1");
    }
}

pub mod presence {
    pub mod v1 {
        tonic::include_proto!("chat.presence.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("chat.events.v1");
    }
}

pub mod credentials;
mod error;
mod time;

pub use credentials::AdminCredentials;
pub use error::{ERROR_CODE_KEY, ErrorCode, grpc_code_name};
pub use time::{from_timestamp, to_timestamp};

/// Encoded `FileDescriptorSet` of every chat proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/chat_descriptor.bin"));
