//! A throwaway PostgreSQL cluster for the state database's unit tests:
//! the one `tests/sql/pg-cluster.sh` starts for the integration tests (on
//! 127.0.0.1 at a free port, scram-sha-256 with a random password, in a
//! temporary directory; Debian's postgresql installed first when missing),
//! stopped when dropped.

#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) struct TestPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub password: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql/pg-cluster.sh")
}

impl TestPg {
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("attache-statepg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"set -e; . "$1"; pg_cluster_start "$2" >&2; printf '%s\n%s\n%s\n' "$PGBIN" "$PORT" "$PW""#)
            .arg("pg-cluster")
            .arg(script())
            .arg(dir.path())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "pg_cluster_start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut lines = text.lines();
        let (Some(bin), Some(port), Some(password)) = (lines.next(), lines.next(), lines.next())
        else {
            panic!("pg_cluster_start printed {text:?}")
        };
        Self {
            bin: bin.into(),
            port: port.parse().expect("port"),
            password: password.into(),
            dir,
        }
    }

    /// The connection string (keyword form) of database `db` as
    /// postgres, with the password in it.
    pub(crate) fn url(&self, db: &str) -> String {
        self.url_with(db, &self.password, self.port)
    }

    /// [`Self::url`] with another password and port.
    pub(crate) fn url_with(&self, db: &str, password: &str, port: u16) -> String {
        format!("host=127.0.0.1 port={port} user=postgres password={password} dbname={db}")
    }

    /// Creates database `db` (empty) and returns its URL.
    pub(crate) fn database(&self, db: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {db}"));
        self.url(db)
    }

    /// Runs `sql` in `db` with a client of its own.
    pub(crate) fn sql(&self, db: &str, sql: &str) {
        let mut c = postgres::Client::connect(&self.url(db), postgres::NoTls).expect("connect");
        c.batch_execute(sql).expect(sql);
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#". "$1"; PGBIN=$2; PGDATA=$3/data; pg_cluster_stop"#)
            .arg("pg-cluster")
            .arg(script())
            .arg(&self.bin)
            .arg(self.dir.path())
            .output();
    }
}
