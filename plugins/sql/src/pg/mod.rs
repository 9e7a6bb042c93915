//! PostgreSQL, spoken directly over the frontend/backend protocol v3.

pub mod auth;
pub mod conn;
pub mod ddl;
pub mod discover;
pub mod dump;
pub mod format;
pub mod restore;
pub mod schema;
pub mod wire;

use crate::ids::PgId;
use attache_plugin_sdk::PluginError;

/// Connects to the database an id names (or `postgres` for a server id).
pub fn connect(id: &PgId, password: Option<&str>) -> Result<conn::Conn, PluginError> {
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
