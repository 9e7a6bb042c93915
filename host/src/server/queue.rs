//! The job queue: jobs wait for their slots (global, per target, per
//! hypervisor, per datastore; handed out fairly by [`super::fair`]), run
//! on blocking threads, report progress, and can be cancelled while queued
//! or running. Every job's life is written to the state database, where
//! it outlives the server.
//!
//! As one of several workers on a shared PostgreSQL state database
//! (`db::cluster`), a job posted here is only stored `queued`; every
//! worker (this one too) claims queued jobs that fit its slots, so a job
//! may run on another worker. A job runs where it was posted when its
//! request carries a password or a password file (neither goes into the
//! database; other options do, as policies' do, until the job ends).
//! Jobs, their listing and their status are read from the database; a
//! job running on another worker shows its stored state (status, times,
//! result), not its live progress, and is cancelled through that worker
//! once it runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::Instrument;

use super::error::ApiError;
use super::fair::{Fair, Limits, Needs};
use super::metrics::Metrics;
use crate::access::Principal;
use crate::db::cluster::{Candidate, Cluster};
use crate::db::owner::Owner;
use crate::db::{JobFilter, JobRecord, PolicyRecord, StateStore};
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

    /// Whether it carries a password or names a password file of this
    /// machine: then it runs only where it was posted.
    fn secret(&self) -> bool {
        match self {
            JobRequest::Backup { backup } => {
                backup.app_password.is_some() || backup.app_password_file.is_some()
            }
            JobRequest::Restore { restore } => {
                restore.app_password.is_some() || restore.app_password_file.is_some()
            }
            JobRequest::Discover { discover } => {
                discover.app_password.is_some() || discover.app_password_file.is_some()
            }
            JobRequest::Verify { .. } => false,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The server stopped (or died) while the job was queued or running;
    /// set by the next server, after the journal's cleanup.
    Interrupted,
}

impl Status {
    pub(crate) fn finished(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(json!(s)).ok()
    }
}

/// What `GET /jobs/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobView {
    pub id: String,
    pub kind: String,
    pub target: String,
    /// The hypervisor of a VM target.
    pub hypervisor: Option<String>,
    /// The backup policy that started it.
    pub policy: Option<String>,
    pub status: Status,
    /// The request, passwords and option values redacted.
    pub request: Value,
    pub progress: Progress,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
}

impl JobView {
    fn record(&self, owner: &str) -> JobRecord {
        JobRecord {
            owner: Some(owner.to_owned()),
            id: self.id.clone(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            hypervisor: self.hypervisor.clone(),
            policy: self.policy.clone(),
            status: self.status.as_str().to_owned(),
            request: self.request.clone(),
            result: self.result.clone(),
            error: self.error.clone(),
            snapshot: match (self.kind.as_str(), &self.result) {
                ("backup", Some(r)) => r["id"].as_str().map(str::to_owned),
                _ => None,
            },
            created: self.created,
            started: self.started,
            finished: self.finished,
        }
    }

    /// A job of the database, as a view (a status this attache does not
    /// know reads as failed, with why).
    pub(crate) fn from_record(r: JobRecord) -> Self {
        let (status, error) = match Status::parse(&r.status) {
            Some(s) => (s, r.error),
            None => (
                Status::Failed,
                Some(format!(
                    "unknown status {:?} in the state database",
                    r.status
                )),
            ),
        };
        JobView {
            id: r.id,
            kind: r.kind,
            target: r.target,
            hypervisor: r.hypervisor,
            policy: r.policy,
            status,
            request: r.request,
            progress: Progress::default(),
            result: r.result,
            error,
            created: r.created,
            started: r.started,
            finished: r.finished,
        }
    }
}

pub(crate) struct Job {
    view: Mutex<JobView>,
    cancel: AtomicBool,
    events: broadcast::Sender<Value>,
    /// True once the job has finished.
    done: watch::Sender<bool>,
    db: Arc<dyn StateStore>,
    /// The id of the queue that runs it (`db::owner`).
    owner: String,
    /// Claimed (or, without workers, run) by this process: its view here
    /// is the live one. A job posted here and not claimed here is the
    /// database's.
    here: AtomicBool,
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

    /// Waits until the job has finished.
    pub(crate) async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
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

    /// Writes the job as it is now to the state database; a failure is
    /// logged, and the job goes on (its history is then incomplete).
    fn persist(&self, view: &JobView) {
        if let Err(e) = self.db.record_job(&view.record(&self.owner)) {
            tracing::error!("cannot record the job in the state database: {e}");
        }
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
        self.persist(&view);
        let _ = self.events.send(json!({ "event": "status", "job": view }));
        if status.finished() {
            self.done.send_replace(true);
        }
    }
}

/// What a job's blocking part returned: its result as JSON, or why not.
type Outcome = Result<anyhow::Result<Value>, tokio::task::JoinError>;

impl Job {
    /// A queued job of this request, under a fresh random id, recorded in
    /// the database (with workers, posted with `post`'s payload and pin).
    fn new(
        kind: &'static str,
        target: &str,
        needs: &Needs,
        req: &JobRequest,
        db: Arc<dyn StateStore>,
        owner: &str,
        post: Option<(&Cluster, Option<String>, Option<&str>)>,
    ) -> Result<Arc<Self>, ApiError> {
        let mut id = [0u8; 8];
        crate::store::crypto::random(&mut id)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let policy = match req {
            JobRequest::Backup { backup } => backup.policy.clone(),
            _ => None,
        };
        let view = JobView {
            id: hex::encode(id),
            kind: kind.to_owned(),
            target: target.to_owned(),
            hypervisor: needs.hypervisor.clone(),
            policy,
            status: Status::Queued,
            request: serde_json::to_value(req.redacted())
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
            progress: Progress::default(),
            result: None,
            error: None,
            created: now(),
            started: None,
            finished: None,
        };
        // A job that cannot be recorded is not run: its history would lie.
        let here = post.is_none();
        match post {
            Some((cluster, payload, pinned)) => cluster
                .post(&view.record(owner), payload.as_deref(), pinned)
                .map_err(ApiError::from)?,
            None => db.record_job(&view.record(owner)).map_err(ApiError::from)?,
        }
        Ok(Self::of_view(view, db, owner, here))
    }

    fn of_view(view: JobView, db: Arc<dyn StateStore>, owner: &str, here: bool) -> Arc<Self> {
        Arc::new(Job {
            view: Mutex::new(view),
            cancel: AtomicBool::new(false),
            events: broadcast::channel(64).0,
            done: watch::channel(false).0,
            db,
            owner: owner.to_owned(),
            here: AtomicBool::new(here),
        })
    }

    /// The span every line of this job is logged in: its id, kind, target,
    /// (backups) plugin and policy; a restore's plugin is recorded by the
    /// restore once it has read the snapshot.
    fn span(&self, req: &JobRequest) -> tracing::Span {
        let v = self.view();
        let plugin = match req {
            JobRequest::Backup { backup } => Some(backup.plugin.as_str()),
            JobRequest::Discover { discover } => discover.plugin.as_deref(),
            JobRequest::Restore { .. } | JobRequest::Verify { .. } => None,
        };
        tracing::info_span!("job", id = %v.id, kind = v.kind, target = %v.target, plugin, policy = v.policy)
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

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The scheduling state: who waits for which slots, and how to tell a
/// waiting job to start (`true`) or that it was cancelled (`false`).
struct Slots {
    fair: Fair<String>,
    starts: HashMap<String, oneshot::Sender<bool>>,
}

/// Starts every queued job that can start now.
fn dispatch(slots: &Mutex<Slots>) {
    let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
    while let Some((id, needs)) = s.fair.next() {
        let started = s.starts.remove(&id).is_some_and(|tx| tx.send(true).is_ok());
        if !started {
            // Its task is gone: the slots are free again.
            s.fair.done(&needs);
        }
    }
}

/// Frees the slots a job held and starts what can start now.
fn release(slots: &Mutex<Slots>, needs: &Needs) {
    slots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .fair
        .done(needs);
    dispatch(slots);
}

/// What `policy run` started.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyRun {
    pub policy: String,
    /// One backup job per selected VM.
    pub jobs: Vec<JobView>,
    /// Hypervisors whose VMs could not be listed, with why.
    pub unreachable: Vec<(String, String)>,
    /// Ends once every job has ended and the retention is applied.
    #[serde(skip)]
    pub done: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) struct Queue {
    ctx: Context,
    db: Arc<dyn StateStore>,
    /// This queue's claim: its jobs are not another server's to call
    /// interrupted while it lives.
    owner: Owner,
    slots: Arc<Mutex<Slots>>,
    jobs: Mutex<Vec<Arc<Job>>>,
    metrics: Arc<Metrics>,
    /// Policies with jobs of a run that have not ended: a run's jobs
    /// never overlap the same policy's previous run's.
    running: Arc<Mutex<HashSet<String>>>,
    /// Requests posted here and not started here yet (with workers), with
    /// the context they run in: a pinned job's password is only here.
    pending: Mutex<HashMap<String, (JobRequest, Context)>>,
    /// Rung when a job is posted or slots free up: time to claim.
    wake: Arc<tokio::sync::Notify>,
}

/// The backup job of policy `p` on VM `target`, its run `attempt` there
/// (0 the first; see [`Queue::retry_interrupted`]).
fn policy_request(p: &PolicyRecord, target: &str, attempt: u32) -> JobRequest {
    JobRequest::Backup {
        backup: BackupRequest {
            target: target.to_owned(),
            plugin: p.plugin.clone(),
            include: p.include.clone(),
            fsfreeze: false,
            freeze_limit_secs: 10,
            timeout_secs: None,
            options: p.options.clone(),
            memory_limit_mib: None,
            deadline_secs: None,
            app_password: None,
            app_password_file: None,
            policy: Some(p.name.clone()),
            attempt,
        },
    }
}

/// What a job posted for any worker carries in the database.
#[derive(Serialize, Deserialize)]
struct Payload {
    request: JobRequest,
    /// What the server set in the request and a request never carries in
    /// from outside (`BackupRequest::policy`, `attempt`), so that the
    /// worker that claims it runs it as posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default)]
    attempt: u32,
    /// Who posted it (the audit log's actor of its run).
    actor: String,
    /// The repository of the worker it was posted to, as that worker
    /// names it: only a worker of the same repository runs it.
    repository: String,
}

impl Payload {
    /// The payload of `request`: what the server set in it moves to the
    /// payload's own fields (a request refuses them when read back).
    fn new(mut request: JobRequest, actor: String, repository: String) -> Self {
        let (policy, attempt) = match &mut request {
            JobRequest::Backup { backup } => {
                (backup.policy.take(), std::mem::take(&mut backup.attempt))
            }
            _ => (None, 0),
        };
        Self {
            request,
            policy,
            attempt,
            actor,
            repository,
        }
    }

    /// The request as it was posted, with what the server had set in it.
    fn into_request(self) -> JobRequest {
        let mut request = self.request;
        if let JobRequest::Backup { backup } = &mut request {
            backup.policy = self.policy;
            backup.attempt = self.attempt;
        }
        request
    }
}

impl Queue {
    pub(crate) fn new(
        ctx: Context,
        limits: Limits,
        metrics: Arc<Metrics>,
        db: Arc<dyn StateStore>,
        owner: Owner,
    ) -> Self {
        Self {
            ctx,
            db,
            owner,
            slots: Arc::new(Mutex::new(Slots {
                fair: Fair::new(limits),
                starts: HashMap::new(),
            })),
            jobs: Mutex::new(Vec::new()),
            metrics,
            running: Arc::new(Mutex::new(HashSet::new())),
            pending: Mutex::new(HashMap::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// A queue of its own, with the server's default limits, for a
    /// command that runs jobs here (`attache policy run` without a server).
    pub(crate) fn standalone(ctx: Context, db: Arc<dyn StateStore>) -> anyhow::Result<Self> {
        let owner = Owner::claim(&ctx.state)?;
        Ok(Self::new(
            ctx,
            Limits::default(),
            Arc::new(Metrics::default()),
            db,
            owner,
        ))
    }

    /// The workers this queue is one of, if any.
    fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.ctx.cluster.as_ref()
    }

    /// A job of this server (live, with its progress and events).
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .ok()?
            .iter()
            .find(|j| j.view().id == id)
            .cloned()
    }

    /// A job running (or run) here: its live view.
    fn get_here(&self, id: &str) -> Option<Arc<Job>> {
        self.get(id).filter(|j| j.here.load(Relaxed))
    }

    /// A job of this server, or of the database's history.
    pub(crate) fn view(&self, id: &str) -> Result<Option<JobView>, ApiError> {
        if let Some(j) = self.get_here(id) {
            return Ok(Some(j.view()));
        }
        Ok(self.db_call(|db| db.job(id))?.map(JobView::from_record))
    }

    fn db_call<T>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> Result<T, crate::db::DbError>,
    ) -> Result<T, ApiError> {
        f(self.db.as_ref()).map_err(ApiError::from)
    }

    /// Jobs of the history matching `filter`, newest first; this server's
    /// with their live progress.
    pub(crate) fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, ApiError> {
        let live: HashMap<String, JobView> = self
            .jobs
            .lock()
            .map(|j| {
                j.iter()
                    .filter(|j| j.here.load(Relaxed))
                    .map(|j| (j.view().id, j.view()))
                    .collect()
            })
            .unwrap_or_default();
        let stored = self.db_call(|db| db.jobs(filter))?;
        Ok(stored
            .into_iter()
            .map(|r| match live.get(&r.id) {
                Some(v) => v.clone(),
                None => JobView::from_record(r),
            })
            .collect())
    }

    /// What a job takes slots of.
    fn needs(&self, target: &str) -> Needs {
        let Ok(Some(vm)) = crate::hypervisor::VmRef::parse(target) else {
            return Needs {
                target: target.to_owned(),
                hypervisor: None,
                datastore: None,
            };
        };
        let datastore = crate::hypervisor::registry::Registry::for_context(&self.ctx)
            .and_then(|r| r.get(&vm.hypervisor))
            .ok()
            .and_then(|hv| crate::fleet::select::datastore_of(&hv, &vm.vm));
        Needs {
            target: target.to_owned(),
            hypervisor: Some(vm.hypervisor),
            datastore,
        }
    }

    /// Checks a request, and that `who` may run it, queues it as a new job
    /// and starts it when its slots are free; the job as queued. With
    /// workers it is stored for any worker (this one too) to claim.
    pub(crate) fn submit(&self, req: JobRequest, who: &Principal) -> Result<Arc<Job>, ApiError> {
        self.permit(&req, who)?;
        let (kind, target) = req.check()?;
        let needs = self.needs(&target);
        let post = match self.cluster() {
            Some(c) if req.secret() => Some((c.as_ref(), None, Some(c.id.as_str()))),
            Some(c) => {
                let payload = serde_json::to_string(&Payload::new(
                    req.clone(),
                    who.actor(),
                    self.ctx.repo.display().to_string(),
                ))
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                Some((c.as_ref(), Some(payload), None))
            }
            None => None,
        };
        let shared = post.is_some();
        let job = Job::new(
            kind,
            &target,
            &needs,
            &req,
            self.db.clone(),
            &self.owner.id,
            post,
        )?;
        let id = job.view().id;
        let mut ctx = self.ctx.clone();
        ctx.audit = ctx.audit.for_job(&who.actor(), &id);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.push(job.clone());
        }
        self.metrics.jobs_submitted.fetch_add(1, Relaxed);
        self.metrics.jobs_queued.fetch_add(1, Relaxed);
        if shared {
            tracing::info!(parent: &job.span(&req), "queued for the workers");
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, (req, ctx));
            self.wake.notify_one();
            return Ok(job);
        }
        self.start(job.clone(), req, needs, ctx);
        Ok(job)
    }

    /// Runs `job` once its slots are free.
    fn start(&self, job: Arc<Job>, req: JobRequest, needs: Needs, ctx: Context) {
        let id = job.view().id;
        let span = job.span(&req);
        tracing::info!(parent: &span, "queued");
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            s.starts.insert(id.clone(), tx);
            s.fair.push(id.clone(), needs.clone());
        }
        let (metrics, j, slots) = (self.metrics.clone(), job.clone(), self.slots.clone());
        let (cluster, wake) = (self.ctx.cluster.clone(), self.wake.clone());
        tokio::spawn(
            async move {
                let go = rx.await.unwrap_or(false);
                metrics.jobs_queued.fetch_sub(1, Relaxed);
                if !go || j.cancel.load(Relaxed) {
                    if go {
                        release(&slots, &needs);
                    }
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
                if let Some(c) = cluster {
                    // The options it ran with are not kept past its end.
                    let r = tokio::task::spawn_blocking(move || c.drop_payload(&id)).await;
                    if let Ok(Err(e)) = r {
                        tracing::warn!("cannot clear the job's stored request: {e}");
                    }
                }
                release(&slots, &needs);
                wake.notify_one();
            }
            .instrument(span),
        );
        dispatch(&self.slots);
    }

    /// Claims the queued jobs this worker's free slots take (as its fair
    /// scheduling would start them) and starts them; how many.
    pub(crate) fn claim(&self) -> Result<usize, crate::db::DbError> {
        let Some(cluster) = self.cluster().cloned() else {
            return Ok(0);
        };
        let mut sim = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fair
            .clone();
        let mut needs_of = HashMap::new();
        let claimed = cluster.claim(
            &mut |cands: &[Candidate]| {
                let repository = self.ctx.repo.display().to_string();
                for c in cands {
                    let ours = match &c.payload {
                        None => true,
                        Some(p) => serde_json::from_str::<Payload>(p)
                            .map(|p| p.repository == repository)
                            // Claimed and failed with why.
                            .unwrap_or(true),
                    };
                    if !ours {
                        continue;
                    }
                    let n = self.needs(&c.target);
                    needs_of.insert(c.id.clone(), n.clone());
                    sim.push(c.id.clone(), n);
                }
                let mut picked = HashSet::new();
                while let Some((id, _)) = sim.next() {
                    picked.insert(id);
                }
                picked
            },
            now(),
        )?;
        let n = claimed.len();
        for c in claimed {
            let id = c.record.id.clone();
            let needs = needs_of
                .remove(&id)
                .unwrap_or_else(|| self.needs(&c.record.target));
            let posted_here = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            let local = self.get(&id);
            let (req, ctx) = match posted_here {
                Some(rc) => rc,
                None => match c.payload.as_deref().map(serde_json::from_str::<Payload>) {
                    Some(Ok(p)) => {
                        let mut ctx = self.ctx.clone();
                        ctx.audit = ctx.audit.for_job(&p.actor, &id);
                        (p.into_request(), ctx)
                    }
                    other => {
                        let why = match other {
                            Some(Err(e)) => format!("its stored request does not parse: {e}"),
                            _ => "its request is not stored (posted by an older attache, or its worker restarted)".into(),
                        };
                        tracing::error!(job = %id, "claimed, cannot run: {why}");
                        let j = Job::of_view(
                            JobView::from_record(c.record),
                            self.db.clone(),
                            &self.owner.id,
                            true,
                        );
                        j.set_status(Status::Failed, None, Some(why));
                        continue;
                    }
                },
            };
            let job = match local {
                Some(j) => j,
                None => {
                    let j = Job::of_view(
                        JobView::from_record(c.record),
                        self.db.clone(),
                        &self.owner.id,
                        true,
                    );
                    if let Ok(mut jobs) = self.jobs.lock() {
                        jobs.push(j.clone());
                    }
                    self.metrics.jobs_queued.fetch_add(1, Relaxed);
                    j
                }
            };
            job.here.store(true, Relaxed);
            tracing::info!(job = %id, worker = %cluster.id, "claimed");
            self.start(job, req, needs, ctx);
        }
        Ok(n)
    }

    /// Jobs posted here that another worker ran: once the database says
    /// they have ended, they end here too (a policy run waits on them).
    pub(crate) fn follow(&self) {
        let away: Vec<Arc<Job>> = self
            .jobs
            .lock()
            .map(|j| {
                j.iter()
                    .filter(|j| !j.here.load(Relaxed) && !j.view().status.finished())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for j in away {
            let id = j.view().id;
            match self.db.job(&id) {
                Ok(Some(r)) => {
                    let v = JobView::from_record(r);
                    if v.status.finished() {
                        self.ended_away(&j, v);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %id, "cannot follow the job: {e}"),
            }
        }
    }

    /// A job posted here has ended elsewhere (or was cancelled queued).
    fn ended_away(&self, j: &Job, v: JobView) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&v.id);
        self.metrics.jobs_queued.fetch_sub(1, Relaxed);
        *j.view.lock().unwrap_or_else(|p| p.into_inner()) = v.clone();
        let _ = j.events.send(json!({ "event": "status", "job": v }));
        j.done.send_replace(true);
    }

    /// Rung when there may be something to claim.
    pub(crate) fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Runs policy `p` now: one backup job per VM it selects, each tagged
    /// with its name; once they have all ended, its retention is applied
    /// to its own snapshots. `who` must be allowed to back up every VM
    /// selected, or nothing is queued. While jobs of a run of `p` have not
    /// ended, another run is refused (409): a slow fleet run does not pile
    /// up behind its schedule.
    pub(crate) fn run_policy(
        &self,
        p: &PolicyRecord,
        who: &Principal,
    ) -> Result<PolicyRun, ApiError> {
        if !self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(p.name.clone())
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("policy {} is running already", p.name),
            ));
        }
        let r = self.start_policy(p, who);
        if r.is_err() {
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&p.name);
        }
        r
    }

    /// Queues again, as the scheduler, each job among `ids` that was
    /// interrupted and whose policy allows another run (`retries`, counted
    /// by the job's `attempt`); the new jobs' ids. Called by whoever marked
    /// them (the worker that reaped their dead worker, a server starting
    /// after one died), so each is retried once.
    pub(crate) fn retry_interrupted(&self, ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for id in ids {
            match self.retry(id) {
                Ok(Some(new)) => {
                    tracing::warn!(job = %id, retry = %new, "an interrupted job of a policy runs again");
                    out.push(new);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(job = %id, status = %e.status, "cannot run an interrupted job again: {}", e.message)
                }
            }
        }
        out
    }

    /// [`Queue::retry_interrupted`] of one job: the new job's id, if it
    /// runs again.
    fn retry(&self, id: &str) -> Result<Option<String>, ApiError> {
        let Some(rec) = self.db_call(|db| db.job(id))? else {
            return Ok(None);
        };
        let Some(name) = rec.policy.as_deref() else {
            return Ok(None);
        };
        if rec.status != Status::Interrupted.as_str() || rec.kind != "backup" {
            return Ok(None);
        }
        // Removed since: nothing to run again.
        let Some(p) = self.db_call(|db| db.policy(name))? else {
            return Ok(None);
        };
        let attempt = rec.request["backup"]["attempt"].as_u64().unwrap_or(0);
        if attempt >= u64::from(p.retries) {
            return Ok(None);
        }
        let attempt = attempt as u32 + 1;
        let who = super::scheduler::scheduler();
        let job = self.submit(policy_request(&p, &rec.target, attempt), &who)?;
        let new = job.view().id;
        self.ctx
            .audit
            .as_actor(&who.actor())
            .record(
                "policy.retry",
                json!({ "policy": p.name, "target": rec.target, "interrupted": id, "job": new, "attempt": attempt }),
            )
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(Some(new))
    }

    /// [`Queue::run_policy`] once `p` is marked running.
    fn start_policy(&self, p: &PolicyRecord, who: &Principal) -> Result<PolicyRun, ApiError> {
        let internal =
            |e: anyhow::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
        let hypervisors = crate::hypervisor::registry::Registry::for_context(&self.ctx)
            .and_then(|r| r.list())
            .map_err(internal)?;
        let tags = self.db_call(|db| db.tags())?;
        let sel = crate::fleet::select::select(&p.vms, &hypervisors, &tags);
        for (hv, why) in &sel.unreachable {
            tracing::warn!(policy = %p.name, hypervisor = %hv, "its VMs cannot be listed: {why}");
        }
        let requests: Vec<JobRequest> = sel
            .targets
            .iter()
            .map(|t| policy_request(p, t, 0))
            .collect();
        // All or nothing: an operator whose scope misses one VM runs none.
        for r in &requests {
            self.permit(r, who)?;
        }
        self.ctx
            .audit
            .as_actor(&who.actor())
            .record(
                "policy.run",
                json!({ "policy": p.name, "targets": sel.targets, "unreachable": sel.unreachable }),
            )
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut jobs = Vec::new();
        for r in requests {
            jobs.push(self.submit(r, who)?);
        }
        tracing::info!(policy = %p.name, jobs = jobs.len(), "policy run queued");
        let views = jobs.iter().map(|j| j.view()).collect();
        let (ctx, name, keep) = (self.ctx.clone(), p.name.clone(), p.keep);
        let actor = who.actor();
        let running = self.running.clone();
        let done = tokio::spawn(async move {
            for j in &jobs {
                j.finished().await;
            }
            // The next run may start; this one's retention only forgets
            // what it lists, and keeps the newest of it.
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            retain(ctx, name, keep, actor).await;
        });
        Ok(PolicyRun {
            policy: p.name.clone(),
            jobs: views,
            unreachable: sel.unreachable,
            done: Some(done),
        })
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

    /// Asks a job to stop: a queued job never starts, a running one stops
    /// at its next check and cleans up.
    pub(crate) fn cancel(&self, id: &str, who: &Principal) -> Result<JobView, ApiError> {
        if self.cluster().is_some() && self.get_here(id).is_none() {
            return self.cancel_shared(id, who);
        }
        let Some(job) = self.get(id) else {
            return Err(match self.db_call(|db| db.job(id))? {
                Some(_) => ApiError::new(
                    StatusCode::CONFLICT,
                    format!("job {id} has already finished"),
                ),
                None => ApiError::not_found(format!("no job {id:?}")),
            });
        };
        self.cancel_allowed(who, &job.view().target, id)?;
        if job.view().status.finished() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("job {id} has already finished"),
            ));
        }
        job.cancel.store(true, Relaxed);
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if s.fair.remove(&id.to_owned()) {
            if let Some(tx) = s.starts.remove(id) {
                let _ = tx.send(false);
            }
        }
        Ok(job.view())
    }
}

impl Queue {
    /// Whether `who` may cancel job `id` on `target` (403 if not); the
    /// cancel is in the audit log before anything is cancelled.
    fn cancel_allowed(&self, who: &Principal, target: &str, id: &str) -> Result<(), ApiError> {
        who.may_cancel(target)
            .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.0))?;
        self.ctx
            .audit
            .as_actor(&who.actor())
            .record("job.cancel", json!({ "job": id }))
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(())
    }

    /// [`Queue::cancel`] of a job this worker does not run: one still
    /// queued is cancelled in the database (no worker claims it then); one
    /// running on another worker is that worker's to cancel.
    fn cancel_shared(&self, id: &str, who: &Principal) -> Result<JobView, ApiError> {
        let Some(cluster) = self.cluster() else {
            return Err(ApiError::not_found(format!("no job {id:?}")));
        };
        let Some(stored) = self.db_call(|db| db.job(id))? else {
            return Err(ApiError::not_found(format!("no job {id:?}")));
        };
        self.cancel_allowed(who, &stored.target, id)?;
        if cluster.cancel_queued(id, now()).map_err(ApiError::from)? {
            self.metrics.jobs_cancelled.fetch_add(1, Relaxed);
            let v = self
                .db_call(|db| db.job(id))?
                .map(JobView::from_record)
                .ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?;
            if let Some(j) = self.get(id) {
                self.ended_away(&j, v.clone());
            }
            return Ok(v);
        }
        let now_stored = self.db_call(|db| db.job(id))?;
        match now_stored {
            Some(r) if r.status == "running" => {
                let worker = cluster
                    .worker_of(id)
                    .map_err(ApiError::from)?
                    .unwrap_or_default();
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("job {id} runs on worker {worker}: cancel it through that worker"),
                ))
            }
            Some(_) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("job {id} has already finished"),
            )),
            None => Err(ApiError::not_found(format!("no job {id:?}"))),
        }
    }
}

/// Applies policy `name`'s retention `keep` to its snapshots, recorded in
/// the audit log as `actor`'s.
async fn retain(ctx: Context, name: String, keep: crate::db::records::Keep, actor: String) {
    if keep.retention().is_empty() {
        return;
    }
    let n = name.clone();
    let audit = ctx.audit.as_actor(&actor);
    let r = tokio::task::spawn_blocking(move || {
        let repo = ctx.repository(false)?;
        crate::fleet::retain::apply(&repo, &n, keep)
    })
    .await;
    let entry = match r {
        Ok(Ok(gone)) => {
            tracing::info!(policy = %name, forgotten = gone.len(), "policy retention applied");
            json!({ "policy": name, "forgotten": gone })
        }
        Ok(Err(e)) => {
            tracing::error!(policy = %name, "policy retention failed: {e:#}");
            json!({ "policy": name, "error": format!("{e:#}") })
        }
        Err(e) => {
            tracing::error!(policy = %name, "policy retention panicked: {e}");
            json!({ "policy": name, "error": e.to_string() })
        }
    };
    if let Err(e) = audit.record("policy.retention", entry) {
        tracing::error!("cannot write the audit log: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy's job claimed by another worker runs as the policy's, and
    /// as the same attempt: neither comes from a request from outside (a
    /// request naming them is refused), so the stored payload carries them.
    #[test]
    fn a_posted_policy_job_keeps_its_policy_and_attempt() {
        let p = PolicyRecord {
            name: "nightly".into(),
            vms: vec!["hv1/*".into()],
            plugin: "filesystem".into(),
            include: vec!["/data".into()],
            options: Default::default(),
            schedule: "0 3 * * *".into(),
            keep: Default::default(),
            retries: 2,
            created: 0,
            last_fired: None,
        };
        let req = policy_request(&p, "hv1/vm1", 2);
        // A request that names them is refused, as it must be from outside.
        assert!(serde_json::from_str::<JobRequest>(&serde_json::to_string(&req).unwrap()).is_err());
        let stored =
            serde_json::to_string(&Payload::new(req, "scheduler".into(), "/r".into())).unwrap();
        let back: Payload = serde_json::from_str(&stored).unwrap();
        let JobRequest::Backup { backup } = back.into_request() else {
            panic!("a backup")
        };
        assert_eq!(backup.policy.as_deref(), Some("nightly"));
        assert_eq!((backup.attempt, backup.target.as_str()), (2, "hv1/vm1"));
        // A payload stored by an older attache has neither.
        let old = r#"{"request":{"kind":"backup","backup":{"target":"hv1/vm1","plugin":"filesystem","include":["/data"]}},"actor":"a","repository":"/r"}"#;
        let JobRequest::Backup { backup } =
            serde_json::from_str::<Payload>(old).unwrap().into_request()
        else {
            panic!("a backup")
        };
        assert_eq!((backup.policy, backup.attempt), (None, 0));
    }
}
