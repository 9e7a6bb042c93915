//! PostgreSQL, spoken directly over the frontend/backend protocol v3.

pub(crate) mod auth;
pub(crate) mod conn;
pub(crate) mod ddl;
pub(crate) mod discover;
pub(crate) mod dump;
pub(crate) mod format;
pub(crate) mod restore;
pub(crate) mod schema;
pub(crate) mod wire;

use crate::ids::PgId;
use attache_plugin_sdk::PluginError;

/// Connects to the database an id names (or `postgres` for a server id).
pub(crate) fn connect(id: &PgId, password: Option<&str>) -> Result<conn::Conn, PluginError> {
    let login = conn::Login {
        user: id.user.clone(),
        addr: id.addr,
        database: id.database.clone().unwrap_or_else(|| "postgres".into()),
    };
    let mut c = conn::Conn::connect(&login, password)?;
    // Every name in definitions comes out schema-qualified, as in pg_dump.
    c.simple("SELECT pg_catalog.set_config('search_path', '', false)")?;
    Ok(c)
}
