//! `authmd resource metadata URL`: the RFC 9728 document a resource server on another origin
//! must serve itself (a document describes the URL it is fetched from, so authmd cannot serve
//! it for another origin).

use std::path::Path;

use clap::Subcommand;

use super::{load_config, CliError};
use crate::config::ConfigError;
use crate::domain::discovery::{protected_resource_metadata, protected_resource_metadata_url};

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Print the RFC 9728 metadata document of a configured resource (`server.resources`) on
    /// standard output; standard error says where the resource must serve it.
    Metadata {
        /// The resource, exactly as configured.
        url: String,
    },
}

pub fn run(config_file: Option<&Path>, cmd: ResourceCommand) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    match cmd {
        ResourceCommand::Metadata { url } => {
            let known = if config.server.resources.is_empty() {
                url == config.server.issuer
            } else {
                config.server.resources.contains(&url)
            };
            if !known {
                return Err(ConfigError::new(
                    "server.resources",
                    format!("{url} is not a configured resource"),
                )
                .into());
            }
            let location = protected_resource_metadata_url(&url).ok_or_else(|| {
                ConfigError::new("server.resources", format!("{url} is not a URL"))
            })?;
            let document = protected_resource_metadata(&config, &url);
            println!(
                "{}",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            );
            eprintln!("serve this document at {location}");
            Ok(())
        }
    }
}
