//! The audit log: local jobs of the command line are recorded with who ran
//! them, what the plugin was granted and where a restore went; concurrent
//! writers (several processes) keep one chain; `attache audit verify`
//! passes on the log as written and fails, naming the line, when one line
//! is edited, removed or two are swapped.

use std::path::Path;

use attache_tests::{attache, ok, output, tree, BACKUP_LOCAL};
use serde_json::Value;

fn entries(repo: &Path) -> Vec<Value> {
    ok(attache(repo).args(["audit", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).expect("an entry is JSON"))
        .collect()
}

fn verify(repo: &Path) -> (bool, String) {
    let o = output(attache(repo).args(["audit", "verify"]));
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn local_jobs_are_recorded_and_tampering_is_named() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let src = t.path().join("src");
    tree::make(&src, 10, 1 << 20);
    ok(attache(&repo).arg("init"));
    // Three backups at once, from three processes.
    let children: Vec<_> = (0..3)
        .map(|_| {
            attache(&repo)
                .args(BACKUP_LOCAL)
                .arg(&src)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut snap = String::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        snap = v["id"].as_str().unwrap().to_owned();
    }
    let dest = t.path().join("dest");
    ok(attache(&repo)
        .args(["restore", &snap, "--to"])
        .arg(format!("local:{}", dest.display())));
    // Unsigned containers allowed for one job: a trust change, recorded.
    ok(attache(&repo)
        .args([
            "--allow-unsigned",
            "backup",
            "local",
            "--plugin",
            "filesystem",
            "--include",
        ])
        .arg(&src));
    ok(attache(&repo).args(["token", "create", "--role", "auditor"]));

    let log = entries(&repo);
    assert_eq!(log[0]["event"], "anchor");
    assert_eq!(log[0]["magic"], "attache-audit");
    let starts: Vec<&Value> = log.iter().filter(|e| e["event"] == "job.start").collect();
    assert_eq!(starts.len(), 5, "{log:#?}");
    for s in &starts {
        assert!(s["actor"].as_str().unwrap().starts_with("local:"), "{s}");
        let job = s["job"].as_str().expect("a job id");
        let end = log
            .iter()
            .find(|e| e["event"] == "job.end" && e["job"] == job)
            .unwrap_or_else(|| panic!("job {job} has no end"));
        assert_eq!(end["data"]["outcome"], "succeeded", "{end}");
        assert!(
            log.iter()
                .any(|e| e["event"] == "plugin.grants" && e["job"] == job),
            "job {job}: no grants"
        );
    }
    let backups = starts
        .iter()
        .filter(|s| s["data"]["kind"] == "backup")
        .count();
    assert_eq!(backups, 4);
    // The trust: recorded when first seen, and again when --allow-unsigned
    // changed it; each job's start says whether unsigned were allowed.
    let trust: Vec<&Value> = log
        .iter()
        .filter(|e| e["event"] == "trust.change")
        .collect();
    assert_eq!(trust.len(), 2, "{trust:#?}");
    assert!(trust[0]["data"]["allow_unsigned"].is_null(), "{}", trust[0]);
    assert!(
        trust[0]["data"]["publishers"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "the trusted publishers are named: {}",
        trust[0]
    );
    assert_eq!(trust[1]["data"]["allow_unsigned"], "--allow-unsigned");
    assert_eq!(
        starts
            .iter()
            .filter(|s| s["data"]["trust"]["allow_unsigned"] == "--allow-unsigned")
            .count(),
        1
    );
    let dest_entry = log
        .iter()
        .find(|e| e["event"] == "restore.destination")
        .expect("the restore's destination");
    assert_eq!(
        dest_entry["data"]["to"],
        format!("local:{}", dest.display())
    );
    assert!(log
        .iter()
        .any(|e| e["event"] == "token.create" && e["data"]["role"] == "auditor"));
    assert_eq!(
        log.iter().filter(|e| e["event"] == "policy.change").count(),
        1,
        "the policy is recorded once"
    );
    // Times are filterable.
    assert!(ok(attache(&repo).args(["audit", "--since", "2099-01-01T00:00:00Z"])).is_empty());
    assert!(!ok(attache(&repo).args(["audit", "--since", "1h"])).is_empty());

    let (good, said) = verify(&repo);
    assert!(good, "{said}");
    assert!(said.contains("intact"), "{said}");

    let path = repo.with_extension("state").join("audit.log");
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let put = |l: &[&str]| std::fs::write(&path, l.join("\n") + "\n").unwrap();

    // An edited line (the restore's destination, pointed elsewhere).
    let at = lines
        .iter()
        .position(|l| l.contains("restore.destination"))
        .unwrap();
    let mut edited = lines.clone();
    let changed = lines[at].replace("/dest", "/elsewhere");
    edited[at] = &changed;
    put(&edited);
    let (good, said) = verify(&repo);
    assert!(!good, "an edited line passed");
    assert!(
        said.contains(&format!("line {}:", at + 1)) && said.contains("edited"),
        "{said}"
    );

    // A removed line.
    let mut removed = lines.clone();
    removed.remove(5);
    put(&removed);
    let (good, said) = verify(&repo);
    assert!(!good, "a removed line passed");
    assert!(
        said.contains("line 6:") && said.contains("removed"),
        "{said}"
    );

    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    put(&swapped);
    let (good, said) = verify(&repo);
    assert!(!good, "reordered lines passed");
    assert!(said.contains("line 4:"), "{said}");

    // Put back, it verifies again, and a new entry chains on.
    std::fs::write(&path, &original).unwrap();
    ok(attache(&repo).args(["token", "create", "--role", "auditor"]));
    let (good, said) = verify(&repo);
    assert!(good, "{said}");
}
