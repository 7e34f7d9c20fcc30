//! `authmd token create --user EMAIL --scope "…" [--workspace ID] [--expires-in S] [--name N]
//! [--json]`: the first credential of a deployment, made without a browser.

use std::path::Path;

use clap::Subcommand;

use super::{load_config, open_db, CliError};
use crate::clock::{Clock, SystemClock};
use crate::domain::accounts::TokenRequest;
use crate::domain::admin;
use crate::domain::audit::AuditContext;
use crate::domain::scope;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a personal (or, with --workspace, a workspace) token for a user; it is printed once.
    Create {
        /// The user's email address or id (usr_…).
        #[arg(long)]
        user: String,
        /// Space-separated scopes; default: every scope the deployment grants.
        #[arg(long)]
        scope: Option<String>,
        /// A workspace id the user is a member of.
        #[arg(long)]
        workspace: Option<String>,
        /// Seconds until it expires (at most tokens.personal_max_ttl_s when that is set).
        #[arg(long)]
        expires_in: Option<i64>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config_file: Option<&Path>, cmd: TokenCommand) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let TokenCommand::Create {
        user,
        scope: scopes,
        workspace,
        expires_in,
        name,
        json,
    } = cmd;
    let request = TokenRequest {
        name: Some(name.unwrap_or_else(|| "cli".to_owned())),
        scopes: scopes.as_deref().map(scope::list),
        workspace,
        expires_in,
    };
    let db = open_db(&config)?;
    let mut conn = db.get()?;
    let created = admin::mint_for_user(
        &mut conn,
        &config,
        SystemClock.now(),
        &AuditContext::cli(),
        &user,
        &request,
    )?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&created).unwrap_or_default()
        );
    } else {
        println!("token: {}", created.token);
        println!("id: {}", created.info.id);
        println!("scopes: {}", created.info.scopes.join(" "));
    }
    Ok(())
}
