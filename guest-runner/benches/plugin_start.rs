//! How long a plugin takes to start: from the verified component bytes to
//! an instance that answered `info` and then `plan` (in a second instance
//! granted nothing, as the runner does before it grants anything), compiled
//! once and then loaded from the cache of precompiled components, as the
//! runner does on every job. Target: under 5 ms from the cache.
//!
//! Needs the agent container `make build` lays out (target/release/agent).
//! Run with `make bench` or
//! `cargo bench --target x86_64-unknown-linux-musl -p guest-runner`.

use std::path::Path;
use std::time::{Duration, Instant};

use guest_runner::manifest::Manifest;
use guest_runner::runtime::{Limits, Operation, PlanRequest, Running, Sandbox, Selected, State};

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/agent");
    let manifest = Manifest::load(&agent).expect("run `make build` first: no agent container");
    let cache = tempfile::tempdir().expect("tempdir");
    let limits = Limits::default();
    let start = |sandbox: &Sandbox| {
        let t = Instant::now();
        let component = sandbox.load(&agent, &manifest, "filesystem").expect("load");
        let state = State::new("filesystem", limits.memory);
        let info = Running::start(sandbox, &component, state, limits)
            .expect("start")
            .info()
            .expect("info");
        assert_eq!(info.name, "filesystem");
        let state = State::new("filesystem", limits.memory);
        let plan = Running::start(sandbox, &component, state, limits)
            .expect("start")
            .plan(&PlanRequest {
                operation: Operation::Backup,
                selection: vec![Selected {
                    id: "/srv/www".into(),
                    kind: None,
                }],
                destination: None,
                options: Vec::new(),
            })
            .expect("plan");
        assert_eq!(plan.paths.len(), 1);
        t.elapsed()
    };

    let t = Instant::now();
    let sandbox = Sandbox::new(Some(cache.path().to_owned())).expect("sandbox");
    let engine = t.elapsed();
    let cold = start(&sandbox);
    let warm: Vec<Duration> = (0..200).map(|_| start(&sandbox)).collect();
    let fresh_engine: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let s = Sandbox::new(Some(cache.path().to_owned())).expect("sandbox");
            start(&s);
            t.elapsed()
        })
        .collect();

    println!(
        "plugin start (filesystem, {} KiB component)",
        manifest
            .plugin("filesystem")
            .map(|p| p.entry.size / 1024)
            .unwrap_or(0)
    );
    println!(
        "  engine + linker setup:                 {:>9.3} ms",
        engine.as_secs_f64() * 1e3
    );
    println!(
        "  first start, compiling:                {:>9.3} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "  cached start (verify+load+instantiate+info+plan): median {:.3} ms, p95 {:.3} ms over {} runs (target < 5 ms)",
        percentile(warm.clone(), 0.5).as_secs_f64() * 1e3,
        percentile(warm.clone(), 0.95).as_secs_f64() * 1e3,
        warm.len()
    );
    println!(
        "  cached start with a new engine (a new runner process): median {:.3} ms",
        percentile(fresh_engine, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "  compile / cached ratio: {:.0}x",
        cold.as_secs_f64() / percentile(warm, 0.5).as_secs_f64()
    );
}
