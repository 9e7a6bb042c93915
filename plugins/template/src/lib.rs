//! `{{name}}`: an Attaché plugin for a small key-value store, a file of
//! `key=value` lines. Replace the store logic with your application's.
//!
//! Ids: `kv:///ABS/PATH/store.kv` is a store, `kv:///ABS/PATH/store.kv#KEY`
//! one of its keys. Backing up a store emits the store and every key;
//! restoring rewrites the store file with the restored keys (an existing key
//! is replaced only with `overwrite`).

use std::collections::BTreeMap;

use attache_plugin_sdk::prelude::*;

/// The plugin.
pub struct Kv;

/// A parsed id: the store's path and, for a key, the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id {
    /// Absolute path of the store file.
    pub path: String,
    /// The key, for a key id.
    pub key: Option<String>,
}

/// Parses `kv:///PATH[#KEY]`.
pub fn parse_id(id: &str) -> Result<Id, PluginError> {
    let rest = id
        .strip_prefix("kv://")
        .ok_or_else(|| PluginError::invalid(format!("{id:?} is not kv:///PATH[#KEY]")))?;
    let (path, key) = match rest.split_once('#') {
        Some((p, k)) if !k.is_empty() && !k.contains(['=', '\n']) => (p, Some(k.to_owned())),
        Some(_) => return Err(PluginError::invalid(format!("{id:?}: bad key"))),
        None => (rest, None),
    };
    if preopens::components(path)?.is_empty() {
        return Err(PluginError::invalid(format!("{id:?} names no file")));
    }
    Ok(Id {
        path: path.to_owned(),
        key,
    })
}

/// The `key=value` lines of a store, in key order.
pub fn parse_store(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A store's text.
pub fn render_store(entries: &BTreeMap<String, String>) -> String {
    entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Reads a store: granted alone (a preopen that is the file), or below a
/// granted directory; natively, from the real filesystem.
fn read_store(path: &str) -> Result<String, PluginError> {
    let all = preopens::all();
    let bytes = match preopens::find(&all, path) {
        Some(p) => {
            let mut out = Vec::new();
            loop {
                let (piece, eof) = p
                    .dir
                    .read(1 << 16, out.len() as u64)
                    .map_err(|e| PluginError::denied(format!("{path}: {}", e.message())))?;
                out.extend_from_slice(&piece);
                if eof || piece.is_empty() {
                    break out;
                }
            }
        }
        None => std::fs::read(path).map_err(|e| PluginError::denied(format!("{path}: {e}")))?,
    };
    String::from_utf8(bytes).map_err(|_| PluginError::application(format!("{path} is not UTF-8")))
}

/// The id a restored item takes: renamed when its store is.
fn target(id: &Id, destination: &RestoreDestination) -> Result<Id, PluginError> {
    if let RestoreDestination::Renamed(map) = destination {
        let store = format!("kv://{}", id.path);
        if let Some((_, to)) = map.iter().find(|(from, _)| *from == store) {
            let to = parse_id(to)?;
            return Ok(Id {
                path: to.path,
                key: id.key.clone(),
            });
        }
    }
    Ok(id.clone())
}

impl Plugin for Kv {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "{{name}}",
            env!("CARGO_PKG_VERSION"),
            ApplicationKind::Other,
            "key=value store files",
        )
    }

    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
        let mut plan = AccessPlan::new();
        for s in &request.selection {
            let id = parse_id(&s.id)?;
            plan = match (request.operation, &request.destination) {
                (Operation::Restore, dest) => {
                    let id = match dest {
                        Some(d) => target(&id, d)?,
                        None => id,
                    };
                    // The store is rewritten beside itself and renamed.
                    plan.read_write(preopens::parent(&id.path)?, "the store to rewrite")
                }
                _ => plan.read(id.path, "the store to read"),
            };
        }
        Ok(plan)
    }

    fn discover(
        scope: Option<String>,
        _depth: u32,
        _options: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        let Some(scope) = scope else {
            return Ok(Vec::new());
        };
        let id = parse_id(&scope)?;
        let store = parse_store(&read_store(&id.path)?);
        Ok(store
            .iter()
            .map(|(k, v)| {
                CatalogEntry::new(format!("kv://{}#{k}", id.path), ItemKind::Blob)
                    .size(v.len() as u64)
            })
            .collect())
    }

    fn backup(request: BackupRequest) -> Result<Summary, PluginError> {
        let mut summary = Summary::default();
        for sel in &request.selection {
            let id = parse_id(sel)?;
            let store = parse_store(&read_store(&id.path)?);
            if id.key.is_none() {
                let item = Item::new(
                    format!("kv://{}", id.path),
                    ItemKind::Database,
                    Meta::new(0).attr("keys", store.len()),
                );
                sink::emit(&item, &ItemData::None)?;
                summary.add(0);
            }
            for (k, v) in &store {
                if id.key.as_ref().is_some_and(|want| want != k) {
                    continue;
                }
                let item = Item::new(
                    format!("kv://{}#{k}", id.path),
                    ItemKind::Blob,
                    Meta::new(v.len() as u64),
                );
                sink::emit(&item, &ItemData::Inline(v.as_bytes().to_vec()))?;
                summary.add(v.len() as u64);
            }
            if let Some(key) = id.key.as_ref().filter(|k| !store.contains_key(*k)) {
                sink::warn(sel, &format!("no key {key:?} in {}", id.path));
                summary.warned();
            }
        }
        host::progress(summary.items, summary.bytes, Some(summary.items), Some(summary.bytes));
        Ok(summary)
    }

    fn restore(request: RestoreRequest) -> Result<Summary, PluginError> {
        let mut summary = Summary::default();
        // Store path -> restored keys, in stream order.
        let mut stores: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
        while let Some((item, content)) = source::next()? {
            let id = target(&parse_id(&item.id)?, &request.destination)?;
            let entry = stores.entry(id.path.clone()).or_default();
            if let Some(key) = id.key {
                let value = String::from_utf8(content.read_all()?)
                    .map_err(|_| PluginError::invalid(format!("{}: not UTF-8", item.id)))?;
                entry.push((item.id, key, value));
            }
        }
        for (path, keys) in stores {
            let mut store = match read_store(&path) {
                Ok(text) => parse_store(&text),
                Err(_) => BTreeMap::new(),
            };
            for (id, key, value) in keys {
                if store.contains_key(&key) && !request.overwrite {
                    source::warn(&id, "exists; not overwritten");
                    summary.warned();
                    continue;
                }
                summary.add(value.len() as u64);
                store.insert(key, value);
            }
            let tmp = format!("{path}.restoring");
            std::fs::write(&tmp, render_store(&store))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| PluginError::application(format!("writing {path}: {e}")))?;
            host::info(&format!("{path}: restored"));
        }
        Ok(summary)
    }
}

export_plugin!(Kv);

#[cfg(test)]
mod tests {
    use super::*;
    use attache_plugin_sdk::mock::MockHost;

    /// A store file in a fresh temporary directory.
    fn store(test: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let path = dir.join("store.kv");
        std::fs::write(&path, text).expect("store file");
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn ids_and_plans() {
        assert_eq!(
            parse_id("kv:///srv/s.kv#a").unwrap(),
            Id { path: "/srv/s.kv".into(), key: Some("a".into()) }
        );
        assert!(parse_id("kv://rel.kv").is_err());
        assert!(parse_id("kv:///srv/../s.kv").is_err());
        let request = |operation| PlanRequest {
            operation,
            selection: vec![Selected { id: "kv:///srv/s.kv".into(), kind: None }],
            destination: None,
            options: vec![],
        };
        let backup = Kv::plan(request(Operation::Backup)).unwrap();
        assert_eq!(backup.paths[0].path, "/srv/s.kv");
        assert_eq!(backup.paths[0].access, PathAccess::Read);
        let restore = Kv::plan(request(Operation::Restore)).unwrap();
        assert_eq!(restore.paths[0].path, "/srv");
        assert_eq!(restore.paths[0].access, PathAccess::ReadWrite);
    }

    #[test]
    fn backs_up_every_key() {
        let path = store("kv-backup", "b=2\na=1\n");
        let mut host = MockHost::new();
        let request = BackupRequest { selection: vec![format!("kv://{path}")], options: vec![] };
        let summary = host.run(|| Kv::backup(request)).unwrap();
        assert_eq!((summary.items, summary.bytes), (3, 2));
        let a = host.item(&format!("kv://{path}#a")).and_then(|e| e.bytes());
        assert_eq!(a, Some(&b"1"[..]));
        assert_eq!(host.emitted()[0].item.kind, ItemKind::Database);
    }

    #[test]
    fn restores_and_respects_overwrite() {
        let path = store("kv-restore", "a=old\n");
        let item = |k: &str, v: &[u8]| {
            Item::new(format!("kv://{path}#{k}"), ItemKind::Blob, Meta::new(v.len() as u64))
        };
        let mut host = MockHost::new()
            .restoring(Item::new(format!("kv://{path}"), ItemKind::Database, Meta::new(0)), b"")
            .restoring(item("a", b"new"), b"new")
            .restoring(item("b", b"2"), b"2");
        let request = RestoreRequest {
            destination: RestoreDestination::Original,
            overwrite: false,
            options: vec![],
        };
        let summary = host.run(|| Kv::restore(request)).unwrap();
        assert_eq!((summary.items, summary.warnings), (1, 1));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a=old\nb=2\n");
        assert_eq!(host.warnings()[0].message, "exists; not overwritten");
    }
}
