//! A slow-header flood against `attache serve` (issue 11, finding 7),
//! bounded in count and time and against 127.0.0.1 only: 2,000 connections
//! that start a request and never finish its headers. `/health` keeps
//! answering within a second meanwhile, the server closes them at its
//! header timeout, and its memory returns near where it was.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use attache_tests::attache;
use attache_tests::server::{free_port, request, wait_healthy};

const TOKEN: &str = "flood-test-token-0123456789";
const SLOW: usize = 2_000;

struct Server {
    child: Child,
    _t: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// This process may hold the slow connections (and the server its own, as
/// `attache serve` raises its limit itself).
fn raise_own_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
}

#[test]
fn slow_headers_neither_block_health_nor_keep_memory() {
    raise_own_nofile();
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = attache(&repo)
        .env("ATTACHE_TOKEN", TOKEN)
        .env("ATTACHE_STATE_DIR", t.path().join("state"))
        .env("ATTACHE_CACHE_DIR", t.path().join("cache"))
        .env_remove("ATTACHE_SERVER")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--header-timeout-secs",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let pid = child.id();
    let _server = Server { child, _t: t };
    wait_healthy(&url);
    for _ in 0..20 {
        request(&url, "GET", "/health", None, None);
    }
    let baseline = rss(pid);

    let started = Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // A request begun, its headers never finished.
        let _ = c.write_all(format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ").as_bytes());
        slow.push(c);
    }
    let peak = rss(pid);
    let t0 = Instant::now();
    let (status, _) = request(&url, "GET", "/health", None, None);
    let took = t0.elapsed();
    assert_eq!(status, 200, "/health during the flood");
    assert!(
        took < Duration::from_secs(1),
        "/health took {took:?} during the flood"
    );

    // The server closes every slow connection at its header timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in &mut slow {
        let left = deadline.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .expect("timeout");
        let mut b = [0u8; 512];
        // EOF or reset: closed. Anything else (a timeout) is not.
        loop {
            match c.read(&mut b) {
                Ok(0) => break,
                Ok(_) => continue, // a 408 before closing is fine
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "a slow connection is still open after {:?}: {e}",
                    started.elapsed()
                ),
            }
        }
    }
    let closed_after = started.elapsed();
    drop(slow);
    assert!(
        closed_after < Duration::from_secs(30),
        "closed after {closed_after:?}"
    );
    // The server gives the flood's memory back within a few seconds.
    std::thread::sleep(Duration::from_secs(5));
    let (status, _) = request(&url, "GET", "/health", None, None);
    assert_eq!(status, 200, "/health after the flood");
    let after = rss(pid);
    eprintln!(
        "RSS: baseline {} KiB, with {SLOW} slow connections {} KiB, after {} KiB; all closed after {closed_after:?}",
        baseline >> 10,
        peak >> 10,
        after >> 10
    );
    assert!(
        after < baseline + (8 << 20),
        "memory stays up: baseline {} KiB, after {} KiB",
        baseline >> 10,
        after >> 10
    );
}
