//! `attache plugin test PLUGIN.wasm`: checks a plugin against the contract
//! in a temporary container with the agent's runner, and prints a report a
//! plugin author can act on. Each check runs the real runner, as a job
//! would:
//!
//! 1. info: the contract version, the options (required ones given);
//! 2. discover: valid ids;
//! 3. plan of a backup: well formed and allowed by the policy in force;
//! 4. typed errors: an id the plugin cannot know gives a plugin error, not
//!    a trap;
//! 5. quiesce and thaw pair, also when the quiescing instance is dropped
//!    as if it had crashed (thaw then runs in a fresh instance);
//! 6. backup, twice: valid and unique ids, parents before children, hard
//!    links after their target, the same ids and content both times;
//! 7. full restore into a temporary root, and restore of one item alone,
//!    with no item refused;
//! 8. comparison: where ids are paths (`/…` or `SCHEME:///…`), the
//!    restored copy is backed up again and compared item by item.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use guest_runner::stream::{Event, Header, ItemKind, ItemRecord, StreamReader, StreamWriter};
use serde_json::{json, Value};

use crate::cli::{AssembleArgs, Cli, PluginTestArgs};

/// One check's outcome.
struct Check {
    name: &'static str,
    ok: Option<bool>,
    detail: String,
}

/// An item of a backup stream, with a hash of its content.
#[derive(Clone)]
struct Seen {
    record: ItemRecord,
    content: blake3::Hash,
}

pub(crate) fn run(cli: &Cli, a: &PluginTestArgs) -> anyhow::Result<()> {
    let ctx = super::context(cli)?;
    let agent = crate::agent::find(ctx.agent_dir.as_deref())?;
    // The runner that checks the plugin is the agent's, once the trust
    // vouches for it; the plugin under test is its author's own and
    // unsigned, so the temporary container runs with --allow-unsigned.
    crate::container::verify(&agent, &ctx.trust, &ctx.cache.join("containers"))?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => default_name(&a.component)?,
    };
    let dir = tmp.path().join("agent");
    super::container::assemble(&AssembleArgs {
        runner: agent.join(guest_runner::manifest::RUNNER_FILE),
        plugins: vec![(name.clone(), a.component.clone())],
        out: dir.clone(),
        no_precompile: false,
        sign: None,
    })
    .context("cannot assemble a container with the plugin")?;
    let t = Tester {
        dir,
        cache: tmp.path().join("cache"),
        name,
        options: a.options.clone(),
        policy: ctx.policy.text.clone(),
        policy_origin: ctx.policy.origin.clone(),
    };
    let mut checks = Vec::new();
    let report = t.run_all(tmp.path(), &a.include, &mut checks);
    if let Err(e) = &report {
        checks.push(Check {
            name: "harness",
            ok: Some(false),
            detail: format!("{e:#}"),
        });
    }
    let failed = checks.iter().filter(|c| c.ok == Some(false)).count();
    // Written, not printed: a reader that goes away is not a panic.
    let mut out = std::io::stdout().lock();
    if a.json {
        let v: Vec<Value> = checks
            .iter()
            .map(|c| json!({ "check": c.name, "ok": c.ok, "detail": c.detail }))
            .collect();
        let report = json!({ "plugin": t.name, "failed": failed, "checks": v });
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "plugin {} ({})", t.name, a.component.display())?;
        for c in &checks {
            let mark = match c.ok {
                Some(true) => "ok  ",
                Some(false) => "FAIL",
                None => "skip",
            };
            writeln!(out, "  {mark} {:<20} {}", c.name, c.detail)?;
        }
        let passed = checks.iter().filter(|c| c.ok == Some(true)).count();
        writeln!(out, "{passed} passed, {failed} failed")?;
    }
    anyhow::ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}

/// The plugin's name from its file: `attache_plugin_NAME.wasm` or
/// `NAME.wasm`.
fn default_name(component: &Path) -> anyhow::Result<String> {
    let stem = component
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the component's file name is not UTF-8; pass --name")?;
    let n = stem
        .strip_prefix("attache_plugin_")
        .or_else(|| stem.strip_prefix("attache_test_plugin_"))
        .unwrap_or(stem);
    Ok(n.to_owned())
}

struct Tester {
    dir: PathBuf,
    cache: PathBuf,
    name: String,
    options: Vec<(String, String)>,
    policy: String,
    policy_origin: String,
}

/// A runner's exit: its code, standard output and error line.
struct Exit {
    code: Option<i32>,
    stdout: Vec<u8>,
    error: String,
}

impl Exit {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl Tester {
    fn runner(&self) -> Command {
        let mut c = Command::new(self.dir.join(guest_runner::manifest::RUNNER_FILE));
        c.arg("--agent-dir")
            .arg(&self.dir)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--policy-inline", &self.policy])
            .args(["--policy-origin", &self.policy_origin])
            .arg("--allow-unsigned")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn with_options(&self, c: &mut Command) {
        for (k, v) in &self.options {
            c.arg("--option").arg(format!("{k}={v}"));
        }
    }

    fn exec(&self, mut c: Command) -> anyhow::Result<Exit> {
        let out = c.output().context("cannot run the runner")?;
        Ok(Exit {
            code: out.status.code(),
            stdout: out.stdout,
            error: crate::jobs::plugin::runner_error(&out.stderr),
        })
    }

    fn run_all(
        &self,
        tmp: &Path,
        include: &[String],
        checks: &mut Vec<Check>,
    ) -> anyhow::Result<()> {
        let mut check =
            |name, ok: Option<bool>, detail: String| checks.push(Check { name, ok, detail });
        // 1. info
        let mut c = self.runner();
        c.args(["info", "--plugin", &self.name]);
        let e = self.exec(c)?;
        if !e.ok() {
            check("info", Some(false), e.error);
            return Ok(());
        }
        let info: Value = serde_json::from_slice(&e.stdout).context("info is not JSON")?;
        let p = &info["plugins"][0];
        let missing: Vec<&str> = p["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["required"] == json!(true))
            .filter_map(|o| o["name"].as_str())
            .filter(|n| !self.options.iter().any(|(k, _)| k == n))
            .collect();
        let quiesces = p["supports_quiesce"] == json!(true);
        check(
            "info",
            Some(missing.is_empty()),
            if missing.is_empty() {
                format!(
                    "version {}, contract {}, {} option(s), quiesce: {quiesces}",
                    p["version"].as_str().unwrap_or("?"),
                    p["contract"].as_str().unwrap_or("?"),
                    p["options"].as_array().map_or(0, Vec::len)
                )
            } else {
                format!(
                    "required option(s) not given with --option: {}",
                    missing.join(", ")
                )
            },
        );
        if !missing.is_empty() {
            return Ok(());
        }

        // 2. discover
        let mut c = self.runner();
        c.args(["discover", "--plugin", &self.name]);
        self.with_options(&mut c);
        let e = self.exec(c)?;
        let discovered: Vec<String> = if e.ok() {
            let v: Value = serde_json::from_slice(&e.stdout).context("discover is not JSON")?;
            let ids: Vec<String> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect();
            let bad: Vec<String> = ids
                .iter()
                .filter_map(|id| id_problem(id).map(|why| format!("{id:?}: {why}")))
                .collect();
            check(
                "discover",
                Some(bad.is_empty()),
                if bad.is_empty() {
                    format!("{} top item(s)", ids.len())
                } else {
                    bad.join("; ")
                },
            );
            ids
        } else {
            check("discover", Some(false), e.error);
            Vec::new()
        };
        let selection: Vec<String> = if include.is_empty() {
            discovered.into_iter().take(8).collect()
        } else {
            include.to_vec()
        };
        if selection.is_empty() {
            check(
                "backup",
                None,
                "nothing to back up: discover listed nothing; pass --include ID".into(),
            );
            return Ok(());
        }

        // 3. plan
        let mut c = self.runner();
        c.args([
            "plan",
            "--plugin",
            &self.name,
            "--operation",
            "backup",
            "--check",
        ]);
        for s in &selection {
            c.args(["--select", s]);
        }
        self.with_options(&mut c);
        let e = self.exec(c)?;
        if !e.ok() {
            check("plan", Some(false), e.error);
            return Ok(());
        }
        let plan: guest_runner::plan::Plan =
            serde_json::from_slice(&e.stdout).context("the plan is not JSON")?;
        check(
            "plan",
            Some(true),
            format!(
                "{} path(s), {} address(es), allowed by {}",
                plan.paths.len(),
                plan.connect.len(),
                self.policy_origin
            ),
        );

        // 4. typed errors
        let mut c = self.runner();
        c.args(["backup", "--plugin", &self.name, "--output"])
            .arg(tmp.join("bogus.stream"))
            .args(["--select", "attache-plugin-test:\u{1}no-such-item"]);
        self.with_options(&mut c);
        let e = self.exec(c)?;
        check(
            "typed errors",
            Some(matches!(e.code, Some(2) | Some(3))),
            match e.code {
                Some(2) | Some(3) => format!("an unknown id is refused: {}", e.error),
                Some(0) => "an id no plugin can know was backed up without an error".into(),
                Some(4) => format!("an unknown id stopped the plugin (a trap): {}", e.error),
                _ => format!("unexpected failure: {}", e.error),
            },
        );

        // 5. quiesce and thaw
        if quiesces {
            let mut c = self.runner();
            c.args([
                "backup",
                "--plugin",
                &self.name,
                "--quiesce",
                "--fail-after-quiesce",
            ]);
            for s in &selection {
                c.args(["--select", s]);
            }
            self.with_options(&mut c);
            let e = self.exec(c)?;
            check(
                "quiesce/thaw",
                Some(e.ok()),
                if e.ok() {
                    "thaw works in a fresh instance after the quiescing one is dropped".into()
                } else {
                    format!("after a dropped instance: {}", e.error)
                },
            );
        } else {
            check("quiesce/thaw", None, "the plugin has no quiesce".into());
        }

        // 6. backup twice
        let first = tmp.join("first.stream");
        let e = self.backup(&selection, &first, quiesces)?;
        if !e.ok() {
            check("backup", Some(false), e.error);
            return Ok(());
        }
        let items = read_stream(&first)?;
        let problems = order_problems(&items);
        check(
            "backup",
            Some(problems.is_empty()),
            if problems.is_empty() {
                format!(
                    "{} item(s), {} bytes; parents before children",
                    items.len(),
                    items.iter().map(|i| i.record.size).sum::<u64>()
                )
            } else {
                problems.join("; ")
            },
        );
        let second = tmp.join("second.stream");
        let e = self.backup(&selection, &second, quiesces)?;
        if e.ok() {
            let again = read_stream(&second)?;
            let diff = differences(&items, &again);
            check(
                "stable ids",
                Some(diff.is_empty()),
                if diff.is_empty() {
                    "a second backup names the same items with the same content".into()
                } else {
                    diff.join("; ")
                },
            );
        } else {
            check("stable ids", Some(false), e.error);
        }

        // 7. restores
        let tops = tops(&items);
        let full_root = tmp.join("restore-full");
        let e = self.restore(&first, &full_root, &tops)?;
        check("restore", Some(e.ok()), report(&e, items.len()));
        if let Some(one) = items
            .iter()
            .rev()
            .find(|i| {
                matches!(
                    i.record.kind,
                    ItemKind::File | ItemKind::Blob | ItemKind::Message | ItemKind::Table
                )
            })
            .or(items.last())
        {
            let single = tmp.join("single.stream");
            filtered_stream(&first, &single, &one.record.id)?;
            let root = tmp.join("restore-one");
            let e = self.restore(&single, &root, std::slice::from_ref(&one.record))?;
            check(
                "single-item restore",
                Some(e.ok()),
                format!("{}: {}", one.record.id, report(&e, 1)),
            );
        }

        // 8. comparison
        let mapped: Option<Vec<(String, String)>> = items
            .iter()
            .map(|i| map_id(&i.record.id, &full_root).map(|m| (i.record.id.clone(), m)))
            .collect();
        match mapped {
            None => check(
                "comparison",
                None,
                "ids are not paths, so the restored copy cannot be read back here".into(),
            ),
            Some(_) => {
                let sel: Option<Vec<String>> =
                    selection.iter().map(|s| map_id(s, &full_root)).collect();
                let sel = sel.unwrap_or_default();
                let back = tmp.join("restored.stream");
                let e = self.backup(&sel, &back, false)?;
                if !e.ok() {
                    check(
                        "comparison",
                        Some(false),
                        format!("backing up the restored copy: {}", e.error),
                    );
                } else {
                    let restored = read_stream(&back)?;
                    let by_id: HashMap<&str, &Seen> =
                        restored.iter().map(|s| (s.record.id.as_str(), s)).collect();
                    let mut bad = Vec::new();
                    for i in &items {
                        let Some(m) = map_id(&i.record.id, &full_root) else {
                            continue;
                        };
                        match by_id.get(m.as_str()) {
                            None => bad.push(format!("{} was not restored", i.record.id)),
                            Some(r) if r.record.kind != i.record.kind => {
                                bad.push(format!("{}: restored as another kind", i.record.id))
                            }
                            Some(r) if r.content != i.content || r.record.size != i.record.size => {
                                bad.push(format!("{}: restored content differs", i.record.id))
                            }
                            Some(_) => {}
                        }
                    }
                    check(
                        "comparison",
                        Some(bad.is_empty()),
                        if bad.is_empty() {
                            format!("{} item(s) restored identical", items.len())
                        } else {
                            bad.into_iter().take(10).collect::<Vec<_>>().join("; ")
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn backup(&self, selection: &[String], out: &Path, quiesce: bool) -> anyhow::Result<Exit> {
        let mut c = self.runner();
        c.args(["backup", "--plugin", &self.name, "--output"])
            .arg(out);
        if quiesce {
            c.arg("--quiesce");
        }
        for s in selection {
            c.args(["--select", s]);
        }
        self.with_options(&mut c);
        self.exec(c)
    }

    fn restore(&self, stream: &Path, root: &Path, tops: &[ItemRecord]) -> anyhow::Result<Exit> {
        std::fs::create_dir_all(root)?;
        let mut c = self.runner();
        c.args(["restore", "--plugin", &self.name, "--target"])
            .arg(root)
            .arg("--input")
            .arg(stream);
        for t in tops {
            c.args(["--select", &t.id])
                .arg("--select-kind")
                .arg(format!("{}={}", t.id, t.kind.as_str()));
        }
        self.with_options(&mut c);
        self.exec(c)
    }
}

/// Why an id breaks the contract's rules, if it does.
fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        return Some("empty");
    }
    if id.contains('\0') {
        return Some("contains NUL");
    }
    if id.starts_with('/') && id != "/" {
        return guest_runner::plan::clean_path(id).err();
    }
    None
}

/// The items of a backup stream, with content hashes.
fn read_stream(path: &Path) -> anyhow::Result<Vec<Seen>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = StreamReader::new(std::io::BufReader::new(f));
    let mut out: Vec<Seen> = Vec::new();
    let mut cur: Option<(ItemRecord, blake3::Hasher)> = None;
    while let Some(ev) = r.next_event().context("the plugin's stream is invalid")? {
        match ev {
            Event::Item(rec) => cur = Some((rec, blake3::Hasher::new())),
            Event::Data(d) => {
                if let Some((_, h)) = cur.as_mut() {
                    h.update(d);
                }
            }
            Event::ItemEnd(_) => {
                if let Some((record, h)) = cur.take() {
                    out.push(Seen {
                        record,
                        content: h.finalize(),
                    });
                }
            }
            Event::ItemAbort(_) => cur = None,
            _ => {}
        }
    }
    Ok(out)
}

/// Contract violations in the order and naming of a backup's items.
fn order_problems(items: &[Seen]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, i) in items.iter().enumerate() {
        let id = i.record.id.as_str();
        if let Some(why) = id_problem(id) {
            out.push(format!("{id:?}: {why}"));
        }
        if seen.insert(id, n).is_some() {
            out.push(format!("{id:?} emitted twice"));
        }
        if let Some(t) = &i.record.hardlink_target {
            if !seen.contains_key(t.as_str()) {
                out.push(format!("hard link {id:?} comes before its target {t:?}"));
            }
        }
    }
    for (n, i) in items.iter().enumerate() {
        for parent in ancestors(&i.record.id) {
            if let Some(&m) = seen.get(parent) {
                if m > n {
                    out.push(format!(
                        "{:?} comes before its parent {parent:?}",
                        i.record.id
                    ));
                }
            }
        }
        if out.len() > 20 {
            break;
        }
    }
    out
}

/// The ids `id` lies below, by `/` (nearest first): `/a/b/c` is below
/// `/a/b`, `/a` and `/`; `s://h/x/y` below `s://h/x` and `s://h`.
fn ancestors(id: &str) -> impl Iterator<Item = &str> {
    let start = id.find("://").map_or(0, |i| i + 3);
    id.char_indices()
        .rev()
        .filter(move |(i, c)| *c == '/' && *i >= start)
        .map(move |(i, _)| if i == 0 { "/" } else { &id[..i] })
        .filter(move |p| *p != id)
}

/// How two backups of the same selection differ.
fn differences(a: &[Seen], b: &[Seen]) -> Vec<String> {
    let bm: HashMap<&str, &Seen> = b.iter().map(|s| (s.record.id.as_str(), s)).collect();
    let mut out = Vec::new();
    for s in a {
        match bm.get(s.record.id.as_str()) {
            None => out.push(format!("{} is missing the second time", s.record.id)),
            Some(o) if o.content != s.content => {
                out.push(format!("{} has other content the second time", s.record.id))
            }
            Some(_) => {}
        }
    }
    if b.len() != a.len() {
        out.push(format!(
            "{} items the first time, {} the second",
            a.len(),
            b.len()
        ));
    }
    out.truncate(10);
    out
}

/// The items below no other item of the stream.
fn tops(items: &[Seen]) -> Vec<ItemRecord> {
    let ids: std::collections::HashSet<&str> = items.iter().map(|i| i.record.id.as_str()).collect();
    items
        .iter()
        .filter(|i| !ancestors(&i.record.id).any(|p| ids.contains(p)))
        .map(|i| i.record.clone())
        .collect()
}

/// A stream holding one item of `src` (with its content).
fn filtered_stream(src: &Path, dst: &Path, id: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(src)?;
    let mut r = StreamReader::new(std::io::BufReader::new(f));
    let mut w: Option<StreamWriter<std::fs::File>> = None;
    let mut copying = false;
    while let Some(ev) = r.next_event()? {
        match ev {
            Event::Header(h) => {
                let out = std::fs::File::create(dst)?;
                w = Some(StreamWriter::new(out, &Header { ..h })?);
            }
            Event::Item(rec) => {
                copying = rec.id == id;
                if copying {
                    w.as_mut().context("no header")?.begin_item(&rec)?;
                }
            }
            Event::Data(d) if copying => {
                w.as_mut().context("no header")?.data(d)?;
            }
            Event::ItemEnd(_) if copying => {
                w.as_mut().context("no header")?.end_item()?;
                copying = false;
            }
            _ => {}
        }
    }
    w.context("the stream has no header")?.finish()?;
    Ok(())
}

/// An id as it names the restored copy below `root`: `/P` is `ROOT/P`,
/// `SCHEME:///P…` is `SCHEME://ROOT/P…`; `None` where ids are not paths.
fn map_id(id: &str, root: &Path) -> Option<String> {
    let root = root.to_str()?.trim_end_matches('/');
    if id.starts_with('/') {
        return Some(format!("{root}{id}"));
    }
    let (scheme, rest) = id.split_once("://")?;
    rest.starts_with('/')
        .then(|| format!("{scheme}://{root}{rest}"))
}

/// The runner's restore report in a line.
fn report(e: &Exit, expected: usize) -> String {
    if !e.ok() {
        return e.error.clone();
    }
    let v: Value = serde_json::from_slice(&e.stdout).unwrap_or(Value::Null);
    format!(
        "{} of {expected} item(s) restored, {} refused, {} warning(s)",
        v["items"],
        v["refused"].as_array().map_or(0, Vec::len),
        v["warnings"].as_array().map_or(0, Vec::len)
    )
}

#[cfg(test)]
mod tests {
    use super::ancestors;

    #[test]
    fn ancestors_by_slash() {
        let a: Vec<&str> = ancestors("/a/b/c").collect();
        assert_eq!(a, ["/a/b", "/a", "/"]);
        let a: Vec<&str> = ancestors("kv:///srv/s.kv#k").collect();
        assert_eq!(a, ["kv:///srv", "kv://"]);
        let a: Vec<&str> = ancestors("app://u@1.2.3.4:143/INBOX/;UID=1").collect();
        assert_eq!(a, ["app://u@1.2.3.4:143/INBOX", "app://u@1.2.3.4:143"]);
        assert_eq!(ancestors("/").count(), 0);
    }
}
