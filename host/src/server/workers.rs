//! A worker's duties beside its API, when several `attache serve` share a
//! PostgreSQL state database (`db::cluster`): claim queued jobs whenever
//! a job is posted or a slot frees up (and every second, for jobs posted
//! to other workers), beat the heartbeat, follow jobs posted here that
//! other workers run, and reap dead workers: revert what they left
//! attached, mark their jobs interrupted.

use std::sync::Arc;
use std::time::Duration;

use super::queue::{now, Queue};
use crate::db::cluster::{Cluster, HEARTBEAT};
use crate::hypervisor::journal::{Entry, Journal};

/// How often queued jobs are looked for without being woken.
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// Starts the worker's tasks; they run until the server stops.
pub(super) fn spawn(queue: Arc<Queue>, cluster: Arc<Cluster>, journal: Journal) {
    tokio::spawn(claims(queue.clone()));
    tokio::spawn(heartbeats(queue.clone(), cluster.clone()));
    tokio::spawn(reaps(queue, cluster, journal));
}

async fn claims(queue: Arc<Queue>) {
    let wake = queue.wake();
    loop {
        let q = queue.clone();
        match tokio::task::spawn_blocking(move || q.claim()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("cannot claim jobs: {e}"),
            Err(e) => tracing::error!("claiming jobs panicked: {e}"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(CLAIM_EVERY) => {}
        }
    }
}

async fn heartbeats(queue: Arc<Queue>, cluster: Arc<Cluster>) {
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let c = cluster.clone();
        match tokio::task::spawn_blocking(move || c.heartbeat()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tracing::error!(
                worker = %cluster.id,
                "this worker was taken for dead (its heartbeat lapsed) and its jobs marked interrupted; registered again"
            ),
            Ok(Err(e)) => tracing::error!("cannot beat the heartbeat: {e}"),
            Err(e) => tracing::error!("the heartbeat panicked: {e}"),
        }
        let q = queue.clone();
        let _ = tokio::task::spawn_blocking(move || q.follow()).await;
    }
}

async fn reaps(queue: Arc<Queue>, cluster: Arc<Cluster>, journal: Journal) {
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (c, j) = (cluster.clone(), journal.clone());
        let q = queue.clone();
        match tokio::task::spawn_blocking(move || reap_all(&c, &j, &q)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => queue.wake().notify_one(),
            Ok(Err(e)) => tracing::error!("cannot reap dead workers: {e}"),
            Err(e) => tracing::error!("reaping dead workers panicked: {e}"),
        }
    }
}

/// Reaps every dead worker no other live worker is reaping, and queues
/// again the interrupted jobs whose policy says so; how many it reaped.
fn reap_all(
    cluster: &Cluster,
    journal: &Journal,
    queue: &Queue,
) -> Result<usize, crate::db::DbError> {
    let mut n = 0;
    for worker in cluster.dead()? {
        let mut clean = |text: &str, _held: &crate::db::cluster::PgLock| match serde_json::from_str::<
            Entry,
        >(text)
        {
            Ok(e) => journal.revert(e, None).complete,
            Err(err) => {
                tracing::warn!(%worker, "a journal entry does not parse: {err}");
                false
            }
        };
        let Some(r) = cluster.reap(&worker, now(), &mut clean)? else {
            continue;
        };
        n += 1;
        tracing::warn!(
            worker = %r.worker,
            cleaned = ?r.cleaned,
            incomplete = ?r.incomplete,
            interrupted = ?r.interrupted,
            "a dead worker is reaped: its VMs cleaned, its jobs marked interrupted"
        );
        queue.retry_interrupted(&r.interrupted);
    }
    Ok(n)
}
