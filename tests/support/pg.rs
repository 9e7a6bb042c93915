//! A throwaway PostgreSQL cluster for the SQL plugin's tests: the one
//! `tests/sql/pg-cluster.sh` starts (owned by the user postgres, on
//! 127.0.0.1 at a free port, scram-sha-256 with a random password, in a
//! temporary directory), sourced through bash, and stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{ok, output, root};

/// A running cluster; stopped (and its directory removed) when dropped.
pub struct Pg {
    dir: tempfile::TempDir,
    /// `/usr/lib/postgresql/VERSION/bin`.
    pub bin: PathBuf,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    /// The password of the superuser `postgres`.
    pub password: String,
}

fn script() -> PathBuf {
    root().join("tests/sql/pg-cluster.sh")
}

impl Pg {
    /// Starts a cluster (installing Debian's postgresql first when missing).
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("attache-pg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let out = ok(Command::new("bash")
            .arg("-c")
            .arg(r#"set -e; . "$1"; pg_cluster_start "$2" >&2; printf '%s\n%s\n%s\n' "$PGBIN" "$PORT" "$PW""#)
            .arg("pg-cluster")
            .arg(script())
            .arg(dir.path()));
        let mut lines = out.lines();
        let (Some(bin), Some(port), Some(password)) = (lines.next(), lines.next(), lines.next())
        else {
            panic!("pg_cluster_start printed {out:?}")
        };
        Pg {
            bin: bin.into(),
            port: port.parse().expect("port"),
            password: password.into(),
            dir,
        }
    }

    /// `postgresql://postgres@127.0.0.1:PORT`, then `/REST` if not empty.
    pub fn url(&self, rest: &str) -> String {
        let server = format!("postgresql://postgres@127.0.0.1:{}", self.port);
        if rest.is_empty() {
            server
        } else {
            format!("{server}/{rest}")
        }
    }

    /// A PostgreSQL client program of the cluster's version (`psql`,
    /// `pgbench`), connecting to `db` as postgres over TCP.
    pub fn client(&self, program: &str, db: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .env("PGPASSWORD", &self.password)
        .env("PGDATABASE", db);
        c
    }

    /// Runs `sql` in `db` (stopping at the first error); what it printed,
    /// unaligned, without the trailing newline.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = ok(self
            .client("psql", db)
            .args(["-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql]));
        out.trim_end_matches('\n').to_owned()
    }

    /// `psql -f SQL_FILE` in `db`, in the background (for writers).
    pub fn psql_background(&self, db: &str, sql_file: &std::path::Path) -> Child {
        self.client("psql", db)
            .args(["-qX", "-f"])
            .arg(sql_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql")
    }

    /// An MD5 of a table's rows in a fixed order (and its row count).
    pub fn checksum(&self, db: &str, table: &str) -> String {
        self.psql(
            db,
            &format!("SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '-') FROM {table} x"),
        )
    }

    /// The cluster's directory (data, sockets, logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = output(
            Command::new("bash")
                .arg("-c")
                .arg(r#". "$1"; PGBIN=$2; PGDATA=$3/data; pg_cluster_stop"#)
                .arg("pg-cluster")
                .arg(script())
                .arg(&self.bin)
                .arg(self.dir.path()),
        );
    }
}
