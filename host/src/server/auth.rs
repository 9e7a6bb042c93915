//! Authentication and authorization of every request: the bearer token
//! names a principal (a stored token, or the server's single legacy token,
//! which is an admin), and the route table ([`super::roles`]) says whether
//! its role may use the route: 401 without a valid token, 403 with a JSON
//! error when the role may not. The principal goes to the handler, which
//! checks an operator's scope.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::roles::{self, Need};
use super::ServerState;
use crate::access::tokens::same;
use crate::access::{Principal, Role};

/// The id of the server's single `ATTACHE_TOKEN` (or `--token-file`).
pub(super) const LEGACY_ID: &str = "legacy";

fn principal(state: &ServerState, token: &str) -> Result<Option<Principal>, ApiError> {
    if let Some(legacy) = state.token.as_deref() {
        if same(token.as_bytes(), legacy.as_bytes()) {
            return Ok(Some(Principal {
                id: LEGACY_ID.into(),
                role: Role::Admin,
                targets: Vec::new(),
                restore_to: Vec::new(),
            }));
        }
    }
    state
        .tokens
        .authenticate(token)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub(super) async fn require_token(
    State(state): State<ServerState>,
    mut req: Request,
    next: Next,
) -> Response {
    let need = roles::need(req.method(), req.uri().path());
    if need == Some(Need::Public) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer TOKEN)",
        )
        .into_response();
    };
    let who = match principal(&state, given) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "wrong bearer token").into_response()
        }
        Err(e) => return e.into_response(),
    };
    if let Some(need) = need {
        if !need.allows(who.role) {
            let roles: Vec<&str> = need.roles().iter().map(|r| r.as_str()).collect();
            let why = format!(
                "token {} is an {} token: {} {} needs the role {}",
                who.id,
                who.role,
                req.method(),
                req.uri().path(),
                roles.join(" or ")
            );
            // Who tried what is recorded, off the async threads.
            let audit = state.ctx.audit.as_actor(&who.actor());
            let entry = serde_json::json!({ "method": req.method().as_str(), "path": req.uri().path(), "why": why });
            tokio::task::spawn_blocking(move || {
                if let Err(e) = audit.record("request.denied", entry) {
                    tracing::error!("cannot write the audit log: {e}");
                }
            });
            return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
        }
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}
