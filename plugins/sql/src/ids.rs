//! Item ids of the SQL plugin.
//!
//! - `postgresql://USER@HOST:PORT` — a server (discovery only)
//! - `postgresql://USER@HOST:PORT/DB` — a database
//! - `postgresql://USER@HOST:PORT/DB/SCHEMA` — a schema
//! - `postgresql://USER@HOST:PORT/DB/SCHEMA.TABLE` — a table
//! - `sqlite:///ABS/PATH.db` — an SQLite database file
//! - `sqlite:///ABS/DIR/` — a directory: a `discover` scope only, which
//!   lists the SQLite databases in it
//!
//! HOST is an IP address (`127.0.0.1`, `[::1]`): the sandbox grants
//! connections to addresses, and never resolves names. PORT defaults to
//! 5432. USER, DB, SCHEMA and TABLE are percent-encoded where they hold
//! `%`, `/`, `.`, `@`, `:`, control characters or non-ASCII bytes, so that
//! `SCHEMA.TABLE` splits at its only unescaped dot.

use std::net::{IpAddr, SocketAddr};

/// A parsed `postgresql://` id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PgId {
    pub user: String,
    pub addr: SocketAddr,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
}

/// What an id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Id {
    Pg(PgId),
    /// An absolute path, checked: no `.`, `..` or empty components.
    Sqlite(String),
}

pub(crate) fn parse(id: &str) -> Result<Id, String> {
    if let Some(rest) = id
        .strip_prefix("postgresql://")
        .or_else(|| id.strip_prefix("postgres://"))
    {
        return parse_pg(rest)
            .map(Id::Pg)
            .map_err(|e| format!("item id {id:?}: {e}"));
    }
    if let Some(path) = id.strip_prefix("sqlite://") {
        return check_path(path)
            .map(|()| Id::Sqlite(path.to_owned()))
            .map_err(|e| format!("item id {id:?}: {e}"));
    }
    Err(format!(
        "item id {id:?} is neither postgresql://USER@HOST:PORT/DB[/SCHEMA.TABLE] nor sqlite:///ABS/PATH"
    ))
}

/// The directory of a `sqlite:///ABS/DIR/` discover scope (`None` for any
/// other id), checked: absolute, no `.`, `..` or empty components.
pub(crate) fn sqlite_dir(id: &str) -> Option<Result<String, String>> {
    let path = id.strip_prefix("sqlite://")?;
    let dir = path.strip_suffix('/')?;
    if dir.is_empty() {
        return Some(Ok("/".into()));
    }
    Some(
        check_path(dir)
            .map(|()| dir.to_owned())
            .map_err(|e| format!("discover scope {id:?}: {e}")),
    )
}

fn check_path(path: &str) -> Result<(), String> {
    let rest = path.strip_prefix('/').ok_or("the path is not absolute")?;
    if path.contains('\0') {
        return Err("the path contains NUL".into());
    }
    if rest.is_empty() || rest.ends_with('/') {
        return Err("the path names no file".into());
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("the path has an empty, '.' or '..' component".into());
    }
    Ok(())
}

fn parse_pg(rest: &str) -> Result<PgId, String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (user, hostport) = authority
        .rsplit_once('@')
        .ok_or("no USER@ before the host")?;
    let user = decode(user)?;
    if user.is_empty() {
        return Err("empty user name".into());
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']').ok_or("unclosed [ in the host")?;
        (h, p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let ip: IpAddr = host.parse().map_err(|_| {
        format!("host {host:?} is not an IP address (the sandbox connects to addresses only)")
    })?;
    let port: u16 = match port {
        None => 5432,
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
    };
    if port == 0 {
        return Err("port 0 names no server".into());
    }
    let mut id = PgId {
        user,
        addr: SocketAddr::new(ip, port),
        database: None,
        schema: None,
        table: None,
    };
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(id);
    };
    let mut parts = path.splitn(2, '/');
    let db = decode(parts.next().unwrap_or(""))?;
    if db.is_empty() {
        return Err("empty database name".into());
    }
    id.database = Some(db);
    if let Some(obj) = parts.next().filter(|p| !p.is_empty()) {
        if obj.contains('/') {
            return Err("too many path components (expected DB/SCHEMA.TABLE)".into());
        }
        let (schema, table) = match obj.split_once('.') {
            Some((s, t)) => (s, Some(t)),
            None => (obj, None),
        };
        let schema = decode(schema)?;
        if schema.is_empty() {
            return Err("empty schema name".into());
        }
        id.schema = Some(schema);
        if let Some(t) = table {
            if t.contains('.') {
                return Err("more than one unescaped '.' in SCHEMA.TABLE".into());
            }
            let t = decode(t)?;
            if t.is_empty() {
                return Err("empty table name".into());
            }
            id.table = Some(t);
        }
    }
    Ok(id)
}

fn decode(s: &str) -> Result<String, String> {
    let s = attache_plugin_sdk::ids::percent_decode(s)?;
    if s.contains('\0') {
        return Err("a name contains NUL".into());
    }
    Ok(s)
}

/// Percent-encodes a name for an id.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::new();
    for &b in name.as_bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'/' | b'.' | b'@' | b':' | b'[' | b']') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl PgId {
    /// The server part: `postgresql://USER@HOST:PORT`.
    pub(crate) fn server(&self) -> String {
        format!("postgresql://{}@{}", encode(&self.user), self.addr)
    }

    pub(crate) fn with_database(&self, db: &str) -> PgId {
        PgId {
            database: Some(db.to_owned()),
            schema: None,
            table: None,
            ..self.clone()
        }
    }

    pub(crate) fn with_table(&self, schema: &str, table: Option<&str>) -> PgId {
        PgId {
            schema: Some(schema.to_owned()),
            table: table.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The database id (`.../DB`) this id lies in.
    pub(crate) fn database_id(&self) -> PgId {
        PgId {
            schema: None,
            table: None,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for PgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.server())?;
        if let Some(db) = &self.database {
            write!(f, "/{}", encode(db))?;
            if let Some(s) = &self.schema {
                write!(f, "/{}", encode(s))?;
                if let Some(t) = &self.table {
                    write!(f, ".{}", encode(t))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(id: &str) -> PgId {
        match parse(id).unwrap() {
            Id::Pg(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_postgresql_ids() {
        let t = pg("postgresql://app@127.0.0.1:5433/shop/public.orders");
        assert_eq!(t.user, "app");
        assert_eq!(t.addr, "127.0.0.1:5433".parse().unwrap());
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(t.schema.as_deref(), Some("public"));
        assert_eq!(t.table.as_deref(), Some("orders"));
        assert_eq!(
            t.to_string(),
            "postgresql://app@127.0.0.1:5433/shop/public.orders"
        );
        let d = pg("postgresql://app@[::1]/shop");
        assert_eq!(d.addr.port(), 5432);
        assert_eq!(d.to_string(), "postgresql://app@[::1]:5432/shop");
        assert_eq!(d.table, None);
        let s = pg("postgresql://app@10.0.0.1:5432/shop/sales");
        assert_eq!(
            (s.schema.as_deref(), s.table.as_deref()),
            (Some("sales"), None)
        );
        let srv = pg("postgresql://app@10.0.0.1:5432");
        assert_eq!(srv.database, None);
    }

    #[test]
    fn escapes_round_trip() {
        let id = PgId {
            user: "a@b".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            database: Some("my/db".into()),
            schema: Some("s.x".into()),
            table: Some("T able%".into()),
        };
        let s = id.to_string();
        assert_eq!(
            s,
            "postgresql://a%40b@127.0.0.1:1/my%2Fdb/s%2Ex.T%20able%25"
        );
        assert_eq!(pg(&s), id);
    }

    #[test]
    fn refuses_bad_ids() {
        for bad in [
            "postgresql://127.0.0.1:5432/db",
            "postgresql://u@localhost:5432/db",
            "postgresql://u@127.0.0.1:x/db",
            "postgresql://u@127.0.0.1/db/a.b.c",
            "postgresql://u@127.0.0.1/db/s.t/x",
            "postgresql://u@127.0.0.1/db/.t",
            "postgresql://u@127.0.0.1/db/s%zz",
            "sqlite://relative.db",
            "sqlite:///a/../b.db",
            "sqlite:///a//b.db",
            "sqlite:///",
            "mysql://u@1.2.3.4/x",
            "postgresql://u@127.0.0.1:0/db",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            parse("sqlite:///srv/app.db").unwrap(),
            Id::Sqlite("/srv/app.db".into())
        );
    }

    #[test]
    fn sqlite_directories_are_discover_scopes() {
        assert_eq!(sqlite_dir("sqlite:///data/"), Some(Ok("/data".into())));
        assert_eq!(sqlite_dir("sqlite:///"), Some(Ok("/".into())));
        assert_eq!(sqlite_dir("sqlite:///data/app.db"), None);
        assert_eq!(sqlite_dir("postgresql://u@127.0.0.1/"), None);
        for bad in ["sqlite://data/", "sqlite:///a/../", "sqlite:///a//"] {
            assert!(matches!(sqlite_dir(bad), Some(Err(_))), "{bad} accepted");
        }
        // Not an item: backups and restores refuse it.
        assert!(parse("sqlite:///data/").is_err());
    }
}
