//! authmd: a standalone OAuth 2.0 authorization server that speaks the auth.md
//! agent-registration protocol.
//!
//! # Map
//!
//! `ARCHITECTURE.md` has the whole map; the layers, top to bottom:
//!
//! - [`http`]: extracts inputs, makes one [`service`] call, maps the result (the route table is
//!   [`http::configure`]). Never holds protocol logic and never touches storage.
//! - [`service`]: one async entry point per operation; decides how its storage work runs
//!   (group-committed write, point read, blocking-pool query, batched read) and does the network
//!   work (a provider's JWKS, mail) around the database call.
//! - [`domain`]: the protocol. Synchronous functions on a `&mut DbConn` and a context with the
//!   injected `now`; they decide transactions. Never imports `actix_web`, [`http`], [`service`]
//!   or [`state`].
//! - [`db`]: rows, forms and queries on a `&mut DbConn` (SQLite or PostgreSQL through one
//!   `MultiConnection`), and the executors (the SQLite writer thread, batched reads), which know
//!   no feature's rows. Never imports [`domain`].
//! - [`config`], [`state`], [`clock`], [`error`]: the typed configuration, the explicitly built
//!   application state, the only reader of the system clock, and the error types.
//! - [`cli`]: one file per subcommand.
//!
//! The rules "http never touches storage", "domain knows no web" and "db knows no feature"
//! are checked by the tests at the end of this file.

pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod service;
pub mod state;

#[cfg(test)]
mod properties;

/// The layer rules above, checked by import.
#[cfg(test)]
mod layers {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file of a module: `src/<name>.rs` and everything under `src/<name>/`.
    fn sources(module: &str) -> Vec<(PathBuf, String)> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join(format!("{module}.rs"))];
        walk(&src.join(module), &mut files);
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect()
    }

    fn offending(module: &str, forbidden: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for (path, text) in sources(module) {
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || code.starts_with("#[actix_web::test]") {
                    continue;
                }
                if forbidden.iter().any(|f| code.contains(f)) {
                    found.push(format!("{}:{}: {code}", path.display(), n + 1));
                }
            }
        }
        found
    }

    #[test]
    fn handlers_never_touch_storage() {
        let found = offending("http", &["crate::db", "state.db", ".db."]);
        assert!(
            found.is_empty(),
            "http/ must go through service/: {found:#?}"
        );
    }

    #[test]
    fn the_domain_knows_no_web_and_no_service() {
        let found = offending(
            "domain",
            &["actix_web", "crate::http", "crate::service", "crate::state"],
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn the_batch_executor_knows_no_feature_rows() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db/batch.rs");
        let text = std::fs::read_to_string(path).unwrap();
        for feature in [
            "schema::",
            "ClientRow",
            "TokenRow",
            "PointReads",
            "clients::",
            "tokens::",
        ] {
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
            assert!(
                !code.clone().any(|l| l.contains(feature)),
                "db/batch.rs names {feature}"
            );
        }
    }

    #[test]
    fn storage_knows_no_feature() {
        let found = offending("db", &["crate::domain", "crate::http", "crate::service"]);
        assert!(found.is_empty(), "{found:#?}");
    }
}
