# syntax=docker/dockerfile:1
#
# One image holding every binary of the workspace; compose and Kubernetes
# pick the binary with `command:` (chatctl, the admin CLI, is there for
# `docker compose exec` / `kubectl exec`). Build from the repository root:
#
#   docker build -t chat:0.1.0 .
#
# Stages: `chef` (Rust toolchain + cargo-chef), `planner` (dependency recipe
# from the manifests only), `builder` (dependencies cooked in their own layer,
# so editing a source file does not rebuild them; then the release build),
# `runtime` (Debian slim, non-root, the binaries and CA certificates).

# The binaries the image ships: the one list. scripts/check-deploy fails when
# it differs from the workspace's binary targets.
ARG BINS="chat chatctl gateway auth-service message-service presence-service"
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG BINS
COPY --from=planner /src/recipe.json recipe.json
# Every dependency of the workspace, release profile: the cached layer.
RUN cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
# The release build (README: `cargo build --release`), limited to BINS.
RUN cargo build --release --locked --workspace $(for bin in $BINS; do printf -- '--bin %s ' "$bin"; done) \
    && mkdir -p /out \
    && for bin in $BINS; do cp "target/release/$bin" /out/; done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# TLS roots for rediss://, amqps:// and PostgreSQL over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed, high, non-root uid/gid that the Kubernetes manifests name too.
RUN groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid chat --home-dir /data --shell /usr/sbin/nologin chat \
    && mkdir -p /data \
    && chown chat:chat /data
COPY --from=builder /out/ /usr/local/bin/
# bash-only HTTP and gRPC health probe for compose (see the script).
COPY --chmod=0755 deploy/docker/healthcheck /usr/local/bin/healthcheck
USER 10001:10001
WORKDIR /data
EXPOSE 8080
# No HEALTHCHECK here: the image runs several different binaries on different
# ports and protocols, so each compose service and Kubernetes Deployment
# declares its own check (deploy/.checkov.yaml records the skip).
#
# Default: the all-in-one binary on SQLite, data in the /data volume.
CMD ["chat", "--listen", "0.0.0.0:8080", "--data-dir", "/data"]
