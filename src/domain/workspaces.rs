//! Owned workspaces: a person creates one, adds members by email, and deletes it. A workspace
//! token names its workspace by id; only a member mints one, and deleting the workspace (or
//! removing a member) revokes the tokens that no longer have anyone to speak for.

use serde::Serialize;
use serde_json::json;

use crate::clock::UnixTime;
use crate::db::workspaces::WorkspaceRow;
use crate::db::{self, write_tx, DbConn};
use crate::domain::accounts::Caller;
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::domain::secrets::random_id;
use crate::domain::users;
use crate::error::{AppError, AppResult, ErrorCode};

/// A workspace as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// The owner's user id.
    pub owner: String,
    pub created_at: i64,
}

impl From<WorkspaceRow> for Workspace {
    fn from(r: WorkspaceRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            owner: r.owner_id,
            created_at: r.created_at,
        }
    }
}

/// The caller's workspaces.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkspaceList {
    pub count: usize,
    pub workspaces: Vec<Workspace>,
}

/// One member of a workspace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub workspace_id: String,
    pub user_id: String,
    pub email: String,
}

/// What removing a member or deleting a workspace did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Removed {
    /// `removed` or `deleted`.
    pub status: &'static str,
    /// Tokens that were live and are now revoked.
    pub tokens_revoked: usize,
}

fn denied(msg: &'static str) -> AppError {
    AppError::protocol(ErrorCode::AccessDenied, msg)
}

fn missing() -> AppError {
    AppError::protocol(ErrorCode::NotFound, "no such workspace")
}

/// Workspaces are managed by a person (their session or a personal token), never by a token
/// bound to one workspace.
fn person(caller: &Caller) -> AppResult<&str> {
    if caller.workspace.is_some() {
        return Err(denied("a workspace token cannot manage workspaces"));
    }
    Ok(&caller.user_id)
}

/// The workspace, if the caller is its owner: a member who is not is refused, anyone else
/// learns nothing (404).
fn owned(conn: &mut DbConn, caller: &Caller, id: &str) -> AppResult<WorkspaceRow> {
    let user_id = person(caller)?;
    let ws = db::workspaces::find(conn, id)?.ok_or_else(missing)?;
    if ws.owner_id == user_id {
        return Ok(ws);
    }
    if db::workspaces::is_member(conn, id, user_id)? {
        return Err(denied("only the workspace's owner may do this"));
    }
    Err(missing())
}

fn record(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    event: AuditEvent,
    user_id: &str,
    detail: serde_json::Value,
) -> AppResult<()> {
    audit::record(
        conn,
        now,
        ctx,
        event,
        AuditEntry {
            user_id: Some(user_id),
            detail: Some(detail),
            ..Default::default()
        },
    )
}

/// `POST /api/workspaces`: the caller owns the new workspace and is its first member.
pub fn create(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    caller: &Caller,
    name: &str,
) -> AppResult<Workspace> {
    let owner = person(caller)?.to_owned();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            "name must be 1 to 200 characters",
        ));
    }
    let row = WorkspaceRow {
        id: random_id("ws_"),
        name: name.to_owned(),
        owner_id: owner,
        created_at: now,
    };
    write_tx(conn, |conn| {
        db::workspaces::insert(conn, &row)?;
        record(
            conn,
            now,
            ctx,
            AuditEvent::WorkspaceCreated,
            &row.owner_id,
            json!({ "workspace_id": row.id }),
        )
    })?;
    Ok(row.into())
}

/// `GET /api/workspaces`: those the caller belongs to (a workspace token: its own).
pub fn list(conn: &mut DbConn, caller: &Caller) -> AppResult<WorkspaceList> {
    let workspaces: Vec<Workspace> = db::workspaces::of_member(conn, &caller.user_id)?
        .into_iter()
        .filter(|w| caller.workspace.as_ref().is_none_or(|own| *own == w.id))
        .map(Workspace::from)
        .collect();
    Ok(WorkspaceList {
        count: workspaces.len(),
        workspaces,
    })
}

/// `POST /api/workspaces/{id}/members`: the owner adds a person who has an account.
pub fn add_member(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    caller: &Caller,
    id: &str,
    email: &str,
) -> AppResult<Member> {
    let email = users::normalize_email(email).ok_or_else(|| {
        AppError::protocol(ErrorCode::InvalidRequest, "email is not a valid address")
    })?;
    write_tx(conn, |conn| {
        let ws = owned(conn, caller, id)?;
        let user = db::users::find_by_email(conn, &email)?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(|| {
                AppError::protocol(ErrorCode::NotFound, "no account has that email address")
            })?;
        if db::workspaces::add_member(conn, &ws.id, &user.id, now)? {
            record(
                conn,
                now,
                ctx,
                AuditEvent::WorkspaceMemberAdded,
                &caller.user_id,
                json!({ "workspace_id": ws.id, "member": user.id }),
            )?;
        }
        Ok(Member {
            workspace_id: ws.id,
            user_id: user.id,
            email: user.email,
        })
    })
}

/// `DELETE /api/workspaces/{id}/members/{user_id}`: the member's tokens for the workspace die
/// with their membership. The owner cannot be removed (delete the workspace instead).
pub fn remove_member(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    caller: &Caller,
    id: &str,
    member: &str,
) -> AppResult<Removed> {
    write_tx(conn, |conn| {
        let ws = owned(conn, caller, id)?;
        if member == ws.owner_id {
            return Err(AppError::protocol(
                ErrorCode::InvalidRequest,
                "the owner cannot be removed; delete the workspace instead",
            ));
        }
        if !db::workspaces::remove_member(conn, &ws.id, member)? {
            return Err(AppError::protocol(
                ErrorCode::NotFound,
                "no such member of this workspace",
            ));
        }
        let revoked = revoke_tokens(conn, now, &ws.id, Some(member))?;
        record(
            conn,
            now,
            ctx,
            AuditEvent::WorkspaceMemberRemoved,
            &caller.user_id,
            json!({ "workspace_id": ws.id, "member": member, "tokens_revoked": revoked }),
        )?;
        Ok(Removed {
            status: "removed",
            tokens_revoked: revoked,
        })
    })
}

/// `DELETE /api/workspaces/{id}`: revokes every token for it, then deletes it.
pub fn delete(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    caller: &Caller,
    id: &str,
) -> AppResult<Removed> {
    write_tx(conn, |conn| {
        let ws = owned(conn, caller, id)?;
        let revoked = revoke_tokens(conn, now, &ws.id, None)?;
        db::workspaces::delete(conn, &ws.id)?;
        record(
            conn,
            now,
            ctx,
            AuditEvent::WorkspaceDeleted,
            &caller.user_id,
            json!({ "workspace_id": ws.id, "tokens_revoked": revoked }),
        )?;
        Ok(Removed {
            status: "deleted",
            tokens_revoked: revoked,
        })
    })
}

/// Revokes the workspace's live tokens (one member's, or all) and every token they minted.
fn revoke_tokens(
    conn: &mut DbConn,
    now: UnixTime,
    workspace_id: &str,
    member: Option<&str>,
) -> AppResult<usize> {
    let mut n = 0;
    for token in db::workspaces::live_token_ids(conn, workspace_id, member)? {
        n += db::accounts::revoke_token_tree(conn, &token, now)?;
    }
    Ok(n)
}

/// Whether `caller` may mint a token for workspace `id`: only a member may.
pub fn may_mint_for(conn: &mut DbConn, caller: &Caller, id: &str) -> AppResult<()> {
    if db::workspaces::is_member(conn, id, &caller.user_id)? {
        return Ok(());
    }
    Err(denied(
        "only a member of a workspace may make tokens for it (name it by its id)",
    ))
}
