//! `authmd user create --email E --password-stdin`, `authmd user disable ID|EMAIL`.

use std::io::Read;
use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_db, CliError};
use crate::clock::{Clock, SystemClock};
use crate::domain::audit::AuditContext;
use crate::domain::users;
use crate::error::{AppError, ErrorCode};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a human account (argon2id password).
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line); it never appears in argv.
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: they can no longer sign in, and everything issued for them is revoked.
    Disable {
        /// The user's id (usr_…) or email address.
        user: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config_file: Option<&Path>, cmd: UserCommand) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    match cmd {
        UserCommand::Create {
            email,
            password_stdin: _,
            json,
        } => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let password = input.lines().next().unwrap_or_default().to_owned();
            if password.is_empty() {
                return Err(AppError::protocol(
                    ErrorCode::InvalidRequest,
                    "no password on standard input",
                )
                .into());
            }
            let db = open_db(&config)?;
            let mut conn = db.get()?;
            let user = users::create(
                &mut conn,
                SystemClock.now(),
                &email,
                Some(users::new_password(&password)?),
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&user).unwrap_or_default()
                );
            } else {
                println!("user_id: {}", user.id);
            }
        }
        UserCommand::Disable { user, json } => {
            let db = open_db(&config)?;
            let mut conn = db.get()?;
            let user = users::disable(&mut conn, SystemClock.now(), &AuditContext::cli(), &user)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&user).unwrap_or_default()
                );
            } else {
                println!("disabled: {} ({})", user.id, user.email);
            }
        }
    }
    Ok(())
}
