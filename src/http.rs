//! HTTP: extracts inputs, calls one domain function, maps the result to a response.
//!
//! The whole route table is [`configure`], so the HTTP surface fits on one screen. Handlers never
//! hold protocol logic (that is `domain/`) or run blocking work on a worker (`Db::run`).

pub mod account;
pub mod admin;
pub mod agents;
pub mod authorize;
pub mod device;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod register;
pub mod response;
pub mod signup;
pub mod token;
pub mod tokens_api;
pub mod userinfo;
pub mod well_known;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer, Resource};

use crate::domain::discovery::paths;
use crate::state::AppState;

/// Every route authmd serves.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg
        // The two busiest routes first: actix tries each resource in the order given, and
        // every route here has its own path, so the order changes only how many are tried.
        .service(resource(paths::TOKEN).post(token::token))
        .service(resource(paths::INTROSPECT).post(token::introspect))
        // Discovery
        .service(resource(paths::AS_METADATA).get(well_known::authorization_server))
        .service(resource(paths::PR_METADATA).get(well_known::protected_resource))
        .service(
            resource("/.well-known/oauth-protected-resource/{resource:.*}")
                .get(well_known::protected_resource),
        )
        .service(resource(paths::OIDC_METADATA).get(well_known::openid_configuration))
        .service(resource(paths::JWKS).get(well_known::jwks))
        .service(resource(paths::AUTH_MD).get(well_known::auth_md))
        .service(resource(paths::OPENAPI).get(openapi::openapi_json))
        .service(resource("/healthz").get(health::healthz))
        .service(resource("/readyz").get(health::readyz))
        .service(resource("/metrics").get(health::metrics))
        // OAuth 2.0
        .service(
            resource(paths::AUTHORIZE)
                .get(authorize::authorize)
                .post(authorize::decide),
        )
        .service(
            resource(paths::LOGIN)
                .get(identity::login_page)
                .post(authorize::login),
        )
        .service(resource("/logout").post(authorize::logout))
        .service(resource(paths::REVOKE).post(token::revoke))
        .service(resource(paths::DEVICE_AUTHORIZATION).post(token::device))
        .service(
            resource(paths::DEVICE_PAGE)
                .get(device::show)
                .post(device::submit),
        )
        .service(
            resource(paths::USERINFO)
                .get(userinfo::userinfo)
                .post(userinfo::userinfo),
        )
        .service(
            resource(paths::REGISTER)
                .wrap(from_fn(idempotency::guard))
                .post(register::register),
        )
        .service(
            resource("/oauth2/register/{client_id}")
                .get(register::read)
                .delete(register::delete),
        )
        // auth.md agent registration: v0.1 at /agent/auth, v0.6 at /agent/identity
        .service(resource(paths::AGENT_EVENTS).post(agents::provider_event))
        .service(web::scope(paths::AGENT_AUTH).configure(agent_routes))
        .service(
            resource(paths::AGENT_IDENTITY)
                .wrap(from_fn(idempotency::guard))
                .post(identity::register),
        )
        .service(
            resource(paths::IDENTITY_CLAIM)
                .wrap(from_fn(idempotency::guard))
                .post(identity::claim),
        )
        .service(
            resource(paths::CLAIM_PAGE)
                .get(identity::show)
                .post(identity::submit),
        )
        // People and operators (write endpoints honour Idempotency-Key)
        .service(resource("/signup").get(signup::show).post(signup::submit))
        .service(resource("/signup/verify").get(signup::verify))
        .service(resource("/account").get(account::page))
        .service(resource("/account/tokens").post(account::create_token))
        .service(resource("/account/{kind}/{id}/revoke").post(account::revoke))
        .service(
            resource("/api/tokens")
                .wrap(from_fn(idempotency::guard))
                .get(tokens_api::list)
                .post(tokens_api::create),
        )
        .service(
            resource("/api/tokens/{id}")
                .wrap(from_fn(idempotency::guard))
                .delete(tokens_api::delete),
        )
        .service(
            resource("/api/workspaces")
                .wrap(from_fn(idempotency::guard))
                .get(tokens_api::list_workspaces)
                .post(tokens_api::create_workspace),
        )
        .service(
            resource("/api/workspaces/{id}")
                .wrap(from_fn(idempotency::guard))
                .delete(tokens_api::delete_workspace),
        )
        .service(
            resource("/api/workspaces/{id}/members")
                .wrap(from_fn(idempotency::guard))
                .post(tokens_api::add_member),
        )
        .service(
            resource("/api/workspaces/{id}/members/{user_id}")
                .wrap(from_fn(idempotency::guard))
                .delete(tokens_api::remove_member),
        )
        .service(resource("/admin/clients").get(admin::clients_list))
        .service(resource("/admin/clients/{id}").get(admin::client_show))
        .service(resource("/admin/registrations").get(admin::registrations))
        .service(resource("/admin/registrations/{id}").get(admin::registration))
        .service(
            resource("/admin/users")
                .get(admin::users)
                .post(admin::create_user),
        )
        .service(resource("/admin/users/{id}/tokens").post(admin::mint_for_user))
        .service(resource("/admin/users/{id}").get(admin::user))
        .service(resource("/admin/audit").get(admin::audit))
        .service(
            resource("/admin/revoke-agents")
                .wrap(from_fn(idempotency::guard))
                .post(admin::revoke_agents),
        )
        // Any other path under /admin/: 401 without the admin token, so the API's shape is not
        // probed for free; 404 with it (and for everyone when the admin API is off).
        .service(web::resource("/admin/{rest:.*}").to(admin::unknown));
}

fn agent_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("")
            .wrap(from_fn(idempotency::guard))
            .post(agents::register),
    )
    .service(
        resource("/claim")
            .wrap(from_fn(idempotency::guard))
            .post(agents::claim),
    )
    .service(resource("/claim/view").get(agents::claim_view))
    .service(resource("/claim/attempt/challenge").post(agents::claim_challenge))
    .service(resource("/claim/attempt/cancel").post(agents::claim_cancel))
    .service(resource("/claim/complete").post(agents::complete))
    .service(resource("/revoke").post(agents::provider_revoke));
}

/// A path whose other methods get a JSON 405 (the app-wide default would answer 404).
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(response::method_not_allowed))
}

/// Starts the HTTP server on `listener` (bound by the caller, so tests can use port 0).
pub fn serve(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let limit = state.config.server.max_body_bytes;
    let workers = match state.config.server.workers {
        // Two per core, not one: the SQLite writer, its checkpoint thread and PostgreSQL's
        // batch threads run beside the workers, and a worker they push off its core holds
        // every connection it owns until it runs again. On two cores, two workers against
        // four, three alternating pairs (`bench/README.md`, seventeenth session): SQLite
        // client_credentials 27.2-27.9k against 32.3-32.9k tokens/s, introspection
        // 89.5-92.6k against 96.1-100.7k req/s, PostgreSQL introspection +3-8 % and issuance
        // unchanged; only `/healthz`, which does nothing, lost (152-164k against 128-143k).
        0 => 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let blocking_threads = (state.storage_connections() as usize / workers).max(2);
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(limit))
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(response::payload_error),
            )
            .app_data(extract::FormLimit(limit))
            .app_data(
                web::FormConfig::default()
                    .limit(limit)
                    .error_handler(response::payload_error),
            )
            .app_data(web::QueryConfig::default().error_handler(response::payload_error))
            .wrap(actix_web::middleware::from_fn(middleware::observe))
            .configure(configure)
            .default_service(web::to(response::not_found))
    })
    .workers(workers)
    // Database work runs on each worker's blocking pool; a handful of threads per worker keeps
    // them hot instead of waking hundreds (bench/README.md has the measurements).
    .worker_max_blocking_threads(blocking_threads)
    // SIGTERM and SIGINT stop accepting, then wait this long for requests in flight (and the
    // writes they wait on) before exiting: a rolling restart loses no answered request.
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok(server)
}
