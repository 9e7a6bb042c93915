//! A freeze never outlives its bound: `attache` killed with -9 while the
//! guest's filesystems are frozen for a backup, and never restarted, still
//! leaves `/data` writable within the bound plus one second — the runner in
//! the guest thaws it itself. The next job then cleans up what the killed
//! one left.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attache_tests::vm::{serial, GuestVm, TestVm};
use attache_tests::{attache, ok};

#[test]
fn a_killed_server_leaves_no_guest_frozen_past_its_bound() {
    let _serial = serial();
    let t = tempfile::Builder::new()
        .prefix("vmfreeze")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let (repo, state) = (t.path().join("repo"), t.path().join("state"));
    let site = || {
        let mut c = attache(&repo);
        c.env("ATTACHE_STATE_DIR", &state);
        c
    };
    ok(site().arg("init"));
    // Enough data that the stream is still flowing when the server dies.
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..(200usize << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(src.join("big.bin"), &big).expect("write");
    let vms = t.path().join("vms");
    let vm = TestVm::boot(&vms, "vm1", &src);
    let ds = t.path().join("ds");
    ok(site()
        .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(&vms)
        .arg("--datastore")
        .arg(&ds));

    // A writer in the guest: it touches /data every 0.1 s and logs the
    // guest's uptime after each write to /run (a tmpfs, never frozen). The
    // longest gap in its log is how long /data stayed frozen. (The guest
    // agent runs no command while it believes the guest frozen, so the
    // writer is started first.)
    vm.sh(
        "( while :; do touch /data/heartbeat && cut -d' ' -f1 /proc/uptime >> /run/heartbeat.log; \
           sleep 0.1; done ) >/dev/null 2>&1 & echo $! > /run/heartbeat.pid",
    );
    let limit = 3u64;
    let mut job = site()
        .args([
            "backup",
            "hv1/vm1",
            "--plugin",
            "filesystem",
            "--include",
            "/data",
        ])
        .args(["--fsfreeze", "--freeze-limit-secs", &limit.to_string()])
        .env("ATTACHE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.path().join("backup.err")).expect("stderr file"))
        .spawn()
        .expect("spawn attache backup");
    // The server says when it has frozen the guest (the guest agent takes
    // one client at a time, and the server holds it, so the test cannot ask).
    let err_file = t.path().join("backup.err");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&err_file)
        .unwrap_or_default()
        .contains("guest filesystems frozen")
    {
        assert!(Instant::now() < deadline, "the guest was never frozen");
        assert!(
            job.try_wait().expect("wait").is_none(),
            "the backup ended before the test saw the freeze: {}",
            std::fs::read_to_string(&err_file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    job.kill().expect("kill -9 attache");
    let _ = job.wait();

    // No server runs from here on; wait past the bound, then read the
    // writer's log once the guest agent is told the freeze is over.
    std::thread::sleep(Duration::from_secs(limit + 4));
    let _ = Command::new(attache_tests::root().join("tests/vm/qga.py"))
        .arg(vm.socket("qga"))
        .args(["call", "guest-fsfreeze-thaw"])
        .output();
    let log = vm.sh("kill $(cat /run/heartbeat.pid); cat /run/heartbeat.log");
    let times: Vec<f64> = log.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let longest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    eprintln!("/data stayed frozen {longest:.2} s (bound {limit} s), no server running");
    assert!(times.len() > 10, "the writer hardly wrote: {log}");
    assert!(
        longest <= (limit + 1) as f64,
        "/data stayed frozen for {longest:.2} s with no server running; the bound is {limit} s (+1 s allowed)"
    );
    assert!(
        longest >= 1.0,
        "the writer never saw the freeze (longest gap {longest:.2} s): the test proves nothing"
    );

    // The next job undoes what the killed one left attached.
    vm.sh("rm -f /data/big.bin /data/heartbeat");
    ok(site().args([
        "backup",
        "hv1/vm1",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    vm.assert_clean();
}
