//! `authmd client create|list|show|delete`.

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{load_config, open_db, CliError};
use crate::clock::{Clock, SystemClock};
use crate::domain::audit::AuditContext;
use crate::domain::clients::{self, Client, NewClient, AUTH_BASIC, AUTH_NONE};
use crate::domain::discovery::{
    scopes_supported, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN,
};
use crate::domain::scope::Scopes;
use crate::error::{AppError, ErrorCode};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints client_id and (confidential clients) client_secret once.
    Create(CreateArgs),
    /// List clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a client and revoke every token issued to it.
    Delete { client_id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Display name shown on the consent page.
    #[arg(long)]
    name: String,
    /// Allowed redirect URI (repeatable). Loopback URIs match any port.
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Allowed grant type (repeatable). Default: authorization_code and refresh_token when
    /// redirect URIs are given, else client_credentials (a service acting for itself).
    #[arg(long = "grant-type", value_name = "GRANT")]
    grant_types: Vec<String>,
    /// Space-separated scopes the client may request. Default: every scope authmd grants.
    #[arg(long)]
    scope: Option<String>,
    /// A public client (no secret; PKCE protects its codes).
    #[arg(long)]
    public: bool,
    /// Allow this client to call the introspection endpoint (resource servers).
    #[arg(long)]
    introspect: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_file: Option<&Path>, cmd: ClientCommand) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let db = open_db(&config)?;
    let mut conn = db.get()?;
    let now = SystemClock.now();
    match cmd {
        ClientCommand::Create(args) => {
            // A client gets the grants its shape implies, never more: redirect URIs mean a
            // person signs in through it; none means a service acting for itself.
            let grant_types = if args.grant_types.is_empty() {
                if args.redirect_uris.is_empty() {
                    vec![GRANT_CLIENT_CREDENTIALS.to_owned()]
                } else {
                    vec![
                        GRANT_AUTHORIZATION_CODE.to_owned(),
                        GRANT_REFRESH_TOKEN.to_owned(),
                    ]
                }
            } else {
                args.grant_types
            };
            let created = clients::create(
                &mut conn,
                now,
                &AuditContext::cli(),
                NewClient {
                    name: args.name,
                    redirect_uris: args.redirect_uris,
                    grant_types,
                    scope: args.scope,
                    token_endpoint_auth_method: if args.public { AUTH_NONE } else { AUTH_BASIC }
                        .to_owned(),
                    application_type: if args.public { "native" } else { "web" }.to_owned(),
                    can_introspect: args.introspect,
                    registration_token: false,
                    metadata: json!({}),
                },
                &Scopes::from_list(&scopes_supported(&config)),
            )?;
            let secret = created.client_secret.map(|s| s.into_string());
            if args.json {
                let mut value = serde_json::to_value(&created.client).unwrap_or_default();
                if let Some(secret) = &secret {
                    value["client_secret"] = json!(secret);
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                println!("client_id:     {}", created.client.client_id);
                if let Some(secret) = &secret {
                    println!("client_secret: {secret}");
                    println!("(the secret is shown only now; authmd stores its hash)");
                }
            }
        }
        ClientCommand::List { json } => {
            let list = clients::list(&mut conn)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                for c in list {
                    println!("{}", summary(&c));
                }
            }
        }
        ClientCommand::Show { client_id, json } => {
            let client = clients::find(&mut conn, &client_id)?.ok_or_else(|| {
                AppError::protocol(ErrorCode::NotFound, format!("no client {client_id}"))
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&client).unwrap_or_default()
                );
            } else {
                println!("{}", summary(&client));
                println!("  redirect_uris: {}", client.redirect_uris.join(" "));
                println!("  grant_types:   {}", client.grant_types.join(" "));
                println!("  scope:         {}", client.scope);
            }
        }
        ClientCommand::Delete { client_id } => {
            if !clients::delete(&mut conn, now, &client_id)? {
                return Err(AppError::protocol(
                    ErrorCode::NotFound,
                    format!("no client {client_id}"),
                )
                .into());
            }
            println!("deleted {client_id}");
        }
    }
    Ok(())
}

fn summary(c: &Client) -> String {
    format!(
        "{}  {}  {}{}",
        c.client_id,
        c.client_name,
        if c.is_public {
            "public"
        } else {
            "confidential"
        },
        if c.can_introspect { "  introspect" } else { "" }
    )
}
