//! Owned workspaces and their members.

use diesel::prelude::*;

use super::schema::{personal_tokens, users, workspace_members, workspaces};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workspaces)]
#[diesel(treat_none_as_default_value = false)]
pub struct WorkspaceRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub created_at: i64,
}

/// Stores a workspace with its owner as its first member.
pub fn insert(conn: &mut DbConn, row: &WorkspaceRow) -> QueryResult<()> {
    diesel::insert_into(workspaces::table)
        .values(row)
        .execute(conn)?;
    add_member(conn, &row.id, &row.owner_id, row.created_at).map(drop)
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<WorkspaceRow>> {
    workspaces::table
        .find(id)
        .select(WorkspaceRow::as_select())
        .first(conn)
        .optional()
}

/// The workspaces a user belongs to (owned or not), oldest first.
pub fn of_member(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<WorkspaceRow>> {
    workspaces::table
        .inner_join(workspace_members::table)
        .filter(workspace_members::user_id.eq(user_id))
        .order((workspaces::created_at.asc(), workspaces::id.asc()))
        .select(WorkspaceRow::as_select())
        .load(conn)
}

pub fn is_member(conn: &mut DbConn, workspace_id: &str, user_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        workspace_members::table
            .filter(workspace_members::workspace_id.eq(workspace_id))
            .filter(workspace_members::user_id.eq(user_id)),
    ))
    .get_result(conn)
}

/// Adds a member; `false` when they already were one.
pub fn add_member(
    conn: &mut DbConn,
    workspace_id: &str,
    user_id: &str,
    now: i64,
) -> QueryResult<bool> {
    if is_member(conn, workspace_id, user_id)? {
        return Ok(false);
    }
    diesel::insert_into(workspace_members::table)
        .values((
            workspace_members::workspace_id.eq(workspace_id),
            workspace_members::user_id.eq(user_id),
            workspace_members::added_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Removes a member; `false` when they were not one.
pub fn remove_member(conn: &mut DbConn, workspace_id: &str, user_id: &str) -> QueryResult<bool> {
    let n = diesel::delete(
        workspace_members::table
            .filter(workspace_members::workspace_id.eq(workspace_id))
            .filter(workspace_members::user_id.eq(user_id)),
    )
    .execute(conn)?;
    Ok(n == 1)
}

/// `(user id, email)` of each member, in the order they joined.
pub fn members(conn: &mut DbConn, workspace_id: &str) -> QueryResult<Vec<(String, String)>> {
    workspace_members::table
        .inner_join(users::table)
        .filter(workspace_members::workspace_id.eq(workspace_id))
        .order((workspace_members::added_at.asc(), users::id.asc()))
        .select((users::id, users::email))
        .load(conn)
}

/// The live tokens for a workspace (of one member, or of all): their ids.
pub fn live_token_ids(
    conn: &mut DbConn,
    workspace_id: &str,
    user_id: Option<&str>,
) -> QueryResult<Vec<String>> {
    let mut q = personal_tokens::table
        .filter(personal_tokens::workspace.eq(workspace_id))
        .filter(personal_tokens::revoked_at.is_null())
        .select(personal_tokens::id)
        .into_boxed();
    if let Some(user_id) = user_id {
        q = q.filter(personal_tokens::user_id.eq(user_id));
    }
    q.load(conn)
}

/// Deletes a workspace and its member list (its tokens are revoked first, by the caller).
pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<()> {
    diesel::delete(workspace_members::table.filter(workspace_members::workspace_id.eq(id)))
        .execute(conn)?;
    diesel::delete(workspaces::table.find(id))
        .execute(conn)
        .map(drop)
}
