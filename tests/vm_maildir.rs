//! The mail plugin on a Maildir inside a VM, where the mail store has no
//! network path: back it up through the container, delete a message in the
//! guest, restore that one message in place, and find it back byte for
//! byte with its flags; nothing is left attached.

use std::fs;
use std::path::Path;

use attache_tests::vm::{serial, TestVm};
use attache_tests::{attache, ok};
use serde_json::Value;

fn message(dir: &Path, name: &str, subject: &str, body: &str) -> Vec<u8> {
    let m = format!(
        "From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\
         Message-ID: <{name}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    );
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join(name), &m).expect("write");
    m.into_bytes()
}

#[test]
fn a_message_of_a_maildir_in_a_vm_is_restored_in_place() {
    let _serial = serial();
    let t = tempfile::Builder::new()
        .prefix("vmmaildir")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let (repo, state) = (t.path().join("repo"), t.path().join("state"));
    let site = || {
        let mut c = attache(&repo);
        c.env("ATTACHE_STATE_DIR", &state);
        c
    };
    ok(site().arg("init"));
    let src = t.path().join("src");
    let md = src.join("Maildir");
    for d in [
        "tmp",
        "new",
        "cur",
        ".Archive/tmp",
        ".Archive/new",
        ".Archive/cur",
    ] {
        fs::create_dir_all(md.join(d)).expect("mkdir");
    }
    message(
        &md.join("cur"),
        "1764496800.M1P10.guest:2,S",
        "first",
        "one",
    );
    let lost = message(
        &md.join("cur"),
        "1764496801.M2P10.guest:2,RS",
        "the one that gets lost",
        "two",
    );
    message(&md.join("new"), "1764496802.M3P10.guest", "unread", "three");
    message(
        &md.join(".Archive/cur"),
        "1764496803.M4P10.guest:2,S",
        "old",
        "four",
    );
    let vms = t.path().join("vms");
    let vm = TestVm::boot(&vms, "vm1", &src);
    ok(site()
        .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(&vms)
        .arg("--datastore")
        .arg(t.path().join("ds")));

    let out = ok(site().args([
        "backup",
        "hv1/vm1",
        "--plugin",
        "mail",
        "--json",
        "--include",
        "maildir:///data/Maildir",
    ]));
    let snap: Value = serde_json::from_str(&out).expect("backup --json");
    let snap = snap["id"].as_str().expect("id").to_owned();
    vm.assert_clean();
    let items: Vec<Value> =
        serde_json::from_str(&ok(site().args(["ls", &snap, "--json"]))).expect("ls --json");
    let messages: Vec<&Value> = items.iter().filter(|i| i["kind"] == "message").collect();
    assert_eq!(messages.len(), 4, "{items:?}");
    let id = messages
        .iter()
        .filter_map(|i| i["id"].as_str())
        .find(|id| id.contains("1764496801.M2P10.guest"))
        .expect("the message is in the catalog")
        .to_owned();
    // The catalog keeps its subject.
    let item = messages
        .iter()
        .find(|i| i["id"] == id.as_str())
        .expect("listed");
    assert!(
        item.to_string().contains("the one that gets lost"),
        "{item}"
    );

    let path = "/data/Maildir/cur/1764496801.M2P10.guest:2,RS";
    vm.sh(&format!("rm '{path}'"));
    assert!(vm
        .sh("ls /data/Maildir/cur")
        .lines()
        .all(|l| !l.contains("M2P10")));

    ok(site().args(["restore", &snap, "--item", &id, "--to", "hv1/vm1"]));
    vm.assert_clean();
    let listed = vm.sh("ls /data/Maildir/cur");
    let name = listed
        .lines()
        .find(|l| l.contains("1764496801.M2P10.guest"))
        .unwrap_or_else(|| panic!("not restored: {listed}"));
    assert!(name.ends_with(":2,RS"), "flags kept: {name}");
    let got = vm.sh(&format!("cat '/data/Maildir/cur/{name}'"));
    assert_eq!(got.as_bytes(), &lost[..], "restored byte for byte");
    // The other messages are as they were.
    assert_eq!(vm.sh("ls /data/Maildir/cur | wc -l").trim(), "2");
    assert_eq!(vm.sh("ls /data/Maildir/new | wc -l").trim(), "1");
}
