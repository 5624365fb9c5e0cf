//! An independent client: Python grpcio with code generated from `proto/`
//! by grpcio-tools, against the running services. The Python comes from
//! `CHAT_PYTHON` (`scripts/python-env` makes it); without it the test prints
//! a SKIP line and passes, except under `CI`, where it fails.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;

use crate::support::{TestSystem, WAIT};

/// Every proto file, relative to `proto/proto`.
const PROTOS: &[&str] = &[
    "chat/auth/v1/auth.proto",
    "chat/auth/v1/admin.proto",
    "chat/message/v1/message.proto",
    "chat/message/v1/admin.proto",
    "chat/presence/v1/presence.proto",
    "chat/presence/v1/admin.proto",
    "chat/events/v1/events.proto",
];

/// `CHAT_PYTHON`, or `None` after a loud SKIP line outside CI.
fn python(test: &str) -> anyhow::Result<Option<String>> {
    match std::env::var("CHAT_PYTHON") {
        Ok(python) if !python.is_empty() => Ok(Some(python)),
        _ if std::env::var_os("CI").is_some() => anyhow::bail!(
            "{test}: CHAT_PYTHON is not set; run `export CHAT_PYTHON=\"$(scripts/python-env)\"` \
             (.ci/run does)"
        ),
        _ => {
            eprintln!("SKIP {test}: CHAT_PYTHON not set (run scripts/python-env)");
            Ok(None)
        }
    }
}

async fn run(command: &mut tokio::process::Command) -> anyhow::Result<String> {
    let output = tokio::time::timeout(WAIT * 6, command.stdin(Stdio::null()).output())
        .await
        .context("python did not finish")??;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn a_generated_python_client_registers_chats_and_reads_history() -> anyhow::Result<()> {
    let test = "a_generated_python_client_registers_chats_and_reads_history";
    let Some(python) = python(test)? else {
        return Ok(());
    };
    let out = tempfile::tempdir()?;
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    run(tokio::process::Command::new(&python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", protos.display()))
        .arg(format!("--python_out={}", out.path().display()))
        .arg(format!("--grpc_python_out={}", out.path().display()))
        .args(PROTOS)
        .current_dir(&protos))
    .await?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/client.py");

    let sys = TestSystem::start().await?;
    let stdout = run(tokio::process::Command::new(&python)
        .arg(&script)
        .env("PYTHONPATH", out.path())
        .env("AUTH_ADDR", sys.system.auth_addr.to_string())
        .env("MESSAGE_ADDR", sys.system.message_addr.to_string())
        .env("SERVICE_TOKEN", sys.system.service_token.expose())
        .env("ADMIN_TOKEN", &sys.root.token))
    .await?;
    assert_eq!(
        stdout,
        "registered carol user\n\
         created from python VISIBILITY_PUBLIC\n\
         sent 1 hello\n\
         sent 2 from grpcio\n\
         history 1 Carol Ünicode hello\n\
         history 2 Carol Ünicode from grpcio\n\
         has_more False\n\
         refused PERMISSION_DENIED forbidden the admin role is required\n\
         admin sees from python 1 2\n\
         health SERVING\n\
         services chat.message.v1.AdminService chat.message.v1.MessageService \
         grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
         grpc.reflection.v1alpha.ServerReflection\n"
    );
    Ok(())
}
