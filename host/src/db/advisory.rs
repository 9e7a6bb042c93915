//! Session advisory locks of the PostgreSQL state database: a VM's lock,
//! the reap lock of a dead worker, the hypervisor registry's lock. Each is
//! held on a connection of its own, so that PostgreSQL frees it when that
//! connection closes, however its holder died.

use postgres::Client;

use super::postgres::{off_runtime, Postgres};
use super::DbError;

/// A session advisory lock, held as long as its own connection is open.
pub(crate) struct PgLock {
    client: Option<Client>,
}

impl Drop for PgLock {
    fn drop(&mut self) {
        // Closing the connection releases the lock (and runs the client's
        // runtime: not on a tokio thread).
        if let Some(c) = self.client.take() {
            off_runtime(move || drop(c));
        }
    }
}

/// The advisory lock key of a name, computed by the server.
const KEY: &str = "hashtextextended($1, 0)";

fn vm_key(vm: &str) -> String {
    format!("attache-vm:{vm}")
}

impl Postgres {
    /// Waits for the lock of VM `vm` (`HV/VM`): held by whoever runs a job
    /// on it, a worker or a command on the same state database.
    pub(crate) fn lock_vm(&self, vm: &str) -> Result<PgLock, DbError> {
        self.wait_for(&vm_key(vm), &format!("the lock of VM {vm}"))
    }

    /// Waits for the advisory lock named `key` (`what` it is, for the
    /// error).
    pub(super) fn wait_for(&self, key: &str, what: &str) -> Result<PgLock, DbError> {
        self.advisory(key, true)?.ok_or_else(|| DbError::Format {
            path: self.shown().to_owned(),
            why: format!("{what} was not taken after waiting for it"),
        })
    }

    /// Takes the lock of VM `vm` if nobody holds it.
    pub(crate) fn try_lock_vm(&self, vm: &str) -> Result<Option<PgLock>, DbError> {
        self.advisory(&vm_key(vm), false)
    }

    /// The advisory lock named `key`, on a connection of its own: waited
    /// for when `wait`, else `None` when another session holds it.
    pub(crate) fn advisory(&self, key: &str, wait: bool) -> Result<Option<PgLock>, DbError> {
        off_runtime(|| {
            let mut client = self.connect_own()?;
            let taken = if wait {
                client
                    .execute(&format!("SELECT pg_advisory_lock({KEY})"), &[&key])
                    .map(|_| true)
            } else {
                client
                    .query_one(&format!("SELECT pg_try_advisory_lock({KEY})"), &[&key])
                    .and_then(|r| r.try_get::<_, bool>(0))
            }
            .map_err(|source| DbError::Postgres {
                url: self.shown().to_owned(),
                source,
            });
            match taken {
                Ok(true) => Ok(Some(PgLock {
                    client: Some(client),
                })),
                Ok(false) | Err(_) => {
                    drop(client);
                    taken.map(|_| None)
                }
            }
        })
    }
}
