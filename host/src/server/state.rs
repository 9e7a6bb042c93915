//! What the server holds: where the repository is, its tokens, the job
//! queue, the state database and the counters.

use std::sync::Arc;

use super::metrics::Metrics;
use super::queue::Queue;
use crate::db::StateStore;
use crate::jobs::Context;
use crate::repo::Repository;

pub(crate) use super::fair::Limits;

#[derive(Clone)]
pub(crate) struct ServerState {
    pub ctx: Context,
    /// The single legacy token (`ATTACHE_TOKEN`), an admin, if set.
    pub token: Option<Arc<String>>,
    /// The stored tokens (state directory).
    pub tokens: Arc<crate::access::tokens::Store>,
    pub queue: Arc<Queue>,
    /// Jobs' history, policies and tags.
    pub db: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    /// An open repository for reading requests (listings, searches).
    pub repo: Arc<std::sync::Mutex<Option<Repository>>>,
}

impl ServerState {
    pub(crate) fn new(
        ctx: Context,
        token: Option<String>,
        limits: Limits,
        db: Arc<dyn StateStore>,
        owner: crate::db::owner::Owner,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            queue: Arc::new(Queue::new(
                ctx.clone(),
                limits,
                metrics.clone(),
                db.clone(),
                owner,
            )),
            db,
            tokens: Arc::new(crate::access::tokens::Store::new(&ctx.state)),
            ctx,
            token: token.map(Arc::new),
            metrics,
            repo: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Runs `f` on the repository (opened once, brought up to date with
    /// what other processes wrote before each use), off the async threads.
    pub(crate) async fn with_repo<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Repository) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (slot, ctx) = (self.repo.clone(), self.ctx.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard = slot
                .lock()
                .map_err(|_| anyhow::anyhow!("repository lock poisoned"))?;
            match guard.as_ref() {
                Some(r) => r.refresh()?,
                None => *guard = Some(ctx.repository(false)?),
            }
            f(guard.as_ref().expect("opened above"))
        })
        .await?
    }
}
