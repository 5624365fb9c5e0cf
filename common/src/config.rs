//! Configuration helpers shared by every binary.

use std::fmt;

/// A secret value (signing key, service credential, password in a URL).
/// Its `Debug` and `Display` print `[redacted]`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// A fresh random secret of 32 bytes, hex-encoded.
    pub fn generate() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret(hex::encode(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Reads a secret from `path`, creating it with a fresh random value when the
/// file does not exist. The embedded mode keeps its signing key and service
/// credential this way, so tokens stay valid across restarts.
pub fn load_or_create_secret(path: &std::path::Path) -> anyhow::Result<Secret> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(contents) => {
            let value = contents.trim();
            anyhow::ensure!(!value.is_empty(), "secret file {} is empty", path.display());
            Ok(Secret(value.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = Secret::generate();
            write_private(path, secret.expose())
                .with_context(|| format!("cannot write secret to {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read secret from {}", path.display())),
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_created_secret_is_read_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key");
        let first = load_or_create_secret(&path)?;
        assert_eq!(first.expose().len(), 64);
        assert_eq!(load_or_create_secret(&path)?, first);
        Ok(())
    }
}
