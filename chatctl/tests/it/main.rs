//! End-to-end tests of chatctl: the embedded system started in-process on
//! port 0, the `chatctl` binary run against it as a subprocess, its stdout,
//! stderr and exit code asserted. `python` generates a Python client from
//! `proto/` and calls the services with it.

mod health;
mod messages;
mod presence;
mod python;
mod rooms;
mod support;
mod tls;
mod users;
