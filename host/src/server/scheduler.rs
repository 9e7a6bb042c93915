//! The scheduler: every [`TICK`], the policies whose schedule is due
//! (`fleet::schedule::due`, at the clock's time now) are run as by `policy
//! run`, by the server itself (an admin named `scheduler` in the audit
//! log). A policy's firing is recorded before its jobs are queued, so a
//! server that dies right then does not run it twice; the record is made
//! only if the policy's last firing is still the one this server read, so
//! that of several servers sharing one state database (workers), one runs
//! it.

use std::sync::Arc;
use std::time::Duration;

use super::queue::{now, Queue};
use crate::access::{Principal, Role};
use crate::db::StateStore;
use crate::fleet::schedule::due;

/// How often the schedules are looked at: cron's finest step is a second.
pub(super) const TICK: Duration = Duration::from_secs(1);

/// Who runs scheduled policies, and retries their interrupted jobs.
pub(super) fn scheduler() -> Principal {
    Principal {
        id: "scheduler".into(),
        role: Role::Admin,
        targets: Vec::new(),
        restore_to: Vec::new(),
    }
}

/// Runs due policies until the server stops.
pub(super) async fn run(queue: Arc<Queue>, db: Arc<dyn StateStore>, tick: Duration) {
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let d = db.clone();
        let policies = match tokio::task::spawn_blocking(move || d.policies()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!("scheduler: cannot read the policies: {e}");
                continue;
            }
            Err(e) => {
                tracing::error!("scheduler: {e}");
                continue;
            }
        };
        let t = now();
        for p in policies.into_iter().filter(|p| due(p, t)) {
            let (d, name, previous) = (db.clone(), p.name.clone(), p.last_fired);
            let fired =
                tokio::task::spawn_blocking(move || d.policy_fired(&name, previous, t)).await;
            match fired {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::info!(policy = %p.name, "scheduler: another server runs this firing");
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::error!(policy = %p.name, "scheduler: cannot record the run, not running it: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::error!(policy = %p.name, "scheduler: cannot record the run, not running it: {e}");
                    continue;
                }
            }
            let (q, name) = (queue.clone(), p.name.clone());
            match tokio::task::spawn_blocking(move || q.run_policy(&p, &scheduler())).await {
                Ok(Ok(r)) => {
                    tracing::info!(policy = %name, jobs = r.jobs.len(), "scheduled policy run")
                }
                Ok(Err(e)) if e.status == axum::http::StatusCode::CONFLICT => {
                    tracing::warn!(policy = %name, "scheduled run skipped: {}", e.message)
                }
                Ok(Err(e)) => {
                    tracing::error!(policy = %name, "scheduled policy run failed: {}", e.message)
                }
                Err(e) => tracing::error!(policy = %name, "scheduled policy run failed: {e}"),
            }
        }
    }
}
