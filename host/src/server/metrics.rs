//! Counters, exposed in the Prometheus text format at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub jobs_submitted: AtomicU64,
    pub jobs_succeeded: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub jobs_cancelled: AtomicU64,
    pub jobs_running: AtomicU64,
    pub jobs_queued: AtomicU64,
    pub bytes_backed_up: AtomicU64,
    pub bytes_added: AtomicU64,
}

impl Metrics {
    pub(crate) fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (labels, v) in lines {
                out += &format!("{name}{labels} {v}\n");
            }
        };
        put(
            "attache_http_requests_total",
            "counter",
            "HTTP requests served.",
            &[(String::new(), g(&self.requests))],
        );
        put(
            "attache_jobs_submitted_total",
            "counter",
            "Jobs submitted.",
            &[(String::new(), g(&self.jobs_submitted))],
        );
        put(
            "attache_jobs_finished_total",
            "counter",
            "Jobs finished, by outcome.",
            &[
                ("{status=\"succeeded\"}".into(), g(&self.jobs_succeeded)),
                ("{status=\"failed\"}".into(), g(&self.jobs_failed)),
                ("{status=\"cancelled\"}".into(), g(&self.jobs_cancelled)),
            ],
        );
        put(
            "attache_jobs_running",
            "gauge",
            "Jobs running now.",
            &[(String::new(), g(&self.jobs_running))],
        );
        put(
            "attache_jobs_queued",
            "gauge",
            "Jobs waiting for a slot.",
            &[(String::new(), g(&self.jobs_queued))],
        );
        put(
            "attache_backup_bytes_total",
            "counter",
            "Content bytes of finished backups.",
            &[(String::new(), g(&self.bytes_backed_up))],
        );
        put(
            "attache_repository_added_bytes_total",
            "counter",
            "Bytes finished backups added to the repository.",
            &[(String::new(), g(&self.bytes_added))],
        );
        out
    }
}
