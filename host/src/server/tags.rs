//! The routes of VM tags, which backup policies select by (`tag:NAME`):
//! every role reads them, an admin sets them (as `attache vm tag` and
//! `vm untag` do), since a tag changes what a policy backs up.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::policies::db;
use super::ServerState;
use crate::access::Principal;
use crate::hypervisor::registry::Registry;

/// One VM's tags.
#[derive(Debug, Serialize)]
pub(super) struct VmTags {
    /// `HV/VM`.
    vm: String,
    tags: Vec<String>,
}

/// A change of one VM's tags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TagChange {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

pub(super) async fn list(State(s): State<ServerState>) -> Result<Json<Vec<VmTags>>, ApiError> {
    let all = db(&s, |db| db.tags()).await?;
    Ok(Json(
        all.into_iter()
            .map(|(vm, tags)| VmTags { vm, tags })
            .collect(),
    ))
}

pub(super) async fn change(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    Path((hv, vm)): Path<(String, String)>,
    JsonBody(c): JsonBody<TagChange>,
) -> Result<Json<VmTags>, ApiError> {
    let target = crate::hypervisor::VmRef::parse(&format!("{hv}/{vm}"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .ok_or_else(|| ApiError::bad_request(format!("{hv}/{vm}: expected HYPERVISOR/VM")))?;
    if c.add.is_empty() && c.remove.is_empty() {
        return Err(ApiError::bad_request("no tag to add or remove"));
    }
    for t in c.add.iter().chain(&c.remove) {
        crate::fleet::check::check_tag(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // Tagging a VM of no registered hypervisor is a typo, not a plan.
    let ctx = s.ctx.clone();
    let name = target.hypervisor.clone();
    let registered = tokio::task::spawn_blocking(move || Registry::for_context(&ctx)?.list())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?
        .iter()
        .any(|h| h.name == name);
    if !registered {
        return Err(ApiError::not_found(format!(
            "no hypervisor {:?} is registered",
            target.hypervisor
        )));
    }
    let vm = target.to_string();
    let (v, add, remove) = (vm.clone(), c.add.clone(), c.remove.clone());
    let tags = db(&s, move |db| {
        if !add.is_empty() {
            db.tag(&v, &add)?;
        }
        if !remove.is_empty() {
            db.untag(&v, &remove)?;
        }
        Ok(db
            .tags()?
            .into_iter()
            .filter(|(t, _)| *t == v)
            .flat_map(|(_, t)| t)
            .collect::<Vec<_>>())
    })
    .await?;
    let audit = s.ctx.audit.as_actor(&who.actor());
    let entry = json!({ "vm": vm, "add": c.add, "remove": c.remove });
    tokio::task::spawn_blocking(move || audit.record("vm.tag", entry))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(VmTags { vm, tags }))
}
