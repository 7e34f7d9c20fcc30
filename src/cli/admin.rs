//! `authmd admin revoke-agents`: incident response from the command line.

use std::path::Path;

use clap::{Args, Subcommand};

use super::{load_config, open_db, CliError};
use crate::clock::{Clock, SystemClock};
use crate::domain::admin::{self, RevokeTarget};
use crate::domain::audit::AuditContext;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Revoke agent credentials in bulk.
    RevokeAgents(RevokeArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// Every agent registration.
    #[arg(long)]
    all: bool,
    /// One registration.
    #[arg(long, value_name = "ID")]
    registration: Option<String>,
    /// Every registration acting for one user.
    #[arg(long, value_name = "USER_ID")]
    user: Option<String>,
}

pub fn run(config_file: Option<&Path>, cmd: AdminCommand) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let db = open_db(&config)?;
    let mut conn = db.get()?;
    match cmd {
        AdminCommand::RevokeAgents(args) => {
            let target = match (args.all, args.registration, args.user) {
                (true, _, _) => RevokeTarget::All,
                (_, Some(id), _) => RevokeTarget::Registration(id),
                (_, _, Some(user)) => RevokeTarget::User(user),
                _ => unreachable!("clap requires exactly one"),
            };
            let n =
                admin::revoke_agents(&mut conn, SystemClock.now(), &AuditContext::cli(), &target)?;
            println!("revoked {n} agent registration(s)");
        }
    }
    Ok(())
}
