//! The job queue: jobs wait for a slot under a global limit and a limit per
//! target, run on blocking threads, report progress, and can be cancelled
//! while queued or running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, Semaphore};
use tracing::Instrument;

use super::error::ApiError;
use super::metrics::Metrics;
use super::Limits;
use crate::access::Principal;
use crate::jobs::discover::DiscoverRequest;
use crate::jobs::verify::VerifyRequest;
use crate::jobs::{self, BackupRequest, Context, Control, Progress, RestoreRequest};
use crate::target;

/// A job as submitted: `{"kind": "backup", "backup": {...}}`,
/// `{"kind": "restore", "restore": {...}}`,
/// `{"kind": "verify", "verify": {"read_data": false}}` or
/// `{"kind": "discover", "discover": {"target": "hv1/vm1", ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum JobRequest {
    Backup {
        backup: BackupRequest,
    },
    Restore {
        restore: RestoreRequest,
    },
    Verify {
        #[serde(default)]
        verify: VerifyRequest,
    },
    Discover {
        discover: DiscoverRequest,
    },
}

/// The target name of verify jobs: they take the slots of the whole
/// repository, not of a VM.
pub(crate) const REPOSITORY: &str = "repository";

impl JobRequest {
    /// Checks what can be checked before queueing; the job's kind and the
    /// target whose slots it takes.
    fn check(&self) -> Result<(&'static str, String), ApiError> {
        match self {
            JobRequest::Backup { backup } => {
                target::backup_target(&backup.target)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                guest_runner::manifest::check_name(&backup.plugin)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                if backup.include.is_empty() {
                    return Err(ApiError::bad_request("a backup needs at least one include"));
                }
                Ok(("backup", backup.target.clone()))
            }
            JobRequest::Restore { restore } => {
                target::restore_to(&restore.to)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Ok((
                    "restore",
                    restore.to.split(':').next().unwrap_or_default().to_owned(),
                ))
            }
            JobRequest::Verify { .. } => Ok(("verify", REPOSITORY.to_owned())),
            JobRequest::Discover { discover } => {
                let vm = crate::hypervisor::VmRef::parse(&discover.target)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
                    .ok_or_else(|| {
                        ApiError::bad_request("a discovery's target is a VM: HYPERVISOR/VM")
                    })?;
                if let Some(p) = &discover.plugin {
                    guest_runner::manifest::check_name(p)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
                Ok(("discover", vm.to_string()))
            }
        }
    }

    /// The request as job listings show it: no password.
    fn redacted(&self) -> Self {
        let mut r = self.clone();
        match &mut r {
            JobRequest::Backup { backup } => {
                jobs::redact(&mut backup.app_password, &mut backup.options)
            }
            JobRequest::Restore { restore } => {
                jobs::redact(&mut restore.app_password, &mut restore.options)
            }
            JobRequest::Discover { discover } => {
                jobs::redact(&mut discover.app_password, &mut discover.options)
            }
            JobRequest::Verify { .. } => {}
        }
        r
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub(crate) fn finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

/// What `GET /jobs/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobView {
    pub id: String,
    pub kind: &'static str,
    pub target: String,
    pub status: Status,
    pub request: JobRequest,
    pub progress: Progress,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
}

pub(crate) struct Job {
    view: Mutex<JobView>,
    cancel: AtomicBool,
    events: broadcast::Sender<Value>,
}

impl Job {
    pub(crate) fn view(&self) -> JobView {
        self.view
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Events: `{"event": "progress", ...}` and `{"event": "status", ...}`.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut JobView)) -> JobView {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut v);
        v.clone()
    }

    fn progress(&self, p: &Progress) {
        self.update(|v| v.progress = p.clone());
        let _ = self
            .events
            .send(json!({ "event": "progress", "items": p.items, "bytes": p.bytes }));
    }

    fn set_status(&self, status: Status, result: Option<Value>, error: Option<String>) {
        let view = self.update(|v| {
            v.status = status;
            if status == Status::Running {
                v.started = Some(now());
            }
            if status.finished() {
                v.finished = Some(now());
                v.result = result;
                v.error = error;
            }
        });
        let _ = self.events.send(json!({ "event": "status", "job": view }));
    }
}

/// What a job's blocking part returned: its result as JSON, or why not.
type Outcome = Result<anyhow::Result<Value>, tokio::task::JoinError>;

impl Job {
    /// A queued job of this request, under a fresh random id.
    fn new(kind: &'static str, target: &str, req: &JobRequest) -> Result<Arc<Self>, ApiError> {
        let mut id = [0u8; 8];
        crate::store::crypto::random(&mut id)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let view = JobView {
            id: hex::encode(id),
            kind,
            target: target.to_owned(),
            status: Status::Queued,
            request: req.redacted(),
            progress: Progress::default(),
            result: None,
            error: None,
            created: now(),
            started: None,
            finished: None,
        };
        Ok(Arc::new(Job {
            view: Mutex::new(view),
            cancel: AtomicBool::new(false),
            events: broadcast::channel(64).0,
        }))
    }

    /// The span every line of this job is logged in: its id, kind, target
    /// and (backups) plugin; a restore's plugin is recorded by the restore
    /// once it has read the snapshot.
    fn span(&self, req: &JobRequest) -> tracing::Span {
        let v = self.view();
        let plugin = match req {
            JobRequest::Backup { backup } => Some(backup.plugin.as_str()),
            JobRequest::Discover { discover } => discover.plugin.as_deref(),
            JobRequest::Restore { .. } | JobRequest::Verify { .. } => None,
        };
        tracing::info_span!("job", id = %v.id, kind = v.kind, target = %v.target, plugin)
    }

    /// Runs the job on a blocking thread, in the current span.
    async fn run(self: Arc<Self>, ctx: Context, req: JobRequest) -> Outcome {
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _in = span.entered();
            let ctl = Control {
                progress: &|p| self.progress(p),
                cancel: &self.cancel,
            };
            match req {
                JobRequest::Backup { backup } => jobs::backup::run(&ctx, &backup, &ctl)
                    .and_then(|s| Ok(serde_json::to_value(s)?)),
                JobRequest::Restore { restore } => jobs::restore::run(&ctx, &restore, &ctl)
                    .and_then(|r| Ok(serde_json::to_value(r)?)),
                JobRequest::Verify { verify } => {
                    jobs::verify::run(&ctx, &verify).and_then(|r| Ok(serde_json::to_value(r)?))
                }
                JobRequest::Discover { discover } => jobs::discover::run(&ctx, &discover, &ctl)
                    .and_then(|r| Ok(serde_json::to_value(r)?)),
            }
        })
        .await
    }

    /// Records how the job ended, in its view and the metrics.
    fn finish(&self, metrics: &Metrics, outcome: Outcome) {
        match outcome {
            Ok(Ok(result)) => {
                metrics.jobs_succeeded.fetch_add(1, Relaxed);
                metrics
                    .bytes_backed_up
                    .fetch_add(result["bytes"].as_u64().unwrap_or(0), Relaxed);
                metrics
                    .bytes_added
                    .fetch_add(result["added_bytes"].as_u64().unwrap_or(0), Relaxed);
                tracing::info!("succeeded");
                self.set_status(Status::Succeeded, Some(result), None);
            }
            Ok(Err(e)) if self.cancel.load(Relaxed) => {
                metrics.jobs_cancelled.fetch_add(1, Relaxed);
                tracing::info!("cancelled: {e:#}");
                self.set_status(Status::Cancelled, None, Some(format!("{e:#}")));
            }
            Ok(Err(e)) => {
                metrics.jobs_failed.fetch_add(1, Relaxed);
                tracing::warn!("failed: {e:#}");
                self.set_status(Status::Failed, None, Some(format!("{e:#}")));
            }
            Err(e) => {
                metrics.jobs_failed.fetch_add(1, Relaxed);
                tracing::error!("panicked: {e}");
                self.set_status(Status::Failed, None, Some(format!("the job panicked: {e}")));
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) struct Queue {
    ctx: Context,
    limits: Limits,
    global: Arc<Semaphore>,
    per_target: Mutex<HashMap<String, Arc<Semaphore>>>,
    jobs: Mutex<Vec<Arc<Job>>>,
    metrics: Arc<Metrics>,
}

impl Queue {
    pub(crate) fn new(ctx: Context, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            ctx,
            limits,
            global: Arc::new(Semaphore::new(limits.global.max(1))),
            per_target: Mutex::new(HashMap::new()),
            jobs: Mutex::new(Vec::new()),
            metrics,
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .ok()?
            .iter()
            .find(|j| j.view().id == id)
            .cloned()
    }

    pub(crate) fn list(&self) -> Vec<JobView> {
        self.jobs
            .lock()
            .map(|j| j.iter().map(|j| j.view()).collect())
            .unwrap_or_default()
    }

    /// Checks a request, and that `who` may run it, queues it as a new job
    /// and starts it when its slots are free; the job as queued.
    pub(crate) fn submit(&self, req: JobRequest, who: &Principal) -> Result<Arc<Job>, ApiError> {
        self.permit(&req, who)?;
        let (kind, target) = req.check()?;
        let job = Job::new(kind, &target, &req)?;
        let span = job.span(&req);
        let mut ctx = self.ctx.clone();
        ctx.audit = ctx.audit.for_job(&who.actor(), &job.view().id);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.push(job.clone());
        }
        self.metrics.jobs_submitted.fetch_add(1, Relaxed);
        self.metrics.jobs_queued.fetch_add(1, Relaxed);
        tracing::info!(parent: &span, "queued");
        let slots = (self.global.clone(), self.target_slots(target));
        let (metrics, j) = (self.metrics.clone(), job.clone());
        tokio::spawn(
            async move {
                let (Ok(_g), Ok(_t)) =
                    (slots.0.acquire_owned().await, slots.1.acquire_owned().await)
                else {
                    return;
                };
                metrics.jobs_queued.fetch_sub(1, Relaxed);
                if j.cancel.load(Relaxed) {
                    if let Err(e) = ctx
                        .audit
                        .record("job.end", json!({ "outcome": "cancelled while queued" }))
                    {
                        tracing::error!("cannot write the audit log: {e}");
                    }
                    metrics.jobs_cancelled.fetch_add(1, Relaxed);
                    j.set_status(
                        Status::Cancelled,
                        None,
                        Some("cancelled while queued".into()),
                    );
                    return;
                }
                metrics.jobs_running.fetch_add(1, Relaxed);
                j.set_status(Status::Running, None, None);
                tracing::info!("running");
                let outcome = j.clone().run(ctx, req).await;
                metrics.jobs_running.fetch_sub(1, Relaxed);
                j.finish(&metrics, outcome);
            }
            .instrument(span),
        );
        Ok(job)
    }

    /// Whether `who` may run `req`: a refusal is a 403, and recorded in the
    /// audit log too (who tried what).
    fn permit(&self, req: &JobRequest, who: &Principal) -> Result<(), ApiError> {
        let allowed = match req {
            JobRequest::Backup { backup } => who.may_backup(backup),
            JobRequest::Restore { restore } => who.may_restore(restore),
            JobRequest::Verify { .. } => who.may_verify(),
            JobRequest::Discover { discover } => who.may_discover(discover),
        };
        allowed.map_err(|e| {
            if let Err(err) = self.ctx.audit.as_actor(&who.actor()).record(
                "job.denied",
                json!({ "request": req.redacted(), "why": e.0 }),
            ) {
                tracing::error!("cannot write the audit log: {err}");
            }
            ApiError::new(StatusCode::FORBIDDEN, e.0)
        })
    }

    /// The slots of one target, made on its first job.
    fn target_slots(&self, target: String) -> Arc<Semaphore> {
        let mut m = self.per_target.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(target)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_target.max(1))))
            .clone()
    }

    /// Asks a job to stop: a queued job never starts, a running one stops
    /// at its next check and cleans up.
    pub(crate) fn cancel(&self, id: &str, who: &Principal) -> Result<JobView, ApiError> {
        let job = self
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?;
        who.may_cancel(&job.view().target)
            .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.0))?;
        self.ctx
            .audit
            .as_actor(&who.actor())
            .record("job.cancel", json!({ "job": id }))
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if job.view().status.finished() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("job {id} has already finished"),
            ));
        }
        job.cancel.store(true, Relaxed);
        Ok(job.view())
    }
}
