//! `authmd keys list|rotate`: the signing keys in the database.

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_db, CliError};
use crate::clock::{Clock, SystemClock};
use crate::domain::audit::AuditContext;
use crate::domain::keys;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys (never private material).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Retire the signing key and create a new one. The retired key stays in JWKS until nothing
    /// it signed can still be valid; running servers pick up the new key within a minute.
    Rotate {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config_file: Option<&Path>, cmd: KeysCommand) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let db = open_db(&config)?;
    let mut conn = db.get()?;
    let now = SystemClock.now();
    match cmd {
        KeysCommand::List { json } => {
            keys::ensure_signing_key(&mut conn, now)?;
            let list = keys::list(&mut conn, now, &config)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                println!(
                    "{:<44} {:<6} {:<12} {:<12} published",
                    "kid", "alg", "created_at", "retired_at"
                );
                for k in list {
                    let retired = k.retired_at.map_or("-".to_owned(), |t| t.to_string());
                    println!(
                        "{:<44} {:<6} {:<12} {:<12} {}",
                        k.kid, k.alg, k.created_at, retired, k.published
                    );
                }
            }
        }
        KeysCommand::Rotate { json } => {
            let key = keys::rotate(&mut conn, now, &AuditContext::cli())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&key).unwrap_or_default());
            } else {
                println!("new signing key: {}", key.kid);
            }
        }
    }
    Ok(())
}
