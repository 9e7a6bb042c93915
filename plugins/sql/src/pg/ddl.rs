//! The statements that recreate a backed-up table, under its own name or
//! another one: sequences, table, COPY, constraints, indexes, sequence
//! values, and foreign keys (run last, once every table of the restore
//! exists).

use super::schema::{Sequence, TableDef};
use super::wire::{ident, literal};

/// Where a table is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub schema: String,
    pub table: String,
}

/// The statements of one table's restore, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Plan {
    /// Sequences and the table, before its rows.
    pub create: Vec<String>,
    /// `COPY ... FROM STDIN`.
    pub copy: String,
    /// Constraints, indexes and sequence values, after the rows.
    pub finish: Vec<String>,
    /// Foreign keys, after every table of the restore.
    pub foreign_keys: Vec<String>,
    /// The sequences' new regclass names (for messages and tests).
    pub sequences: Vec<String>,
}

/// PostgreSQL's identifier length limit, in bytes.
const NAMEDATALEN: usize = 63;

/// The name of an object that belongs to a renamed table: `orders_pkey`
/// of `orders` becomes `orders_restored_pkey` of `orders_restored`; a name
/// that does not start with the table's gets the new table's name in front.
pub(crate) fn rename_object(name: &str, old_table: &str, new_table: &str) -> String {
    if old_table == new_table {
        return name.to_owned();
    }
    let renamed = match name.strip_prefix(old_table) {
        Some(rest) => format!("{new_table}{rest}"),
        None => format!("{new_table}_{name}"),
    };
    let mut end = renamed.len().min(NAMEDATALEN);
    while !renamed.is_char_boundary(end) {
        end -= 1;
    }
    renamed[..end].to_owned()
}

fn seq_target(def: &TableDef, s: &Sequence, t: &Target) -> (String, String) {
    let schema = if s.schema == def.schema {
        t.schema.clone()
    } else {
        s.schema.clone()
    };
    (schema, rename_object(&s.name, &def.table, &t.table))
}

fn seq_options(s: &Sequence) -> String {
    format!(
        "START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {}",
        s.start,
        s.increment,
        s.min,
        s.max,
        s.cache,
        if s.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}

pub(crate) fn plan(def: &TableDef, copy_columns: &[String], t: &Target) -> Plan {
    let qt = format!("{}.{}", ident(&t.schema), ident(&t.table));
    let mut p = Plan::default();
    let mut defaults_fix: Vec<(String, String)> = Vec::new();
    for s in &def.sequences {
        let (schema, name) = seq_target(def, s, t);
        let nq = format!("{}.{}", ident(&schema), ident(&name));
        p.sequences.push(nq.clone());
        if !s.identity {
            p.create.push(format!(
                "CREATE SEQUENCE {nq} AS {} {}",
                s.data_type,
                seq_options(s)
            ));
            defaults_fix.push((
                format!("nextval({}::regclass)", literal(&s.regclass)),
                format!("nextval({}::regclass)", literal(&nq)),
            ));
        }
    }
    let mut cols = Vec::new();
    for c in &def.columns {
        let mut d = format!("{} {}", ident(&c.name), c.type_sql);
        if let Some(coll) = &c.collation {
            d.push_str(&format!(" COLLATE {coll}"));
        }
        if c.generated {
            if let Some(e) = &c.default {
                d.push_str(&format!(" GENERATED ALWAYS AS ({e}) STORED"));
            }
        } else if let Some(kind) = &c.identity {
            let how = if kind == "a" { "ALWAYS" } else { "BY DEFAULT" };
            d.push_str(&format!(" GENERATED {how} AS IDENTITY"));
            if let Some(s) = def
                .sequences
                .iter()
                .find(|s| s.identity && s.column == c.name)
            {
                let (schema, name) = seq_target(def, s, t);
                d.push_str(&format!(
                    " (SEQUENCE NAME {}.{} {})",
                    ident(&schema),
                    ident(&name),
                    seq_options(s)
                ));
            }
        } else if let Some(e) = &c.default {
            let mut e = e.clone();
            for (from, to) in &defaults_fix {
                e = e.replace(from, to);
            }
            d.push_str(&format!(" DEFAULT {e}"));
        }
        if c.not_null {
            d.push_str(" NOT NULL");
        }
        cols.push(d);
    }
    p.create.push(format!(
        "CREATE TABLE {qt} (\n    {}\n)",
        cols.join(",\n    ")
    ));
    for s in def.sequences.iter().filter(|s| !s.identity) {
        let (schema, name) = seq_target(def, s, t);
        p.create.push(format!(
            "ALTER SEQUENCE {}.{} OWNED BY {qt}.{}",
            ident(&schema),
            ident(&name),
            ident(&s.column)
        ));
    }
    let list: Vec<String> = copy_columns.iter().map(|c| ident(c)).collect();
    p.copy = format!("COPY {qt} ({}) FROM STDIN", list.join(", "));
    let renamed = def.table != t.table || def.schema != t.schema;
    for c in &def.constraints {
        let name = ident(&rename_object(&c.name, &def.table, &t.table));
        let mut body = c.definition.clone();
        if c.kind == "f" && renamed {
            // A foreign key to the table itself follows it to its new name.
            body = body.replace(
                &format!(" REFERENCES {}(", def.qualified),
                &format!(" REFERENCES {qt}("),
            );
        }
        let stmt = format!("ALTER TABLE {qt} ADD CONSTRAINT {name} {body}");
        if c.kind == "f" {
            p.foreign_keys.push(stmt);
        } else {
            p.finish.push(stmt);
        }
    }
    for i in &def.indexes {
        p.finish.push(format!(
            "{} {} ON {qt} {}",
            i.head,
            ident(&rename_object(&i.name, &def.table, &t.table)),
            i.tail
        ));
    }
    for (s, nq) in def.sequences.iter().zip(&p.sequences) {
        if !s.last_value.is_empty() {
            p.finish.push(format!(
                "SELECT pg_catalog.setval({}, {}, {})",
                literal(nq),
                s.last_value,
                s.is_called
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::schema::{Column, Constraint, Index};

    fn orders() -> TableDef {
        let col = |name: &str, ty: &str, default: Option<&str>, not_null: bool| Column {
            name: name.into(),
            type_sql: ty.into(),
            default: default.map(Into::into),
            not_null,
            identity: None,
            generated: false,
            collation: None,
        };
        let seq = |name: &str, column: &str, identity: bool| Sequence {
            schema: "public".into(),
            name: name.into(),
            regclass: format!("public.{name}"),
            column: column.into(),
            identity,
            data_type: "integer".into(),
            start: "1".into(),
            increment: "1".into(),
            min: "1".into(),
            max: "2147483647".into(),
            cache: "1".into(),
            cycle: false,
            last_value: "42".into(),
            is_called: true,
        };
        let mut line = col("line", "bigint", None, true);
        line.identity = Some("d".into());
        let mut total = col("total", "numeric", Some("(qty * 2)"), false);
        total.generated = true;
        TableDef {
            schema: "public".into(),
            table: "orders".into(),
            qualified: "public.orders".into(),
            columns: vec![
                col(
                    "id",
                    "integer",
                    Some("nextval('public.orders_id_seq'::regclass)"),
                    true,
                ),
                line,
                col("qty", "integer", Some("1"), false),
                total,
                col("parent", "integer", None, false),
            ],
            sequences: vec![
                seq("orders_id_seq", "id", false),
                seq("orders_line_seq", "line", true),
            ],
            constraints: vec![
                Constraint {
                    name: "orders_pkey".into(),
                    kind: "p".into(),
                    definition: "PRIMARY KEY (id)".into(),
                },
                Constraint {
                    name: "qty_positive".into(),
                    kind: "c".into(),
                    definition: "CHECK ((qty > 0))".into(),
                },
                Constraint {
                    name: "orders_parent_fkey".into(),
                    kind: "f".into(),
                    definition: "FOREIGN KEY (parent) REFERENCES public.orders(id)".into(),
                },
            ],
            indexes: vec![Index {
                name: "orders_qty_idx".into(),
                head: "CREATE INDEX".into(),
                tail: "USING btree (qty)".into(),
            }],
        }
    }

    fn cols() -> Vec<String> {
        vec!["id".into(), "line".into(), "qty".into(), "parent".into()]
    }

    #[test]
    fn same_name_plan() {
        let p = plan(
            &orders(),
            &cols(),
            &Target {
                schema: "public".into(),
                table: "orders".into(),
            },
        );
        assert_eq!(
            p.create[0],
            "CREATE SEQUENCE \"public\".\"orders_id_seq\" AS integer START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 CACHE 1 NO CYCLE"
        );
        let table = &p.create[1];
        assert!(
            table.contains(
                "\"id\" integer DEFAULT nextval('\"public\".\"orders_id_seq\"'::regclass) NOT NULL"
            ),
            "{table}"
        );
        assert!(table.contains("\"line\" bigint GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME \"public\".\"orders_line_seq\" START WITH 1"), "{table}");
        assert!(
            table.contains("\"total\" numeric GENERATED ALWAYS AS ((qty * 2)) STORED"),
            "{table}"
        );
        assert_eq!(
            p.create[2],
            "ALTER SEQUENCE \"public\".\"orders_id_seq\" OWNED BY \"public\".\"orders\".\"id\""
        );
        assert_eq!(
            p.copy,
            "COPY \"public\".\"orders\" (\"id\", \"line\", \"qty\", \"parent\") FROM STDIN"
        );
        assert_eq!(
            p.finish[0],
            "ALTER TABLE \"public\".\"orders\" ADD CONSTRAINT \"orders_pkey\" PRIMARY KEY (id)"
        );
        assert_eq!(
            p.finish[2],
            "CREATE INDEX \"orders_qty_idx\" ON \"public\".\"orders\" USING btree (qty)"
        );
        assert_eq!(
            p.finish[3],
            "SELECT pg_catalog.setval('\"public\".\"orders_id_seq\"', 42, true)"
        );
        assert_eq!(
            p.foreign_keys,
            vec!["ALTER TABLE \"public\".\"orders\" ADD CONSTRAINT \"orders_parent_fkey\" FOREIGN KEY (parent) REFERENCES public.orders(id)"]
        );
    }

    #[test]
    fn renamed_plan_renames_what_belongs_to_the_table() {
        let p = plan(
            &orders(),
            &cols(),
            &Target {
                schema: "archive".into(),
                table: "orders_old".into(),
            },
        );
        assert!(p.create[0].starts_with("CREATE SEQUENCE \"archive\".\"orders_old_id_seq\""));
        assert!(p.create[1].contains("nextval('\"archive\".\"orders_old_id_seq\"'::regclass)"));
        assert!(p.create[1].contains("SEQUENCE NAME \"archive\".\"orders_old_line_seq\""));
        assert!(p.finish[0].contains("ADD CONSTRAINT \"orders_old_pkey\" PRIMARY KEY"));
        assert!(p.finish[1].contains("ADD CONSTRAINT \"orders_old_qty_positive\" CHECK"));
        assert!(p.finish[2]
            .starts_with("CREATE INDEX \"orders_old_qty_idx\" ON \"archive\".\"orders_old\""));
        assert!(p.foreign_keys[0].ends_with("REFERENCES \"archive\".\"orders_old\"(id)"));
    }

    #[test]
    fn object_names_stay_within_the_limit() {
        let long = "t".repeat(60);
        assert_eq!(rename_object("orders_pkey", "orders", &long).len(), 63);
        assert_eq!(rename_object("x", "orders", "orders"), "x");
        assert_eq!(rename_object("é".repeat(40).as_str(), "a", "b").len(), 62);
    }
}
