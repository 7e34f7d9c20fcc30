//! The OpenAPI 3.1 description, generated from the handlers' annotations.

use actix_web::{web, HttpResponse};
use utoipa::openapi::server::Server;
use utoipa::OpenApi;

use super::{
    admin, agents, authorize, health, identity, register, response, token, tokens_api, userinfo,
    well_known,
};
use crate::state::AppState;

/// Every JSON body is a typed schema except where the shape is open by its RFC: the
/// discovery documents (RFC 8414, RFC 9728), the JWK Set, RFC 7591 client metadata (clients may
/// register fields authmd echoes) and this document itself; those say `Object`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "authmd",
        description = "OAuth 2.0 authorization server with auth.md agent registration"
    ),
    paths(
        well_known::authorization_server,
        well_known::openid_configuration,
        well_known::protected_resource,
        well_known::jwks,
        well_known::auth_md,
        health::healthz,
        health::readyz,
        authorize::authorize,
        token::token,
        token::device,
        token::revoke,
        token::introspect,
        userinfo::userinfo,
        register::register,
        register::read,
        register::delete,
        agents::register,
        agents::claim,
        agents::complete,
        agents::provider_revoke,
        agents::provider_event,
        identity::register,
        identity::claim,
        admin::clients_list,
        admin::client_show,
        admin::registrations,
        admin::registration,
        admin::users,
        admin::create_user,
        admin::mint_for_user,
        admin::user,
        admin::audit,
        admin::revoke_agents,
        tokens_api::list,
        tokens_api::create,
        tokens_api::delete,
        tokens_api::create_workspace,
        tokens_api::list_workspaces,
        tokens_api::add_member,
        tokens_api::remove_member,
        tokens_api::delete_workspace,
        openapi_json,
    ),
    components(schemas(response::ErrorBody)),
    tags(
        (name = "discovery", description = "Metadata every caller starts from"),
        (name = "oauth", description = "OAuth 2.0 endpoints"),
        (name = "agents", description = "auth.md agent registration and claim"),
        (name = "account", description = "Personal tokens"),
        (name = "operations", description = "Health checks"),
        (name = "admin", description = "Operator API, bearer admin.token"),
    )
)]
pub struct ApiDoc;

/// The document with this deployment's issuer as its server.
pub fn document(issuer: &str) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![Server::new(issuer)]);
    doc
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "discovery",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(&state.config.server.issuer))
}
