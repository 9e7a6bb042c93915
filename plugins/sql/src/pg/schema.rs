//! What the catalogs say: databases, schemas and tables for discovery, and a
//! table's full definition (columns, owned sequences, constraints, indexes)
//! for backup, read with `search_path` empty so every name comes out
//! schema-qualified.

use serde::{Deserialize, Serialize};

use super::conn::{Conn, Rows};
use super::wire::literal;
use attache_plugin_sdk::PluginError;

/// Schemas never backed up: the system's own.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// A table found in the catalogs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableRef {
    pub schema: String,
    pub name: String,
    pub oid: u32,
    /// `schema.table` as PostgreSQL prints it (quoted only where needed).
    pub qualified: String,
    /// `pg_total_relation_size`: heap, indexes and TOAST.
    pub bytes: u64,
    /// The planner's row estimate.
    pub rows_estimate: i64,
}

fn text(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

fn num<T: std::str::FromStr + Default>(row: &[Option<String>], i: usize) -> T {
    text(row, i).parse().unwrap_or_default()
}

/// Databases a user can connect to, with their sizes, by name.
pub(crate) fn databases(c: &mut Conn) -> Result<Vec<(String, u64)>, PluginError> {
    let rows = c.query(
        "SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') \
         THEN pg_catalog.pg_database_size(oid) END \
         FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    )?;
    Ok(rows.iter().map(|r| (text(r, 0), num(r, 1))).collect())
}

/// User schemas of the current database with the total size of their
/// tables, by name.
pub(crate) fn schemas(c: &mut Conn) -> Result<Vec<(String, u64)>, PluginError> {
    let rows = c.query(&format!(
        "SELECT n.nspname, coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)) \
         FILTER (WHERE c.relkind = 'r'), 0)::bigint \
         FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid \
         WHERE {SYSTEM_SCHEMAS} GROUP BY 1 ORDER BY 1"
    ))?;
    Ok(rows.iter().map(|r| (text(r, 0), num(r, 1))).collect())
}

/// Ordinary tables of the current database, optionally of one schema and
/// one name, ordered by schema and name.
pub(crate) fn tables(
    c: &mut Conn,
    schema: Option<&str>,
    table: Option<&str>,
) -> Result<Vec<TableRef>, PluginError> {
    let mut filter = String::new();
    if let Some(s) = schema {
        filter.push_str(&format!(" AND n.nspname = {}", literal(s)));
    }
    if let Some(t) = table {
        filter.push_str(&format!(" AND c.relname = {}", literal(t)));
    }
    let rows = c.query(&format!(
        "SELECT n.nspname, c.relname, c.oid, \
         pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), \
         pg_catalog.pg_total_relation_size(c.oid), c.reltuples::bigint \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND {SYSTEM_SCHEMAS}{filter} ORDER BY 1, 2"
    ))?;
    Ok(rows.iter().map(|r| table_ref(r)).collect())
}

fn table_ref(r: &[Option<String>]) -> TableRef {
    TableRef {
        schema: text(r, 0),
        name: text(r, 1),
        oid: num(r, 2),
        qualified: text(r, 3),
        bytes: num(r, 4),
        rows_estimate: num(r, 5),
    }
}

/// Whether a schema exists in the current database.
pub(crate) fn schema_exists(c: &mut Conn, schema: &str) -> Result<bool, PluginError> {
    let rows = c.query(&format!(
        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {}",
        literal(schema)
    ))?;
    Ok(!rows.is_empty())
}

/// Everything restore needs to recreate a table, apart from its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableDef {
    pub schema: String,
    pub table: String,
    /// `schema.table` as PostgreSQL prints it in definitions.
    pub qualified: String,
    pub columns: Vec<Column>,
    /// Sequences owned by a column: `serial` ones and identity ones.
    pub sequences: Vec<Sequence>,
    /// Primary key, unique, check, exclusion and foreign-key constraints,
    /// foreign keys last.
    pub constraints: Vec<Constraint>,
    /// Indexes that no constraint owns.
    pub indexes: Vec<Index>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Column {
    pub name: String,
    /// `format_type` of the column: `integer`, `character varying(20)`.
    #[serde(rename = "type")]
    pub type_sql: String,
    /// The default expression, or the generation expression of a
    /// generated column.
    pub default: Option<String>,
    pub not_null: bool,
    /// `a` (GENERATED ALWAYS AS IDENTITY), `d` (BY DEFAULT), or none.
    pub identity: Option<String>,
    /// True for a stored generated column; it is not in the COPY data.
    pub generated: bool,
    /// A collation other than the type's default, qualified.
    pub collation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sequence {
    pub schema: String,
    pub name: String,
    /// How PostgreSQL prints it as a regclass (`public.orders_id_seq`).
    pub regclass: String,
    pub column: String,
    /// Owned through an identity column (created by the column itself).
    pub identity: bool,
    pub data_type: String,
    pub start: String,
    pub increment: String,
    pub min: String,
    pub max: String,
    pub cache: String,
    pub cycle: bool,
    pub last_value: String,
    pub is_called: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Constraint {
    pub name: String,
    /// `p`, `u`, `c`, `x` or `f`.
    pub kind: String,
    /// `pg_get_constraintdef`: `PRIMARY KEY (id)`, `FOREIGN KEY (c) REFERENCES public.t(id)`.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Index {
    pub name: String,
    /// `CREATE INDEX` or `CREATE UNIQUE INDEX`.
    pub head: String,
    /// What follows `ON table`: `USING btree (created_at)`.
    pub tail: String,
}

/// Reads a table's definition. Run inside the backup's transaction.
pub(crate) fn table_def(c: &mut Conn, t: &TableRef) -> Result<TableDef, PluginError> {
    let oid = t.oid;
    let cols: Rows = c.query(&format!(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), \
         pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attidentity, a.attgenerated, \
         CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN \
           (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) \
            FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
            WHERE co.oid = a.attcollation) END \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid \
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    ))?;
    let columns = cols
        .iter()
        .map(|r| Column {
            name: text(r, 0),
            type_sql: text(r, 1),
            default: r[2].clone(),
            not_null: text(r, 3) == "t",
            identity: Some(text(r, 4)).filter(|s| !s.is_empty()),
            generated: !text(r, 5).is_empty(),
            collation: r[6].clone(),
        })
        .collect();

    let seqs: Rows = c.query(&format!(
        "SELECT sn.nspname, s.relname, \
         pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(s.relname), \
         a.attname, d.deptype = 'i', pg_catalog.format_type(sq.seqtypid, NULL), sq.seqstart, \
         sq.seqincrement, sq.seqmin, sq.seqmax, sq.seqcache, sq.seqcycle \
         FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
         JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace \
         JOIN pg_catalog.pg_sequence sq ON sq.seqrelid = s.oid \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
         AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
         AND d.refobjid = {oid} AND d.deptype IN ('a', 'i') ORDER BY 2"
    ))?;
    let mut sequences = Vec::new();
    for r in &seqs {
        let regclass = text(r, 2);
        // Sequences are not transactional: this is their value now, as
        // pg_dump reads it too.
        let v = c.query(&format!("SELECT last_value, is_called FROM {regclass}"))?;
        let v = v.first().cloned().unwrap_or_default();
        sequences.push(Sequence {
            schema: text(r, 0),
            name: text(r, 1),
            regclass,
            column: text(r, 3),
            identity: text(r, 4) == "t",
            data_type: text(r, 5),
            start: text(r, 6),
            increment: text(r, 7),
            min: text(r, 8),
            max: text(r, 9),
            cache: text(r, 10),
            cycle: text(r, 11) == "t",
            last_value: text(&v, 0),
            is_called: text(&v, 1) == "t",
        });
    }

    let cons: Rows = c.query(&format!(
        "SELECT conname, contype, pg_catalog.pg_get_constraintdef(oid) \
         FROM pg_catalog.pg_constraint WHERE conrelid = {oid} AND contype IN ('p', 'u', 'c', 'x', 'f') \
         AND conislocal ORDER BY contype = 'f', contype <> 'p', conname"
    ))?;
    let constraints = cons
        .iter()
        .map(|r| Constraint {
            name: text(r, 0),
            kind: text(r, 1),
            definition: text(r, 2),
        })
        .collect();

    let idx: Rows = c.query(&format!(
        "SELECT ic.relname, pg_catalog.quote_ident(ic.relname), pg_catalog.pg_get_indexdef(i.indexrelid) \
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
         WHERE i.indrelid = {oid} AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
           WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) \
         ORDER BY 1"
    ))?;
    let mut indexes = Vec::new();
    for r in &idx {
        let (name, quoted, def) = (text(r, 0), text(r, 1), text(r, 2));
        let index = split_indexdef(&def, &quoted, &t.qualified).ok_or_else(|| {
            PluginError::Application(format!(
                "cannot take apart the definition of index {name} on {}: {def}",
                t.qualified
            ))
        })?;
        indexes.push(Index { name, ..index });
    }
    Ok(TableDef {
        schema: t.schema.clone(),
        table: t.name.clone(),
        qualified: t.qualified.clone(),
        columns,
        sequences,
        constraints,
        indexes,
    })
}

/// Splits `CREATE [UNIQUE] INDEX name ON table USING ...` around its name
/// and table, so that restore can put other ones in.
pub(crate) fn split_indexdef(def: &str, quoted_name: &str, qualified_table: &str) -> Option<Index> {
    for head in ["CREATE INDEX", "CREATE UNIQUE INDEX"] {
        let prefix = format!("{head} {quoted_name} ON {qualified_table} ");
        if let Some(tail) = def.strip_prefix(&prefix) {
            return Some(Index {
                name: String::new(),
                head: head.to_owned(),
                tail: tail.to_owned(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_definitions_split() {
        let i = split_indexdef(
            "CREATE UNIQUE INDEX \"Odd Name\" ON public.orders USING btree (lower(email)) WHERE (x > 1)",
            "\"Odd Name\"",
            "public.orders",
        )
        .unwrap();
        assert_eq!(i.head, "CREATE UNIQUE INDEX");
        assert_eq!(i.tail, "USING btree (lower(email)) WHERE (x > 1)");
        assert!(split_indexdef(
            "CREATE INDEX a ON ONLY public.t USING btree (x)",
            "a",
            "public.t"
        )
        .is_none());
    }
}
