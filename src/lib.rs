//! authmd: a standalone OAuth 2.0 authorization server that speaks the auth.md
//! agent-registration protocol.
//!
//! # Map
//!
//! - [`http`]: extracts inputs, calls one domain function, maps the result (the route table is
//!   [`http::configure`]). Never holds protocol logic.
//! - [`domain`]: the protocol — clients, users, tokens, agents, keys, discovery, audit. Never
//!   imports `actix_web`; takes `now` from the caller; decides transactions.
//! - [`db`]: rows, forms and queries on a `&mut DbConn` (SQLite or PostgreSQL through one
//!   `MultiConnection`). Never builds a response.
//! - [`config`], [`state`], [`clock`], [`error`]: the typed configuration, the explicitly built
//!   application state, the only reader of the system clock, and the error types.
//! - [`cli`]: one file per subcommand.

pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod service;
pub mod state;
