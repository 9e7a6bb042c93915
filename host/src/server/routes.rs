//! The routes and their handlers.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Extension;
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::error::{ApiError, JsonBody};
use super::hypervisors::HypervisorView;
use super::queue::{JobRequest, JobView};
use super::{auth, console, openapi, policies, tags, tree, ServerState};
use crate::access::tokens::{NewToken, TokenError};
use crate::access::Principal;

pub(super) fn router(state: ServerState) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/ui/{file}", get(console::file))
        .route("/health", get(health))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(metrics))
        .route("/snapshots", get(snapshots))
        .route("/snapshots/{id}", get(snapshot))
        .route("/snapshots/{id}/items", get(items))
        .route("/snapshots/{id}/children", get(children))
        .route("/find", get(find))
        .route("/hypervisors", get(hypervisors))
        .route("/jobs", get(list_jobs).post(submit_job))
        .route("/policies", get(policies::list).post(policies::add))
        .route(
            "/policies/{id}",
            get(policies::get).delete(policies::remove),
        )
        .route("/policies/{id}/run", post(policies::run))
        .route("/tags", get(tags::list))
        .route("/tags/{hv}/{vm}", post(tags::change))
        .route("/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/audit", get(audit_log))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and logs every request, with the server's time to answer (until
/// the head of the answer; a stream's body goes on after).
async fn observe(State(s): State<ServerState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let t0 = std::time::Instant::now();
    let res = next.run(req).await;
    s.metrics.requests.fetch_add(1, Relaxed);
    let micros = t0.elapsed().as_micros() as u64;
    tracing::info!(%method, path, status = res.status().as_u16(), micros, "request");
    res
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn snapshots(State(s): State<ServerState>) -> Result<Json<Value>, ApiError> {
    let snaps = s.with_repo(|r| Ok(r.store.snapshots()?)).await?;
    Ok(Json(
        serde_json::to_value(snaps).map_err(anyhow::Error::from)?,
    ))
}

async fn snapshot(
    State(s): State<ServerState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.with_repo(move |r| r.find_snapshot(&id)).await?;
    Ok(Json(
        serde_json::to_value(snap).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Deserialize)]
struct ItemsQuery {
    prefix: Option<String>,
}

async fn items(
    State(s): State<ServerState>,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> Result<Json<Value>, ApiError> {
    let items = s
        .with_repo(move |r| {
            let snap = r.find_snapshot(&id)?;
            let items = r.items(&snap, q.prefix.as_deref())?;
            Ok(items.into_iter().map(|i| i.record).collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(
        serde_json::to_value(items).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Deserialize)]
struct ChildrenQuery {
    dir: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// The most children one page lists.
const MAX_PAGE: usize = 5000;

/// One level of a snapshot's tree (see [`tree`]).
async fn children(
    State(s): State<ServerState>,
    Path(id): Path<String>,
    Query(q): Query<ChildrenQuery>,
) -> Result<Json<Value>, ApiError> {
    let dir = q.dir.filter(|d| !d.is_empty() && d != "/");
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(1000).min(MAX_PAGE));
    let listing = s
        .with_repo(move |r| {
            let snap = r.find_snapshot(&id)?;
            let ids = r.item_ids(&snap, dir.as_deref())?;
            let mut listing = tree::list(&ids, dir.as_deref(), offset, limit);
            let page: Vec<&str> = listing.children.iter().map(|c| c.id.as_str()).collect();
            let items = r.catalog.records(&snap.id, &page)?;
            tree::fill(&mut listing, items);
            Ok(listing)
        })
        .await?;
    Ok(Json(
        serde_json::to_value(listing).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Deserialize)]
struct FindQuery {
    pattern: Option<String>,
}

async fn find(
    State(s): State<ServerState>,
    Query(q): Query<FindQuery>,
) -> Result<Json<Value>, ApiError> {
    let pattern = q
        .pattern
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("the query needs ?pattern=GLOB"))?;
    let hits = s.with_repo(move |r| r.catalog.find(&pattern)).await?;
    Ok(Json(
        serde_json::to_value(hits).map_err(anyhow::Error::from)?,
    ))
}

/// The registered hypervisors, their VMs and what is attached to them.
async fn hypervisors(State(s): State<ServerState>) -> Result<Json<Vec<HypervisorView>>, ApiError> {
    let journal = crate::hypervisor::journal::Journal::for_context(&s.ctx);
    let ctx = s.ctx.clone();
    let list = tokio::task::spawn_blocking(move || {
        let registry = crate::hypervisor::registry::Registry::for_context(&ctx)?;
        super::hypervisors::list(&registry, &journal)
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok(Json(list))
}

#[derive(Deserialize)]
struct JobsQuery {
    policy: Option<String>,
    vm: Option<String>,
    #[serde(default)]
    failed: bool,
    limit: Option<usize>,
}

/// How many jobs `GET /jobs` lists without `?limit`, and at most: a
/// fleet's history grows by thousands of jobs a day.
const JOBS_DEFAULT: usize = 1_000;
const JOBS_MAX: usize = 10_000;

/// The job history, newest first, filtered.
async fn list_jobs(
    State(s): State<ServerState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let filter = crate::db::JobFilter {
        policy: q.policy,
        vm: q.vm,
        failed: q.failed,
        limit: Some(q.limit.unwrap_or(JOBS_DEFAULT).min(JOBS_MAX)),
    };
    let jobs = tokio::task::spawn_blocking(move || s.queue.list(&filter))
        .await
        .map_err(anyhow::Error::from)??;
    Ok(Json(jobs))
}

async fn submit_job(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<JobRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    // Recording the job in the state database touches the disk.
    let job = tokio::task::spawn_blocking(move || s.queue.submit(req, &who))
        .await
        .map_err(anyhow::Error::from)??;
    Ok((StatusCode::ACCEPTED, Json(job.view())))
}

async fn get_job(
    State(s): State<ServerState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let view = s
        .queue
        .view(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?;
    Ok(Json(view))
}

async fn cancel_job(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(s.queue.cancel(&id, &who)?)))
}

#[derive(Deserialize)]
struct AuditQuery {
    since: Option<String>,
}

/// The audit log's entries, oldest first.
async fn audit_log(
    State(s): State<ServerState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let since = match &q.since {
        Some(t) => Some(
            crate::audit::parse_since(t).map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        ),
        None => None,
    };
    let path = crate::audit::path(&s.ctx.state);
    let entries = tokio::task::spawn_blocking(move || crate::audit::read(&path, since))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(anyhow::Error::from)?;
    Ok(Json(entries))
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let status = match &e {
            TokenError::Invalid(_) => StatusCode::BAD_REQUEST,
            TokenError::NotFound(_) => StatusCode::NOT_FOUND,
            TokenError::Store { .. } | TokenError::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn list_tokens(State(s): State<ServerState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(s.tokens.list()?.iter().map(|e| e.listed()).collect()))
}

/// Creates a token; the answer is the only place it is shown.
async fn create_token(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let audit = s.ctx.audit.as_actor(&who.actor());
    // The store and the log are written durably: off the async threads.
    let (token, entry) = tokio::task::spawn_blocking(move || s.tokens.create(&new, &audit))
        .await
        .map_err(anyhow::Error::from)??;
    let mut v = entry.listed();
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(v)))
}

async fn revoke_token(
    State(s): State<ServerState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let audit = s.ctx.audit.as_actor(&who.actor());
    let gone = tokio::task::spawn_blocking(move || s.tokens.revoke(&id, &audit))
        .await
        .map_err(anyhow::Error::from)??;
    Ok(Json(gone.listed()))
}

/// Server-sent events: the job's state now, then `progress` and `status`
/// events until it finishes.
async fn job_events(
    State(s): State<ServerState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // A job of an earlier server: its state, and the stream ends.
    let (rx, now) = match s.queue.get(&id) {
        Some(job) => (Some(job.subscribe()), job.view()),
        None => (
            None,
            s.queue
                .view(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?,
        ),
    };
    let first = Event::default()
        .event("status")
        .json_data(json!({ "event": "status", "job": now }))
        .unwrap_or_default();
    let done = now.status.finished();
    let rest = stream::unfold((rx, done), |(rx, done)| async move {
        let mut rx = rx?;
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(v) => {
                    let kind = v["event"].as_str().unwrap_or("message").to_owned();
                    let finished = kind == "status"
                        && v["job"]["status"]
                            .as_str()
                            .and_then(super::queue::Status::parse)
                            .is_some_and(super::queue::Status::finished);
                    let ev = Event::default()
                        .event(kind)
                        .json_data(&v)
                        .unwrap_or_default();
                    return Some((Ok(ev), (Some(rx), finished)));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream::once(async { Ok(first) }).chain(rest)).keep_alive(KeepAlive::default()))
}
