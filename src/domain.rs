//! The protocol: clients, users, tokens, agent registrations, keys, discovery, audit.
//!
//! Domain functions take plain inputs, a `&mut DbConn` and `now`; they decide transactions and
//! return [`crate::error::AppError`]. Nothing here imports `actix_web` or builds a response.

pub mod accounts;
pub mod admin;
pub mod agents;
pub mod audit;
pub mod cimd;
pub mod claims;
pub mod clients;
pub mod context;
pub mod credentials;
pub mod device;
pub mod discovery;
pub mod endpoints;
pub mod grants;
pub mod idempotency;
pub mod identity;
pub mod jws;
pub mod keys;
pub mod mail;
pub mod oauth;
pub mod oidc;
pub mod providers;
pub mod ratelimit;
pub mod registration;
pub mod scope;
pub mod secrets;
pub mod signup;
pub mod users;
pub mod workspaces;

#[cfg(test)]
pub(crate) mod testing;
