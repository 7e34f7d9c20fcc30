//! The one integration-test binary: real HTTP against a started server. A module per area.

mod harness;

mod agents;
mod bench_script;
mod binary;
mod browser;
mod cimd;
mod device;
mod discovery;
mod errors;
mod fakes;
mod faults;
mod flows;
mod identity;
mod keys;
mod mcp_client;
mod oauth;
mod oauth2_crate;
mod oidc;
mod operations;
mod people;
mod profiles;
mod register;
mod trust;
