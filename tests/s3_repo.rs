//! The repository on S3-compatible object storage (issue 17, part 1),
//! against a real SeaweedFS started per test: every repository command, a
//! flipped byte in a pack object, two writers at once, `kill -9` during a
//! backup, and a lease of a killed holder that expires.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attache_tests::seaweed::Seaweed;
use attache_tests::{attache_isolated, fails, ok, tree, BACKUP_LOCAL, PASSWORD};
use object_store::ObjectStore as _;
use object_store::ObjectStoreExt as _;
use serde_json::Value;

/// A test's server, bucket and local directories.
struct S3Repo {
    w: Seaweed,
    url: String,
    prefix: String,
    dir: tempfile::TempDir,
    objects: Arc<object_store::aws::AmazonS3>,
    rt: tokio::runtime::Runtime,
}

impl S3Repo {
    fn new() -> Self {
        let w = Seaweed::start();
        let (bucket, prefix) = ("backups".to_owned(), "site-a/repo".to_owned());
        w.create_bucket(&bucket);
        let objects = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(w.endpoint())
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id(&w.access_key)
            .with_secret_access_key(&w.secret_key)
            .build()
            .expect("client");
        S3Repo {
            url: format!("s3://{bucket}/{prefix}"),
            prefix,
            w,
            dir: tempfile::tempdir().expect("tempdir"),
            objects: Arc::new(objects),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// An `attache` on the repository with cache and state directories of
    /// its own (`who` tells two machines apart).
    fn attache_as(&self, who: &str) -> Command {
        let d = self.dir.path();
        let mut c = attache_isolated(
            &d.join(format!("{who}.cache")),
            &d.join(format!("{who}.state")),
        );
        c.arg("--repo")
            .arg(&self.url)
            .env("ATTACHE_PASSWORD", PASSWORD);
        self.w.env(&mut c);
        c
    }

    fn attache(&self) -> Command {
        self.attache_as("a")
    }

    /// An `attache` with this server's settings on another repository URL.
    fn attache_at(&self, url: &str) -> Command {
        let d = self.dir.path();
        let mut c = attache_isolated(&d.join("x.cache"), &d.join("x.state"));
        c.arg("--repo").arg(url).env("ATTACHE_PASSWORD", PASSWORD);
        self.w.env(&mut c);
        c
    }

    fn backup(&self, include: &Path) -> Value {
        serde_json::from_str(&ok(self.attache().args(BACKUP_LOCAL).arg(include))).expect("JSON")
    }

    fn snapshots(&self) -> Vec<Value> {
        serde_json::from_str(&ok(self.attache().args(["snapshots", "--json"]))).expect("JSON")
    }

    fn restore(&self, id: &str, to: &Path) {
        ok(self
            .attache()
            .args(["restore", id, "--to"])
            .arg(format!("local:{}", to.display())));
    }

    fn key(&self, rel: &str) -> object_store::path::Path {
        object_store::path::Path::from(format!("{}/{rel}", self.prefix))
    }

    /// The repository's objects below `dir`, relative to it, with sizes.
    fn list(&self, dir: &str) -> Vec<(String, u64)> {
        let (o, p) = (self.objects.clone(), self.key(dir));
        let metas: Vec<object_store::ObjectMeta> = self.rt.block_on(async move {
            use futures_util::TryStreamExt as _;
            o.list(Some(&p)).try_collect().await.expect("list")
        });
        let base = format!("{}/", self.prefix);
        metas
            .into_iter()
            .map(|m| {
                let k = m.location.to_string();
                (k.strip_prefix(&base).unwrap_or(&k).to_owned(), m.size)
            })
            .collect()
    }

    fn get(&self, rel: &str) -> Vec<u8> {
        let (o, p) = (self.objects.clone(), self.key(rel));
        self.rt
            .block_on(async move { o.get(&p).await?.bytes().await })
            .expect("get")
            .to_vec()
    }

    fn put(&self, rel: &str, bytes: Vec<u8>) {
        let (o, p) = (self.objects.clone(), self.key(rel));
        self.rt
            .block_on(async move { o.put(&p, bytes.into()).await })
            .expect("put");
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

#[test]
fn every_repository_command_works_on_s3_and_a_flipped_byte_is_found() {
    let r = S3Repo::new();
    let t = r.dir.path();
    // A missing bucket is said clearly, naming it.
    let e = fails(r.attache_at("s3://no-such-bucket/x").arg("init"));
    assert!(
        e.contains("s3://no-such-bucket") && e.contains("no such bucket"),
        "{e}"
    );
    ok(r.attache().arg("init"));
    let e = fails(r.attache().arg("init"));
    assert!(e.contains("already holds a repository"), "{e}");
    // The layout of a local repository, as objects.
    let keys: Vec<String> = r.list("").into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.contains(&"config".to_owned()) && keys.contains(&"keys/default".to_owned()),
        "{keys:?}"
    );

    let src = t.join("src");
    tree::make(&src, 60, 3 << 20);
    let first = r.backup(&src);
    std::fs::write(src.join("added.txt"), b"one more file").expect("write");
    let second = r.backup(&src);
    assert!(
        second["added_bytes"].as_u64().expect("added") < 1 << 20,
        "unchanged data is stored once: {second}"
    );
    let snaps = r.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(!r.list("data").is_empty() && !r.list("index").is_empty());
    assert_eq!(r.list("snapshots").len(), 2);

    // Listing and find answer from the catalog; restore is byte-identical.
    let found = ok(r.attache().args(["find", "added.txt"]));
    assert!(found.contains(&id(&second)[..8]), "{found}");
    let out = t.join("out");
    r.restore(&id(&second), &out);
    tree::assert_same(&src, &attache_tests::restored(&out, &src));
    // A second machine, with an empty cache, sees the same.
    let other: Vec<Value> =
        serde_json::from_str(&ok(r.attache_as("b").args(["snapshots", "--json"]))).expect("JSON");
    assert_eq!(other.len(), 2);
    ok(r.attache().args(["verify", "--read-data"]));

    // Forget and prune.
    ok(r.attache().args(["forget", "--keep-last", "1", "--prune"]));
    let snaps = r.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(id(&snaps[0]), id(&second));
    ok(r.attache().arg("prune"));
    ok(r.attache().args(["verify", "--read-data"]));
    let out2 = t.join("out2");
    r.restore(&id(&second), &out2);
    tree::assert_same(&src, &attache_tests::restored(&out2, &src));
    let _ = first;

    // A flipped byte in a pack object is found and named by its URL.
    let (pack, _) = r
        .list("data")
        .into_iter()
        .max_by_key(|(_, s)| *s)
        .expect("a pack");
    let mut bytes = r.get(&pack);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    r.put(&pack, bytes);
    let o = attache_tests::output(r.attache().args(["verify", "--read-data"]));
    let report =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "verify passed a damaged pack: {report}"
    );
    assert!(
        report.contains(&format!("{}/{pack}", r.url)),
        "the damaged pack is named by its URL: {report}"
    );
    // A restore, which reads neighbouring chunks in one request, names the
    // damaged pack too (the chunk is read again alone, and fails)...
    let e = fails(
        r.attache()
            .args(["restore", &id(&second), "--to"])
            .arg(format!("local:{}", t.join("out3").display())),
    );
    assert!(e.contains(&format!("{}/{pack}", r.url)), "{e}");
    // ...and a pack cut short: its read comes back short.
    let bytes = r.get(&pack);
    r.put(&pack, bytes[..bytes.len() / 3].to_vec());
    let e = fails(
        r.attache()
            .args(["restore", &id(&second), "--to"])
            .arg(format!("local:{}", t.join("out4").display())),
    );
    assert!(e.contains(&format!("{}/{pack}", r.url)), "{e}");
    assert!(e.contains("truncated"), "{e}");
}

/// Runs `c` with the S3 backend's request log on; returns its stdout and
/// the requests it made (`METHOD KEY`, e.g. `GET index/ab…`).
fn requests(c: &mut Command) -> (String, Vec<String>) {
    let o = attache_tests::output(c.env("ATTACHE_LOG", "attache::store::backend::s3=debug"));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{c:?} failed: {err}");
    let reqs = err
        .lines()
        .filter_map(|l| l.split_once(" s3 ").map(|(_, r)| r.to_owned()))
        .collect();
    (String::from_utf8_lossy(&o.stdout).into_owned(), reqs)
}

/// The GETs among `reqs` of objects under `dir/`.
fn gets<'a>(reqs: &'a [String], dir: &str) -> Vec<&'a str> {
    let p = format!("GET {dir}/");
    reqs.iter()
        .filter(|r| r.starts_with(&p))
        .map(String::as_str)
        .collect()
}

#[test]
fn listings_read_index_and_snapshots_from_the_local_copy_checked_by_hash() {
    let r = S3Repo::new();
    let t = r.dir.path();
    ok(r.attache().arg("init"));
    let src = t.join("src");
    tree::make(&src, 40, 1 << 20);
    let first = r.backup(&src);
    std::fs::write(src.join("added.txt"), b"one more file").expect("write");
    let second = r.backup(&src);
    let (n_index, n_snaps) = (r.list("index").len(), r.list("snapshots").len());
    assert!(n_index >= 2 && n_snaps == 2, "{n_index} {n_snaps}");

    // A machine with an empty cache GETs every index file and snapshot
    // once: the request log does count them.
    let (out, reqs) = requests(r.attache_as("c").args(["snapshots", "--json"]));
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&out)
            .expect("JSON")
            .len(),
        2
    );
    assert_eq!(gets(&reqs, "index").len(), n_index, "{reqs:#?}");
    assert_eq!(gets(&reqs, "snapshots").len(), n_snaps, "{reqs:#?}");

    // After that, listing, find and ls list the two directories and GET
    // none of their objects.
    for args in [
        vec!["snapshots", "--json"],
        vec!["find", "added.txt"],
        vec!["ls", &id(&second)[..8]],
    ] {
        let (out, reqs) = requests(r.attache_as("c").args(&args));
        assert!(
            reqs.iter().any(|r| r == "LIST index/") && reqs.iter().any(|r| r == "LIST snapshots/"),
            "{args:?}: {reqs:#?}"
        );
        assert!(gets(&reqs, "index").is_empty(), "{args:?}: {reqs:#?}");
        assert!(gets(&reqs, "snapshots").is_empty(), "{args:?}: {reqs:#?}");
        if args[0] != "snapshots" {
            assert!(out.contains("added.txt"), "{args:?}: {out}");
        }
    }

    // A damaged copy in the cache is found by its hash, fetched again and
    // mended; the answer is the repository's.
    let objects = t.join("c.cache/objects");
    let repo_dir = std::fs::read_dir(&objects)
        .expect("the object cache")
        .next()
        .expect("one repository")
        .expect("entry")
        .path();
    let snap_key = format!("snapshots/{}", id(&first));
    let copy = repo_dir.join(&snap_key);
    let good = std::fs::read(&copy).expect("cached snapshot");
    assert_eq!(good, r.get(&snap_key));
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    std::fs::write(&copy, &bad).expect("tamper");
    let index_key = r.list("index")[0].0.clone();
    let icopy = repo_dir.join(&index_key);
    std::fs::write(&icopy, b"not the index file").expect("tamper");
    let (out, reqs) = requests(r.attache_as("c").args(["snapshots", "--json"]));
    let listed: Vec<Value> = serde_json::from_str(&out).expect("JSON");
    assert_eq!(listed.len(), 2, "{out}");
    assert!(listed.iter().all(|s| s.get("damaged").is_none()), "{out}");
    assert_eq!(gets(&reqs, "snapshots"), vec![format!("GET {snap_key}")]);
    assert_eq!(gets(&reqs, "index"), vec![format!("GET {index_key}")]);
    assert_eq!(std::fs::read(&copy).expect("mended"), good);
    assert_eq!(std::fs::read(&icopy).expect("mended"), r.get(&index_key));

    // verify reads the repository's objects, not the copies: a damaged
    // snapshot object is found though its cached copy is good.
    let mut remote = r.get(&snap_key);
    remote[10] ^= 1;
    r.put(&snap_key, remote);
    let o = attache_tests::output(r.attache_as("c").arg("verify"));
    let report =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "verify passed a damaged snapshot: {report}"
    );
    assert!(report.contains(&id(&first)), "{report}");
    r.put(&snap_key, good);

    // A forgotten snapshot's copy is dropped at the next listing.
    ok(r.attache_as("c").args(["forget", "--keep-last", "1"]));
    ok(r.attache_as("c").args(["snapshots"]));
    assert!(!copy.exists(), "the forgotten snapshot's copy is dropped");
    assert!(repo_dir.join(format!("snapshots/{}", id(&second))).exists());
}

#[test]
fn two_writers_back_up_at_once_and_both_snapshots_verify() {
    let r = S3Repo::new();
    let t = r.dir.path();
    ok(r.attache().arg("init"));
    let (a, b) = (t.join("a"), t.join("b"));
    tree::make(&a, 40, 8 << 20);
    tree::make(&b, 40, 8 << 20);
    std::fs::write(b.join("only-in-b"), b"b").expect("write");
    let start = |who: &str, src: &Path| {
        let mut c = r.attache_as(who);
        c.args(BACKUP_LOCAL)
            .arg(src)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn")
    };
    let (pa, pb) = (start("a", &a), start("b", &b));
    let (oa, ob) = (
        pa.wait_with_output().expect("a"),
        pb.wait_with_output().expect("b"),
    );
    for o in [&oa, &ob] {
        assert!(
            o.status.success(),
            "a concurrent backup failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let ja: Value = serde_json::from_slice(&oa.stdout).expect("JSON");
    let jb: Value = serde_json::from_slice(&ob.stdout).expect("JSON");
    let snaps = r.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    ok(r.attache().args(["verify", "--read-data"]));
    for (src, j) in [(&a, &ja), (&b, &jb)] {
        let out = t.join(format!("out-{}", id(j)));
        r.restore(&id(j), &out);
        tree::assert_same(src, &attache_tests::restored(&out, src));
    }
}

/// `attache serve` on the S3 repository runs its jobs (on the server's
/// blocking threads) through the same backend: backup, listing, find and
/// restore through the server, then a verify of what it wrote.
#[test]
fn the_server_backs_up_into_and_restores_from_s3() {
    const TOKEN: &str = "s3-test-token-0123456789abcdef";
    let r = S3Repo::new();
    let t = r.dir.path();
    ok(r.attache().arg("init"));
    let served = attache_tests::server::Served::start_as(r.attache_as("server"), TOKEN, &[]);
    let via = |args: &[&str]| -> Command {
        let mut c = attache_isolated(&t.join("client.cache"), &t.join("client.state"));
        c.env("ATTACHE_TOKEN", TOKEN)
            .arg("--server")
            .arg(&served.url)
            .args(args);
        c
    };
    let src = t.join("src");
    tree::make(&src, 30, 2 << 20);
    let mut backup = via(&BACKUP_LOCAL);
    backup.arg(&src);
    let out: Value = serde_json::from_str(&ok(&mut backup)).expect("JSON");
    let id = id(&out);
    assert!(ok(&mut via(&["snapshots"])).contains(&id[..8]));
    let hits: Vec<Value> =
        serde_json::from_str(&ok(&mut via(&["find", "big.bin", "--json"]))).expect("JSON");
    assert_eq!(hits.len(), 1, "{hits:?}");
    let dest = t.join("restored");
    ok(&mut via(&[
        "restore",
        &id,
        "--to",
        &format!("local:{}", dest.display()),
    ]));
    tree::assert_same(&src, &attache_tests::restored(&dest, &src));
    drop(served);
    assert_eq!(r.list("snapshots").len(), 1);
    ok(r.attache().args(["verify", "--read-data"]));
}

/// Starts `c`, and kills it with SIGKILL once `ready` says so (or after
/// `max`); waits for it.
fn kill_when(mut c: Command, max: Duration, ready: impl Fn() -> bool) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + max;
    while Instant::now() < deadline && !ready() {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `c` run as if on another machine: in a UTS namespace of its own with
/// another host name, so its locks are not judged by its process id.
fn on_other_machine(c: &Command) -> Command {
    let mut o = Command::new("unshare");
    o.args([
        "--uts",
        "sh",
        "-c",
        "hostname other-machine && exec \"$0\" \"$@\"",
    ])
    .arg(c.get_program())
    .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => o.env(k, v),
            None => o.env_remove(k),
        };
    }
    o
}

#[test]
fn kill_9_leaves_the_repository_verifiable_and_a_dead_holders_lease_expires() {
    let r = S3Repo::new();
    let t = r.dir.path();
    ok(r.attache().arg("init"));
    let src = t.join("src");
    tree::make(&src, 300, 40 << 20);
    let good = id(&r.backup(&src));
    let more = t.join("more");
    std::fs::create_dir(&more).expect("mkdir");
    tree::random_file(&more.join("new.bin"), 60 << 20, 7);
    // Killed at several points, from start-up to the middle of the data.
    for delay in [150, 600, 1500] {
        let mut c = r.attache();
        c.args(["backup", "local", "--plugin", "filesystem", "--include"])
            .arg(&src)
            .arg("--include")
            .arg(&more);
        kill_when(c, Duration::from_millis(delay), || false);
        for s in r.snapshots() {
            assert!(
                s["items"].as_u64().unwrap_or(0) >= 300,
                "a listed snapshot is complete: {s}"
            );
        }
        ok(r.attache().args(["verify", "--read-data"]));
    }
    // A prune on another machine, killed while it holds its lease (of
    // 3 s): the next prune is refused until the lease runs out, then takes
    // it over and proceeds. The prune is given work (a forgotten snapshot)
    // and killed as soon as its lease object appears.
    let mut caught = false;
    for round in 0..5 {
        let extra = t.join(format!("extra{round}"));
        std::fs::create_dir(&extra).expect("mkdir");
        tree::random_file(&extra.join("x.bin"), 20 << 20, 100 + round);
        r.backup(&extra);
        ok(r.attache().args(["forget", "--keep-last", "1"]));
        let mut prune = r.attache();
        prune.arg("prune").env("ATTACHE_LOCK_LEASE", "3");
        kill_when(on_other_machine(&prune), Duration::from_secs(120), || {
            !r.list("locks").is_empty()
        });
        if !r.list("locks").is_empty() {
            caught = true;
            break;
        }
    }
    assert!(caught, "no prune was caught holding its lease in 5 tries");
    let killed = Instant::now();
    let locks = r.list("locks");
    assert_eq!(locks.len(), 1, "the killed prune left its lease: {locks:?}");
    let lease: Value = serde_json::from_slice(&r.get(&locks[0].0)).expect("lease JSON");
    assert_eq!(lease["host"], "other-machine", "{lease}");
    assert_eq!(lease["exclusive"], true, "{lease}");
    let e = fails(r.attache().arg("prune"));
    assert!(
        e.contains("locked exclusively") && e.contains("other-machine"),
        "{e}"
    );
    std::thread::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed()));
    ok(r.attache().arg("prune"));
    assert!(
        r.list("locks").is_empty(),
        "the expired lease was removed: {:?}",
        r.list("locks")
    );
    ok(r.attache().args(["verify", "--read-data"]));
    // What the first backup stored is intact through all of it... unless
    // forgotten: the newest snapshot restores whole.
    let newest = r.snapshots().pop().expect("a snapshot");
    let out = t.join("out");
    r.restore(&id(&newest), &out);
    let _ = good;
}
