//! The `authmd` command line: one file per subcommand under `cli/`.

mod admin;
mod backup;
mod client;
pub mod conformance;
mod keys;
mod migrate;
mod resource;
mod serve;
mod token;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::db::{Db, DbSetupError};
use crate::error::AppError;

#[derive(Debug, Parser)]
#[command(
    name = "authmd",
    version,
    about = "OAuth 2.0 authorization server with auth.md agent registration"
)]
pub struct Cli {
    /// Configuration file laid over the built-in defaults (config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations if needed, create a signing key if none, and serve HTTP.
    Serve,
    /// Run pending migrations and exit.
    Migrate,
    /// Copy a SQLite database to FILE while it stays in use (consistent; integrity-checked).
    Backup {
        /// Where to write the copy; an existing file is never overwritten.
        file: std::path::PathBuf,
    },
    /// OAuth clients.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Human accounts.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Personal and workspace tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Incident response.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The protected resources (`server.resources`).
    #[command(subcommand)]
    Resource(resource::ResourceCommand),
    /// Walk a live auth.md service as an AUTH.md v0.6 agent would and print a pass/fail line
    /// per requirement (exit code 1 when one it must meet fails). Reads no configuration.
    Conformance {
        /// The service's issuer (or a resource server whose metadata names it).
        url: String,
        /// The address claims and service_auth registrations are started for.
        #[arg(long, default_value = "conformance@example.com")]
        email: String,
    },
}

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Database(#[from] DbSetupError),
    #[error("{0}")]
    App(#[from] AppError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Parses nothing itself: `main` hands over the parsed arguments.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Conformance { url, email } => return conformance::run(&url, &email),
        Command::Serve => serve::run(cli.config.as_deref()),
        Command::Migrate => migrate::run(cli.config.as_deref()),
        Command::Backup { file } => backup::run(cli.config.as_deref(), &file),
        Command::Client(cmd) => client::run(cli.config.as_deref(), cmd),
        Command::User(cmd) => user::run(cli.config.as_deref(), cmd),
        Command::Token(cmd) => token::run(cli.config.as_deref(), cmd),
        Command::Keys(cmd) => keys::run(cli.config.as_deref(), cmd),
        Command::Admin(cmd) => admin::run(cli.config.as_deref(), cmd),
        Command::Resource(cmd) => resource::run(cli.config.as_deref(), cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: the operator needs the key or the cause, nothing else.
            let line = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("authmd: {line}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn load_config(file: Option<&std::path::Path>) -> Result<Config, CliError> {
    Ok(Config::load(file, std::env::vars())?)
}

/// Opens and migrates the database: every command that touches it starts here.
fn open_db(config: &Config) -> Result<Db, CliError> {
    let db = Db::connect(config)?;
    db.migrate()?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_tree_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_flag_is_global() {
        let before = Cli::try_parse_from(["authmd", "--config", "a.toml", "migrate"]).unwrap();
        let after = Cli::try_parse_from(["authmd", "keys", "list", "--config", "a.toml"]).unwrap();
        assert_eq!(before.config, Some(PathBuf::from("a.toml")));
        assert_eq!(after.config, Some(PathBuf::from("a.toml")));
    }
}
