//! Generates the gRPC code with protox, a pure-Rust protobuf compiler, so no
//! `protoc` is needed, and writes the descriptor set that reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/chat/auth/v1/auth.proto",
        "proto/chat/message/v1/message.proto",
        "proto/chat/presence/v1/presence.proto",
        "proto/chat/events/v1/events.proto",
        "proto/chat/auth/v1/admin.proto",
        "proto/chat/message/v1/admin.proto",
        "proto/chat/presence/v1/admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // `compile_fds` ignores `file_descriptor_set_path`, so write it ourselves.
    std::fs::write(out_dir.join("chat_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
