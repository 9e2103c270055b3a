//! Configuration: the command line as typed ([`cli`]), the settings by name
//! ([`setting`]: each flag and environment variable spelled once), and the
//! checked configuration of `serve` ([`server_config`]), built once before
//! anything listens. A bad setting stops start-up with a [`StartupError`]:
//! one line naming the setting, keeping its cause.

pub mod cli;
pub mod server_config;
pub mod setting;

pub use cli::{
    Cli, Command, DatabaseArgs, JwtArgs, LogFormat, MigrateArgs, MintJwtArgs, ServeArgs,
};
pub use server_config::{AdmissionLimits, GrpcLimits, JwtConfig, ServerConfig};
pub use setting::{Invalid, Setting, StartupError};
