//! Restore streams made to hurt: ids with `..`, links planted to redirect
//! later items, truncation and corruption. Nothing lands outside the target.

use std::fs;
use std::path::Path;

use attache_tests::runner_exit::{ERROR, PLUGIN_ERROR};
use attache_tests::{assemble, component, fails, output, runner};
use guest_runner::stream::{Header, ItemKind, ItemRecord, StreamWriter};
use serde_json::Value;

fn record(id: &str, kind: ItemKind) -> ItemRecord {
    ItemRecord {
        mode: Some(0o100644),
        ..ItemRecord::new(id, kind, 0)
    }
}

fn stream(items: &[(ItemRecord, &[u8])]) -> Vec<u8> {
    let h = Header {
        format: 1,
        plugin: "filesystem".into(),
        plugin_version: "0".into(),
        created: 0,
    };
    let mut w = StreamWriter::new(Vec::new(), &h).expect("header");
    for (r, data) in items {
        w.begin_item(r).expect("item");
        w.data(data).expect("data");
        w.end_item().expect("end");
    }
    w.finish().expect("trailer").0
}

fn symlink(id: &str, target: &str) -> ItemRecord {
    ItemRecord {
        symlink_target: Some(target.into()),
        mode: Some(0o120777),
        ..record(id, ItemKind::Symlink)
    }
}

struct Run {
    _t: tempfile::TempDir,
    base: std::path::PathBuf,
    agent: std::path::PathBuf,
}

fn setup() -> Run {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    assemble(&agent, &[("filesystem", &component("filesystem"))]);
    Run {
        base: t.path().to_owned(),
        agent,
        _t: t,
    }
}

impl Run {
    /// Restores `bytes` below `target` as a restore of the whole tree: the
    /// top item selected is `/`, a directory, so the plugin's plan asks to
    /// write all of `target` (the most a stream could be given).
    fn restore(&self, bytes: &[u8], target: &Path) -> std::process::Output {
        let input = self.base.join("in.stream");
        fs::write(&input, bytes).expect("write stream");
        fs::create_dir_all(target).expect("target");
        let mut c = runner(&self.agent);
        c.args(["restore", "--plugin", "filesystem", "--target"])
            .arg(target)
            .args(["--select", "/", "--select-kind", "/=directory"])
            .arg("--input")
            .arg(&input);
        output(&mut c)
    }
}

#[test]
fn escaping_ids_and_planted_links_write_nothing_outside() {
    let r = setup();
    let parent = r.base.join("restore");
    let target = parent.join("target");
    let s = stream(&[
        (record("/good/file", ItemKind::File), b"ok"),
        (record("/../escape-dotdot", ItemKind::File), b"bad"),
        (record("/good/../../escape-nested", ItemKind::File), b"bad"),
        (record("relative-escape", ItemKind::File), b"bad"),
        (symlink("/evil", "/"), b""),
        (
            record("/evil/escape-via-absolute-link", ItemKind::File),
            b"bad",
        ),
        (symlink("/up", "../../.."), b""),
        (
            record("/up/escape-via-relative-link", ItemKind::File),
            b"bad",
        ),
        (
            ItemRecord {
                hardlink_target: Some("/../../../etc/passwd".into()),
                ..record("/hl", ItemKind::Hardlink)
            },
            b"",
        ),
        (
            ItemRecord {
                hardlink_target: Some("/evil/etc/passwd".into()),
                ..record("/hl2", ItemKind::Hardlink)
            },
            b"",
        ),
        (record("/good/after", ItemKind::File), b"still restored"),
    ]);
    let o = r.restore(&s, &target);
    assert_eq!(
        o.status.code(),
        Some(ERROR),
        "refusals make the restore fail: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    let refused: Vec<&str> = report["refused"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(
        refused,
        ["/../escape-dotdot", "/good/../../escape-nested"],
        "the runner refuses bad ids itself"
    );
    let warned: Vec<&str> = report["warnings"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    for id in [
        "relative-escape",
        "/evil/escape-via-absolute-link",
        "/up/escape-via-relative-link",
        "/hl",
        "/hl2",
    ] {
        assert!(
            warned.contains(&id),
            "{id} not refused by the plugin: {warned:?}"
        );
    }

    // Inside the target: exactly the harmless items.
    let mut inside: Vec<String> = attache_tests::listing(&target)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    inside.sort();
    assert_eq!(inside, ["evil", "good", "good/after", "good/file", "up"]);
    assert_eq!(fs::read(target.join("good/file")).expect("read"), b"ok");
    assert_eq!(
        fs::read(target.join("good/after")).expect("read"),
        b"still restored"
    );
    // Outside: nothing.
    assert_eq!(
        attache_tests::listing(&parent).len(),
        6,
        "only the target and its contents"
    );
    for p in [
        "/escape-via-absolute-link",
        "/escape-dotdot",
        "/escape-nested",
    ] {
        assert!(!Path::new(p).exists(), "{p} written");
    }
    let above = r.base.parent().expect("tmp");
    assert!(!above.join("escape-via-relative-link").exists());
    assert_eq!(
        fs::read_to_string("/etc/passwd").map(|s| s.is_empty()).ok(),
        Some(false)
    );
}

#[test]
fn truncated_and_corrupted_streams_fail_clearly() {
    let r = setup();
    let content = vec![7u8; 3 << 20];
    let good = stream(&[
        (record("/f", ItemKind::File), &content),
        (record("/g", ItemKind::File), b"g"),
    ]);

    let target = r.base.join("t1");
    let o = r.restore(&good[..good.len() / 2], &target);
    let err = String::from_utf8_lossy(&o.stderr);
    // The plugin stops on the transport error the runner gives it.
    assert_eq!(o.status.code(), Some(PLUGIN_ERROR), "{err}");
    assert!(err.contains("before its trailer"), "{err}");

    let mut bad = good.clone();
    let at = good.len() / 3;
    bad[at] ^= 0xff;
    let target = r.base.join("t2");
    let o = r.restore(&bad, &target);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(PLUGIN_ERROR), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        !target.join("g").exists(),
        "nothing after the damage is restored"
    );

    let target = r.base.join("t3");
    let o = r.restore(b"not a stream at all", &target);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad magic"));

    // The intact stream restores completely.
    let target = r.base.join("t4");
    let o = r.restore(&good, &target);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(target.join("f")).expect("f"), content);
}

#[test]
fn a_stream_for_another_plugin_is_refused() {
    let r = setup();
    let h = Header {
        format: 1,
        plugin: "sql".into(),
        plugin_version: "0".into(),
        created: 0,
    };
    let s = StreamWriter::new(Vec::new(), &h)
        .expect("h")
        .finish()
        .expect("t")
        .0;
    let input = r.base.join("sql.stream");
    fs::write(&input, s).expect("write");
    let mut c = runner(&r.agent);
    c.args(["restore", "--plugin", "filesystem", "--target"])
        .arg(&r.base)
        .arg("--input")
        .arg(&input);
    let err = fails(&mut c);
    assert!(err.contains("is for plugin \"sql\""), "{err}");
}
