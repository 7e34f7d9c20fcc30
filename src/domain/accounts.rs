//! What a person sees and controls: personal and workspace tokens (`pat_…`), and the account
//! overview of connected agents, granted apps and tokens, each revocable.
//!
//! `last_used_at` is written at most once a minute per credential: the row is read anyway when
//! the credential is checked, and only a stale timestamp costs a write.

use serde::Serialize;
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::accounts::PersonalTokenRow;
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::domain::credentials::{self, Kind, RecordUse};
use crate::domain::discovery::scopes_supported;
use crate::domain::keys::KeyRing;
use crate::domain::scope::Scopes;
use crate::domain::secrets::{random_id, PlainToken};
use crate::domain::workspaces;
use crate::error::{AppError, AppResult, ErrorCode};

/// Who calls `/api/tokens`: a user, with the scopes their credential carries, the workspace it
/// is bound to, and the expiry and id of the token it presented (a session has neither).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub scopes: Scopes,
    pub workspace: Option<String>,
    pub expires_at: Option<i64>,
    /// The personal token presented; tokens it mints die with it.
    pub token_id: Option<String>,
}

impl Caller {
    /// A signed-in person at the account page holds every scope the deployment grants.
    pub fn session(config: &Config, user_id: String) -> Self {
        Self {
            user_id,
            scopes: Scopes::from_list(&scopes_supported(config)),
            workspace: None,
            expires_at: None,
            token_id: None,
        }
    }
}

/// Resolves a bearer credential to a first-party caller. Only a person's own credentials
/// (personal and workspace tokens) may mint tokens: an access token issued to an OAuth client,
/// an agent credential or a client-credentials token would otherwise become a permanent token
/// that outlives the grant it came from. `Ok(None)`: not a live credential (401); an error
/// `insufficient_scope`: a live credential of another kind (403).
pub fn caller_from_bearer(
    conn: &mut DbConn,
    config: &Config,
    keys: &KeyRing,
    now: UnixTime,
    token: &str,
) -> AppResult<Option<Caller>> {
    let Some(presented) = credentials::recognise(config, keys, token) else {
        return Ok(None);
    };
    if !presented.kind.spec().bearer {
        return Ok(None);
    }
    let Some(live) = credentials::resolve(conn, config, now, &presented, RecordUse::Yes)? else {
        return Ok(None);
    };
    if presented.kind != Kind::PersonalToken {
        return Err(AppError::protocol(
            ErrorCode::InsufficientScope,
            "only the account session or a personal or workspace token may manage tokens",
        ));
    }
    Ok(Some(Caller {
        user_id: live.sub,
        scopes: Scopes::parse(&live.scope).unwrap_or_default(),
        workspace: live.workspace,
        expires_at: live.exp,
        token_id: live.token_id,
    }))
}

/// Token metadata: never the plaintext or the hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub workspace: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// A token just made: its metadata and, this once, its plaintext.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// Shown in this answer only; authmd keeps its hash.
    pub token: String,
}

/// A caller's tokens.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub count: usize,
    pub tokens: Vec<TokenInfo>,
}

impl From<PersonalTokenRow> for TokenInfo {
    fn from(r: PersonalTokenRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes: r
                .scopes
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            workspace: r.workspace,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
        }
    }
}

/// What a caller asks for in `POST /api/tokens`.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub workspace: Option<String>,
    /// Seconds; never past the expiry of the token that makes it.
    pub expires_in: Option<i64>,
}

/// Creates a token with at most the caller's scopes, workspace and expiry; the plaintext is in
/// this answer only.
pub fn create_token(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    ctx: &AuditContext,
    caller: &Caller,
    req: &TokenRequest,
) -> AppResult<CreatedToken> {
    let (name, workspace, expires_in) = (
        req.name.as_deref(),
        req.workspace.as_deref(),
        req.expires_in,
    );
    let wanted = match &req.scopes {
        Some(list) => {
            if list.iter().any(|s| !crate::config::is_scope_token(s)) {
                return Err(AppError::protocol(
                    ErrorCode::InvalidScope,
                    "a scope is malformed",
                ));
            }
            Scopes::from_list(list)
        }
        None => caller.scopes.clone(),
    };
    if !wanted.is_subset(&caller.scopes) {
        return Err(AppError::protocol(
            ErrorCode::InvalidScope,
            format!(
                "cannot grant scopes you do not have: {}",
                wanted.missing_from(&caller.scopes)
            ),
        ));
    }
    let workspace = match (&caller.workspace, workspace) {
        (Some(own), Some(other)) if own != other => {
            return Err(AppError::protocol(
                ErrorCode::AccessDenied,
                "a workspace token cannot act on another workspace",
            ))
        }
        (Some(own), _) => Some(own.clone()),
        (None, requested) => requested.map(str::to_owned),
    };
    if let Some(ws) = &workspace {
        // Checked for the maker of a workspace token too: a member removed since then makes
        // nothing more for it.
        workspaces::may_mint_for(conn, caller, ws)?;
    }
    let name = name.unwrap_or("token").trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            "name must be 1 to 200 characters",
        ));
    }
    let expires_at = token_expiry(config, now, expires_in, caller.expires_at)?;
    let token = PlainToken::generate(&config.tokens.prefixes.personal);
    let row = PersonalTokenRow {
        id: random_id("tok_"),
        token_hash: token.hash().as_str().to_owned(),
        user_id: caller.user_id.clone(),
        workspace,
        name: name.to_owned(),
        prefix: token.display_prefix(),
        scopes: wanted.to_string(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
        expires_at,
        parent_id: caller.token_id.clone(),
    };
    write_tx(conn, |conn| {
        db::accounts::insert_token(conn, &row)?;
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::TokenIssued,
            AuditEntry {
                user_id: Some(&row.user_id),
                detail: Some(
                    json!({ "token_type": "personal_token", "token_id": row.id, "token_prefix": row.prefix, "workspace": row.workspace }),
                ),
                ..Default::default()
            },
        )
    })?;
    Ok(CreatedToken {
        info: TokenInfo::from(row),
        token: token.into_string(),
    })
}

/// When a new token expires: `expires_in` if given, else the deployment's maximum
/// (`tokens.personal_max_ttl_s`, 0 meaning none), and never after the token that makes it.
fn token_expiry(
    config: &Config,
    now: UnixTime,
    expires_in: Option<i64>,
    maker_expires: Option<i64>,
) -> AppResult<Option<i64>> {
    let bad = |msg: String| Err(AppError::protocol(ErrorCode::InvalidRequest, msg));
    let max = config.tokens.personal_max_ttl_s;
    let asked = match expires_in {
        Some(s) if s <= 0 => return bad("expires_in must be a positive number of seconds".into()),
        Some(s) if max > 0 && s > max => {
            return bad(format!(
                "expires_in may be at most {max} seconds on this server"
            ))
        }
        Some(s) => Some(now.saturating_add(s)),
        None if max > 0 => Some(now.saturating_add(max)),
        None => None,
    };
    Ok(match (asked, maker_expires) {
        (Some(at), Some(maker)) if at > maker && expires_in.is_some() => {
            return bad("expires_in would outlive the token that makes it".into())
        }
        // A token never outlives its maker.
        (Some(at), Some(maker)) => Some(at.min(maker)),
        (Some(at), None) => Some(at),
        (None, maker) => maker,
    })
}

pub fn list_tokens(conn: &mut DbConn, caller: &Caller) -> AppResult<Vec<TokenInfo>> {
    Ok(
        db::accounts::user_tokens(conn, &caller.user_id, caller.workspace.as_deref())?
            .into_iter()
            .map(TokenInfo::from)
            .collect(),
    )
}

/// Revokes one of the caller's tokens; another user's (or workspace's) token is `not_found`.
pub fn delete_token(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    caller: &Caller,
    id: &str,
) -> AppResult<()> {
    write_tx(conn, |conn| {
        if !db::accounts::revoke_token(conn, id, &caller.user_id, caller.workspace.as_deref(), now)?
        {
            return Err(AppError::protocol(ErrorCode::NotFound, "no such token"));
        }
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::TokenRevoked,
            AuditEntry {
                user_id: Some(&caller.user_id),
                detail: Some(json!({ "token_type": "personal_token", "token_id": id })),
                ..Default::default()
            },
        )
    })
}

/// One connected agent on the account page.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub registration_id: String,
    pub registration_type: String,
    pub scopes: String,
    pub created_at: i64,
    pub linked: bool,
    /// `(display prefix, last used)` of its live API keys.
    pub keys: Vec<(String, Option<i64>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppView {
    pub client_id: String,
    pub name: String,
    pub scope: String,
    pub granted_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub agents: Vec<AgentView>,
    pub apps: Vec<AppView>,
    pub tokens: Vec<TokenInfo>,
    /// The workspaces the person belongs to (a token can be made for one of them).
    pub workspaces: Vec<workspaces::Workspace>,
}

pub fn overview(conn: &mut DbConn, user_id: &str) -> AppResult<Overview> {
    let mut agents = Vec::new();
    for reg in db::accounts::user_registrations(conn, user_id)? {
        let keys = db::accounts::registration_keys(conn, &reg.id)?
            .into_iter()
            .map(|k| (k.prefix, k.last_used_at))
            .collect();
        agents.push(AgentView {
            registration_id: reg.id,
            registration_type: reg.registration_type.as_str().to_owned(),
            scopes: reg.scopes,
            created_at: reg.created_at,
            linked: reg.link == Some(true),
            keys,
        });
    }
    let apps = db::accounts::user_consents(conn, user_id)?
        .into_iter()
        .map(|(client_id, name, scope, granted_at)| AppView {
            client_id,
            name,
            scope,
            granted_at,
        })
        .collect();
    let tokens = db::accounts::user_tokens(conn, user_id, None)?
        .into_iter()
        .map(TokenInfo::from)
        .collect();
    let workspaces = db::workspaces::of_member(conn, user_id)?
        .into_iter()
        .map(workspaces::Workspace::from)
        .collect();
    Ok(Overview {
        agents,
        apps,
        tokens,
        workspaces,
    })
}

/// What the account page's revoke buttons act on.
#[derive(Debug, Clone)]
pub enum Revocable {
    Agent(String),
    App(String),
    Token(String),
}

/// Revokes something of the signed-in user's; another user's is `not_found`.
pub fn revoke_own(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    user_id: &str,
    what: &Revocable,
) -> AppResult<()> {
    let missing = || AppError::protocol(ErrorCode::NotFound, "nothing of yours by that id");
    match what {
        Revocable::Token(id) => {
            let caller = Caller {
                user_id: user_id.to_owned(),
                scopes: Scopes::default(),
                workspace: None,
                expires_at: None,
                token_id: None,
            };
            delete_token(conn, now, ctx, &caller, id)
        }
        Revocable::Agent(id) => write_tx(conn, |conn| {
            let reg = db::agents::find_registration(conn, id)?
                .filter(|r| r.user_id.as_deref() == Some(user_id))
                .ok_or_else(missing)?;
            let detail = json!({ "reason": "revoked by the user" });
            credentials::revoke_registration(conn, now, ctx, &reg, detail).map(drop)
        }),
        Revocable::App(client_id) => write_tx(conn, |conn| {
            if db::accounts::delete_consent(conn, user_id, client_id)? == 0 {
                return Err(missing());
            }
            let n = credentials::revoke_from(
                conn,
                now,
                credentials::Dying::UserClient { user_id, client_id },
            )?;
            audit::record(
                conn,
                now,
                ctx,
                AuditEvent::TokenRevoked,
                AuditEntry {
                    client_id: Some(client_id),
                    user_id: Some(user_id),
                    detail: Some(
                        json!({ "grants_revoked": n, "reason": "app disconnected by the user" }),
                    ),
                    ..Default::default()
                },
            )
        }),
    }
}
