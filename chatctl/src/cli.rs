//! The command line: global connection and credential options, and one
//! subcommand per task.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Printed under `chatctl --help`; `crate::error::Failure::exit_code` keeps
/// to it.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `messages tail`: stopped with Ctrl-C)
  1  unexpected failure (a malformed reply, an I/O error)
  2  usage error: bad arguments, or no admin credential given
  3  a service is unreachable or UNAVAILABLE, or `health` found one not serving
  4  UNAUTHENTICATED: wrong service token, wrong user or password, invalid or expired access token
  5  PERMISSION_DENIED: the user is not an admin, or is disabled
  6  NOT_FOUND: no such user, room or message
  7  any other refusal (INVALID_ARGUMENT, ALREADY_EXISTS, ...): the error code and message are printed

Admin commands authenticate twice: with the service credential (--service-token)
like every internal caller, and as an admin user, with an access token (--token)
or by logging in (--user and --password).";

#[derive(Debug, Parser)]
#[command(
    name = "chatctl",
    version,
    about = "Administer a chat deployment over gRPC: users, rooms, messages, presence, health",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// auth-service's gRPC address (`http://host:port` or `host:port`).
    #[arg(
        long,
        env = "AUTH_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub auth_addr: String,
    /// message-service's gRPC address.
    #[arg(
        long,
        env = "MESSAGE_ADDR",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub message_addr: String,
    /// presence-service's gRPC address.
    #[arg(
        long,
        env = "PRESENCE_ADDR",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    pub presence_addr: String,
    /// The deployment's service credential (sent as `x-service-token`);
    /// defaults to the services' insecure development value.
    #[arg(
        long,
        env = "SERVICE_TOKEN",
        default_value = "insecure-dev-service-token",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    pub service_token: String,
    /// An admin's access token (sent as `authorization: Bearer`).
    #[arg(long, env = "CHATCTL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Log in as this admin instead of passing --token.
    #[arg(
        long = "user",
        id = "login_user",
        value_name = "USER",
        env = "CHATCTL_USER",
        global = true
    )]
    pub login_user: Option<String>,
    /// The password of --user.
    #[arg(long, env = "CHATCTL_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Print JSON instead of a table (one object per line for `messages tail`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10, global = true)]
    pub timeout_s: u64,
    /// PEM CA bundle the services' certificates must chain to: when set,
    /// calls use TLS (also to `http://` addresses) and check each server's
    /// name. Unset: plaintext, and `https://` addresses are refused.
    #[arg(long, env = "GRPC_TLS_CA", global = true)]
    pub grpc_tls_ca: Option<String>,
    /// Name the services' certificates must carry, instead of the host of
    /// each address.
    #[arg(long, env = "GRPC_TLS_SERVER_NAME", global = true)]
    pub grpc_tls_server_name: Option<String>,
    /// PEM certificate chain for services that require client certificates;
    /// with --grpc-tls-client-key.
    #[arg(long, env = "GRPC_TLS_CLIENT_CERT", global = true)]
    pub grpc_tls_client_cert: Option<String>,
    /// PEM private key of --grpc-tls-client-cert.
    #[arg(long, env = "GRPC_TLS_CLIENT_KEY", global = true)]
    pub grpc_tls_client_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Users: list, show, disable, enable, set the role.
    #[command(subcommand)]
    Users(Users),
    /// Rooms: list, show, create, members, add a member, moderate.
    #[command(subcommand)]
    Rooms(Rooms),
    /// Messages of a room: history, or follow live.
    #[command(subcommand)]
    Messages(Messages),
    /// Who is online.
    #[command(subcommand)]
    Presence(Presence),
    /// Notifications of mentions and direct messages.
    #[command(subcommand)]
    Notifications(Notifications),
    /// The grpc.health.v1 status of every service (needs no credential).
    Health,
}

#[derive(Debug, Subcommand)]
pub enum Users {
    /// Users by username.
    List {
        /// Only usernames starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only usernames after this one (the next page).
        #[arg(long, default_value = "")]
        after: String,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One user.
    Show {
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
    },
    /// Disable a user: login and refresh fail from now on.
    Disable {
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
    },
    /// Set a user's system-wide role.
    SetRole {
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
        /// The new role.
        #[arg(value_enum)]
        role: SystemRole,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SystemRole {
    User,
    Admin,
}

impl SystemRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemRole::User => "user",
            SystemRole::Admin => "admin",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Rooms {
    /// Every room, oldest first.
    List {
        /// Only rooms after this room id (the next page).
        #[arg(long, default_value = "")]
        after: String,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One room.
    Show {
        /// A room id.
        room: String,
    },
    /// Create a group room.
    Create {
        /// The room's name.
        name: String,
        #[arg(long, value_enum, default_value_t = Visibility::Public)]
        visibility: Visibility,
        /// The owner (a user id or username); default: you.
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// A room's members.
    Members {
        /// A room id.
        room: String,
    },
    /// Add a user to a room (private rooms too).
    AddMember {
        /// A room id.
        room: String,
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
    },
    /// Kick, ban, unban, mute, unmute, promote or demote a user in a room.
    Moderate {
        /// A room id.
        room: String,
        /// What to do to the user.
        #[arg(value_enum)]
        action: Action,
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
        /// For mute and ban: how long, in seconds; default until undone.
        #[arg(long)]
        duration_s: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Visibility {
    Public,
    Private,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Action {
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    Promote,
    Demote,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Kick => "kick",
            Action::Ban => "ban",
            Action::Unban => "unban",
            Action::Mute => "mute",
            Action::Unmute => "unmute",
            Action::Promote => "promote",
            Action::Demote => "demote",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Messages {
    /// A page of a room's history, oldest first.
    History {
        /// A room id.
        room: String,
        /// Messages with a seq below this.
        #[arg(long, conflicts_with = "after")]
        before: Option<i64>,
        /// Messages with a seq above this.
        #[arg(long)]
        after: Option<i64>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Print the last messages of a room, then follow it live until Ctrl-C.
    Tail {
        /// A room id.
        room: String,
        /// How many earlier messages to print first.
        #[arg(long, default_value_t = 10)]
        last: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum Presence {
    /// Online users, per gateway.
    Who,
}

#[derive(Debug, Subcommand)]
pub enum Notifications {
    /// A user's notifications, oldest first.
    List {
        /// A user id or username.
        #[arg(value_name = "USER")]
        target: String,
        /// Also those already delivered.
        #[arg(long)]
        all: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
