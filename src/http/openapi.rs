//! The OpenAPI 3.1 description, generated from the handlers' annotations.

use actix_web::{web, HttpResponse};
use utoipa::openapi::server::Server;
use utoipa::OpenApi;

use super::{
    admin, agents, authorize, health, identity, register, response, token, tokens_api, userinfo,
    well_known,
};
use crate::domain::discovery::paths;
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
    add_common_answers(&mut doc);
    doc
}

/// Paths that never reach the database: they cannot answer 503.
const WITHOUT_DATABASE: [&str; 7] = [
    "/healthz",
    paths::OPENAPI,
    paths::AUTH_MD,
    paths::AS_METADATA,
    paths::OIDC_METADATA,
    paths::PR_METADATA,
    paths::JWKS,
];

/// Answers every operation can give for the same reason, documented once here rather than on
/// each handler: `400 invalid_request` where the operation takes a body or parameters (one
/// error mapping answers every malformed input so, a `%00` in a path segment included), and `503 temporarily_unavailable` with
/// `Retry-After` where it reaches the database (an outage or a full disk).
fn add_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let has_input = operation.request_body.is_some()
                || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let responses = &mut operation.responses.responses;
            if has_input {
                responses.entry("400".to_owned()).or_insert_with(|| {
                    error("invalid_request: a parameter is missing, repeated or malformed").into()
                });
            }
            if !WITHOUT_DATABASE.contains(&path.as_str()) {
                responses.entry("503".to_owned()).or_insert_with(|| {
                    error("temporarily_unavailable: the database cannot be reached or written; retry after Retry-After seconds").into()
                });
            }
        }
    }
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
