//! `authmd backup FILE`: an online, consistent copy of a SQLite database. SQLite's `VACUUM INTO`
//! reads inside one transaction, so a server writing meanwhile neither stops nor leaves the copy
//! half-written; the copy is compacted and integrity-checked before the command says so.
//! Restoring is stopping authmd and putting the file at `database.url`'s path.

use std::path::Path;

use super::{load_config, CliError};
use crate::db::Db;
use crate::error::{AppError, ErrorCode};

pub fn run(config_file: Option<&Path>, file: &Path) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    if file.exists() {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            format!(
                "{} exists; a backup never overwrites a file",
                file.display()
            ),
        )
        .into());
    }
    let target = file.to_str().ok_or_else(|| {
        AppError::protocol(ErrorCode::InvalidRequest, "the backup path is not UTF-8")
    })?;
    let db = Db::connect(&config)?;
    let mut conn = db.get()?;
    crate::db::backup_sqlite(&mut conn, target)?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written: {} ({bytes} bytes, integrity ok)",
        file.display()
    );
    Ok(())
}
