# A Dockerfile whose BINS list misses binaries of the workspace (chatctl,
# presence-service, ...): the image would lack what compose and Kubernetes run.
# expect: Dockerfile BINS ['auth-service', 'chat', 'gateway', 'message-service'] != the workspace's binaries
ARG BINS="chat gateway auth-service message-service"
FROM debian:bookworm-slim
CMD ["chat"]
