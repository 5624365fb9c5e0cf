//! The scenarios, one per subcommand. Each returns the phases it measured.

pub mod fanout;
pub mod history;
pub mod idle;
pub mod sends;
pub mod storm;
