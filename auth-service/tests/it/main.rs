//! The one integration-test binary of auth-service: the gRPC API as a
//! client sees it (each test on its own server and SQLite database), and
//! the store contract on SQLite and PostgreSQL.

mod accounts;
mod admin;
mod disconnect;
mod helpers;
mod server;
mod store_contract;
mod throttle;
mod tls;
mod tokens;
mod users;
