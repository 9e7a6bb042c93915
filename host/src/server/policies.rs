//! The routes of backup policies: list, add, show, remove, and run now.
//! Adding and removing are an admin's; running is an operator's too, for
//! policies whose every VM is within its scope.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::queue::{now, PolicyRun};
use super::ServerState;
use crate::access::Principal;
use crate::db::{DbError, PolicyRecord};

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let status = match &e {
            DbError::Conflict(_) => StatusCode::CONFLICT,
            // The state database's server is down or refuses us: this
            // server cannot answer now, and may once it is back.
            DbError::Unreachable { .. } | DbError::Auth { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Runs `f` on the state database off the async threads.
pub(super) async fn db<T: Send + 'static>(
    s: &ServerState,
    f: impl FnOnce(&dyn crate::db::StateStore) -> Result<T, DbError> + Send + 'static,
) -> Result<T, ApiError> {
    let db = s.db.clone();
    tokio::task::spawn_blocking(move || f(db.as_ref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

/// A policy as the API shows it: option values redacted (they may hold
/// secrets, as a job's do).
pub(crate) fn shown(mut p: PolicyRecord) -> PolicyRecord {
    for v in p.options.values_mut() {
        *v = "(redacted)".into();
    }
    p
}

async fn find(s: &ServerState, name: String) -> Result<PolicyRecord, ApiError> {
    let n = name.clone();
    db(s, move |db| db.policy(&n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy {name:?}")))
}

pub(super) async fn list(
    State(s): State<ServerState>,
) -> Result<Json<Vec<PolicyRecord>>, ApiError> {
    let all = db(&s, |db| db.policies()).await?;
    Ok(Json(all.into_iter().map(shown).collect()))
}

pub(super) async fn get(
    State(s): State<ServerState>,
    Path(name): Path<String>,
) -> Result<Json<PolicyRecord>, ApiError> {
    Ok(Json(shown(find(&s, name).await?)))
}

pub(super) async fn add(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    JsonBody(mut p): JsonBody<PolicyRecord>,
) -> Result<(StatusCode, Json<PolicyRecord>), ApiError> {
    p.created = now();
    p.last_fired = None;
    crate::fleet::check::check(&p).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let audit = s.ctx.audit.as_actor(&who.actor());
    let stored = p.clone();
    db(&s, move |db| db.add_policy(&stored)).await?;
    let entry = json!({ "policy": shown(p.clone()) });
    tokio::task::spawn_blocking(move || audit.record("policy.add", entry))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(shown(p))))
}

pub(super) async fn remove(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<PolicyRecord>, ApiError> {
    let p = find(&s, name.clone()).await?;
    let n = name.clone();
    if !db(&s, move |db| db.remove_policy(&n)).await? {
        return Err(ApiError::not_found(format!("no policy {name:?}")));
    }
    let audit = s.ctx.audit.as_actor(&who.actor());
    tokio::task::spawn_blocking(move || audit.record("policy.remove", json!({ "policy": name })))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(shown(p)))
}

/// Runs a policy now: its jobs are queued, and the answer lists them.
pub(super) async fn run(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<PolicyRun>), ApiError> {
    let p = find(&s, name).await?;
    let queue = s.queue.clone();
    // Listing VMs and recording the jobs touch the disk: a blocking thread.
    let run = tokio::task::spawn_blocking(move || queue.run_policy(&p, &who))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(run)))
}
