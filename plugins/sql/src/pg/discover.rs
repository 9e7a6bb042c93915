//! Discovery: a server lists its databases, a database its schemas, a
//! schema its tables, each with its size.

use super::{connect, schema};
use crate::ids::PgId;
use attache_plugin_sdk::{CatalogEntry, ItemKind, PluginError};

pub(crate) fn discover(
    id: &PgId,
    depth: u32,
    password: Option<&str>,
) -> Result<Vec<CatalogEntry>, PluginError> {
    let mut out = Vec::new();
    match (&id.database, &id.schema) {
        (None, _) => {
            let mut c = connect(id, password)?;
            let dbs = schema::databases(&mut c)?;
            c.close();
            for (db, size) in dbs {
                let did = id.with_database(&db);
                out.push(CatalogEntry {
                    id: did.to_string(),
                    kind: ItemKind::Database,
                    size: Some(size),
                    has_children: true,
                });
                if depth > 0 {
                    match discover(&did, depth - 1, password) {
                        Ok(sub) => out.extend(sub),
                        // A database the user may not enter is listed, not opened.
                        Err(PluginError::Application(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        (Some(_), None) => {
            let mut c = connect(id, password)?;
            let schemas = schema::schemas(&mut c)?;
            for (s, size) in schemas {
                let sid = id.with_table(&s, None);
                out.push(CatalogEntry {
                    id: sid.to_string(),
                    kind: ItemKind::Schema,
                    size: Some(size),
                    has_children: true,
                });
                if depth > 0 {
                    list_tables(&mut c, &sid, &mut out)?;
                }
            }
            c.close();
        }
        (Some(_), Some(s)) => {
            if id.table.is_some() {
                return Ok(out);
            }
            let mut c = connect(id, password)?;
            if !schema::schema_exists(&mut c, s)? {
                return Err(PluginError::InvalidRequest(format!(
                    "schema {s:?} does not exist in {}",
                    id.database_id()
                )));
            }
            list_tables(&mut c, id, &mut out)?;
            c.close();
        }
    }
    Ok(out)
}

fn list_tables(
    c: &mut super::conn::Conn,
    schema_id: &PgId,
    out: &mut Vec<CatalogEntry>,
) -> Result<(), PluginError> {
    let s = schema_id.schema.as_deref().unwrap_or("public");
    for t in schema::tables(c, Some(s), None)? {
        out.push(CatalogEntry {
            id: schema_id.with_table(&t.schema, Some(&t.name)).to_string(),
            kind: ItemKind::Table,
            size: Some(t.bytes),
            has_children: false,
        });
    }
    Ok(())
}
