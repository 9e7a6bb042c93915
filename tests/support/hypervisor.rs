//! A registered hypervisor without booting a VM: for the server's and the
//! console's listings of hypervisors, VMs and attached containers.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

/// Registers hypervisor `hv1` in the state directory of `repo` with VM
/// `web01` whose QEMU is gone (its sockets are left, as after a crash), and
/// writes a journal entry: a job has a container attached to it. Boots
/// nothing. The container file named.
pub fn register_stale(repo: &Path) -> PathBuf {
    let root = repo.parent().expect("parent");
    let (vms, ds) = (root.join("vms"), root.join("ds"));
    fs::create_dir_all(&vms).expect("mkdir");
    // A socket file nobody listens on: connecting is refused at once.
    drop(std::os::unix::net::UnixListener::bind(vms.join("web01.qmp")).expect("bind"));
    crate::ok(
        crate::attache(repo)
            .arg("--agent-dir")
            .arg(crate::agent_dir())
            .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
            .arg(&vms)
            .arg("--datastore")
            .arg(&ds),
    );
    let container = ds.join("attache-agent-test.iso");
    let journal = repo.with_extension("state").join("journal");
    fs::create_dir_all(&journal).expect("mkdir");
    let entry = json!({
        "session": "0123abcd", "hypervisor": "hv1", "vm": "web01",
        "target": { "name": "web01", "qmp": vms.join("web01.qmp"), "qga": vms.join("web01.qga"), "data": vms.join("web01.data") },
        "container": container, "attachment": { "node": "attache-0123abcd", "device": "attache-cd-0123abcd" },
        "guest_dir": "/run/attache/0123abcd", "runner_pid": null,
    });
    fs::write(journal.join("0123abcd.json"), entry.to_string()).expect("write the entry");
    container
}
