//! `authmd serve`: migrate, ensure a signing key, serve HTTP.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use super::{load_config, open_db, CliError};
use crate::config::{Config, LogFormat};
use crate::state::AppState;

/// How often a running server re-reads the signing keys (to see a rotation done elsewhere).
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// How often unclaimed registrations are expired and stale rate-limit windows dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub fn run(config_file: Option<&Path>) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    init_tracing(&config);
    let db = open_db(&config)?;
    let bind = config.server.bind;
    let state = AppState::with_system_clock(config, db)?;
    let listener = TcpListener::bind(bind)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {bind}: {e}")))?;
    tracing::info!(
        bind = %bind,
        issuer = %state.config.server.issuer,
        database = state.db.backend(),
        "authmd listening"
    );
    actix_web::rt::System::new().block_on(async move {
        let reload_state = state.clone();
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(KEY_RELOAD_INTERVAL);
            interval.tick().await;
            loop {
                interval.tick().await;
                if let Err(e) = reload_state.reload_keys().await {
                    tracing::warn!(error = %e, "reloading signing keys failed; keeping the current ones");
                }
            }
        });
        let sweep_state = state.clone();
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(SWEEP_INTERVAL);
            loop {
                interval.tick().await;
                if let Err(e) = sweep_state.sweep().await {
                    tracing::warn!(error = %e, "periodic sweep failed");
                }
            }
        });
        crate::http::serve(state, listener)?.await
    })?;
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colour codes only for a person at a terminal: in a file or a log collector they are noise
    // that breaks grep and parsers.
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
