//! How long checking a signed container takes (issue 13): a container of
//! the runner and two plugins (filesystem and sql, each with its
//! precompiled form) signed by one publisher, checked as the host and the
//! runner check it. Target: under 5 ms each.
//!
//! - host, local job: parse the trust, verify the signature and that the
//!   runner and every plugin are vouched for, check the runner's hash
//!   (what `attache` does before it runs a local runner): from its stamp
//!   when the runner is unchanged, and hashing it when it is new;
//! - host, container build: the same and every plugin's files hashed (what
//!   it does before it builds, places or attaches a container);
//! - runner: parse the trust it was handed, verify the signature and that
//!   the runner and the job's plugin are vouched for, hash that plugin's
//!   component and precompiled form (before it loads the plugin).
//!
//! Needs the agent container `make build` lays out (target/release/agent).
//! Run with `make bench`, or `cargo bench -p guest-runner
//! --no-default-features --bench verify` (the host's build) and `cargo
//! bench --target x86_64-unknown-linux-musl -p guest-runner --bench
//! verify` (the runner's).

use std::path::Path;
use std::time::{Duration, Instant};

use guest_runner::manifest::{Manifest, RUNNER_FILE};
use guest_runner::trust::key::PrivateKey;
use guest_runner::trust::{sign_container, stamp, Scope, Trust};

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn time(label: &str, runs: usize, mut f: impl FnMut()) {
    f(); // warm the page cache
    let v: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    println!(
        "{label:<50} median {:>7.3} ms   p90 {:>7.3} ms",
        percentile(v.clone(), 0.5).as_secs_f64() * 1e3,
        percentile(v, 0.9).as_secs_f64() * 1e3
    );
}

fn main() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/agent");
    let full = Manifest::load(&agent).expect("run `make build` first: no agent container");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir(dir.join("plugins")).expect("plugins");
    std::fs::copy(agent.join(RUNNER_FILE), dir.join(RUNNER_FILE)).expect("runner");
    let mut manifest = full.clone();
    manifest
        .plugins
        .retain(|p| p.name == "filesystem" || p.name == "sql");
    assert_eq!(
        manifest.plugins.len(),
        2,
        "the agent has filesystem and sql"
    );
    for p in &manifest.plugins {
        let files =
            std::iter::once(&p.entry.file).chain(p.precompiled.as_ref().map(|c| &c.entry.file));
        for f in files {
            std::fs::copy(agent.join(f), dir.join(f)).expect("plugin");
        }
    }
    manifest.write(dir).expect("manifest");
    let key = PrivateKey::from_seed(&[9; 32]);
    sign_container(dir, &key, 1).expect("sign");
    let text = format!(
        "format = 1\n[[publisher]]\nname = \"bench\"\nkey = \"{}\"\nrunner = true\nplugins = [\"filesystem\", \"sql\"]\n",
        key.public()
    );
    let runs = 200;
    println!(
        "container: runner ({} MB) + filesystem + sql, with precompiled forms",
        manifest.runner.size >> 20
    );
    let stamp = dir.join("stamp");
    let runner = dir.join(RUNNER_FILE);
    time("host, local job (runner unchanged: stamp)", runs, || {
        let trust = Trust::parse(&text, "bench").expect("trust");
        let v = trust.verify(dir, Scope::All).expect("verify");
        assert!(v.unsigned_allowed.is_none());
        assert!(stamp::matches(&stamp, &runner, &v.manifest.runner.blake3).expect("runner"));
    });
    time("host, local job (runner new: hashed)", runs / 4, || {
        let trust = Trust::parse(&text, "bench").expect("trust");
        let v = trust.verify(dir, Scope::All).expect("verify");
        let _ = std::fs::remove_file(&stamp);
        assert!(stamp::matches(&stamp, &runner, &v.manifest.runner.blake3).expect("runner"));
    });
    time(
        "host, container build or VM job (+ plugin hashes)",
        runs,
        || {
            let trust = Trust::parse(&text, "bench").expect("trust");
            let v = trust.verify(dir, Scope::All).expect("verify");
            assert!(stamp::matches(&stamp, &runner, &v.manifest.runner.blake3).expect("runner"));
            for p in &v.manifest.plugins {
                v.manifest.read_verified(dir, &p.name).expect("plugin");
                if let Some(c) = &p.precompiled {
                    v.manifest
                        .read_verified_precompiled(dir, &p.name, &c.engine)
                        .expect("precompiled");
                }
            }
        },
    );
    time("runner, before loading a plugin", runs, || {
        let trust = Trust::parse(&text, "bench").expect("trust");
        let v = trust
            .verify(dir, Scope::Plugin("filesystem"))
            .expect("verify");
        v.manifest.read_verified(dir, "filesystem").expect("plugin");
        let engine = &v.manifest.plugin("filesystem").expect("entry").precompiled;
        if let Some(c) = engine {
            v.manifest
                .read_verified_precompiled(dir, "filesystem", &c.engine)
                .expect("precompiled");
        }
    });
    time("  of which signature and trust alone", runs, || {
        let trust = Trust::parse(&text, "bench").expect("trust");
        trust.verify(dir, Scope::All).expect("verify");
    });
}
