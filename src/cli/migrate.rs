//! `authmd migrate`: run pending migrations and exit.

use std::path::Path;

use super::{load_config, CliError};
use crate::db::Db;

pub fn run(config_file: Option<&Path>) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let db = Db::connect(&config)?;
    let ran = db.migrate()?;
    println!("{ran} migration(s) applied ({} database)", db.backend());
    Ok(())
}
