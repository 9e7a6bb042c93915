//! The hypervisor registry in the PostgreSQL state database (table
//! `hypervisors`, migration 3), so that every worker sharing the database
//! sees the same hypervisors. A definition is kept as the JSON text the
//! registry writes (`hypervisor::registry`); this layer stores and orders
//! it, and refuses a second hypervisor of the same name.

use postgres::error::SqlState;

use super::advisory::PgLock;
use super::postgres::{Postgres, Step};
use super::DbError;

/// The advisory lock that serializes changes to the registry and to the
/// datastores' containers across workers.
const REGISTRY_LOCK: &str = "attache-registry";

impl Postgres {
    /// Every registered hypervisor as `(name, definition)`, by name.
    pub(crate) fn hypervisors(&self) -> Result<Vec<(String, String)>, DbError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT name, definition FROM hypervisors ORDER BY name",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, postgres::Error>>()?)
        })
    }

    /// Registers hypervisor `name`; [`DbError::Conflict`] when the name is
    /// taken.
    pub(crate) fn add_hypervisor(
        &self,
        name: &str,
        definition: &str,
        now: i64,
    ) -> Result<(), DbError> {
        self.with(|c| {
            match c.execute(
                "INSERT INTO hypervisors (name, definition, added) VALUES ($1, $2, $3)",
                &[&name, &definition, &now],
            ) {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    Err(Step::Db(DbError::Conflict(format!("hypervisor {name}"))))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Waits for the registry's lock (see [`REGISTRY_LOCK`]).
    pub(crate) fn lock_registry(&self) -> Result<PgLock, DbError> {
        self.wait_for(REGISTRY_LOCK, "the registry's lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_pg::TestPg;

    #[test]
    fn hypervisors_are_shared_and_named_once() {
        let pg = TestPg::start();
        let url = pg.database("registry");
        let a = Postgres::open(&url).unwrap();
        let b = Postgres::open(&url).unwrap();
        assert!(a.hypervisors().unwrap().is_empty());
        a.add_hypervisor("hv2", r#"{"name":"hv2"}"#, 1).unwrap();
        b.add_hypervisor("hv1", r#"{"name":"hv1"}"#, 2).unwrap();
        let seen = b.hypervisors().unwrap();
        assert_eq!(seen, a.hypervisors().unwrap(), "one registry for both");
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["hv1", "hv2"]);
        assert_eq!(seen[1].1, r#"{"name":"hv2"}"#);
        let again = a.add_hypervisor("hv1", r#"{"name":"other"}"#, 3);
        assert!(matches!(again, Err(DbError::Conflict(_))), "{again:?}");
        assert_eq!(a.hypervisors().unwrap(), seen, "the first definition kept");
    }

    #[test]
    fn the_registry_lock_excludes_other_sessions_until_dropped() {
        let pg = TestPg::start();
        let url = pg.database("registry_lock");
        let a = Postgres::open(&url).unwrap();
        let b = Postgres::open(&url).unwrap();
        let held = a.lock_registry().unwrap();
        assert!(b.advisory(REGISTRY_LOCK, false).unwrap().is_none());
        drop(held);
        assert!(b.advisory(REGISTRY_LOCK, false).unwrap().is_some());
    }
}
