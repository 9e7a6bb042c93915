//! Test VMs: the tiny guest of `tests/vm/` booted under QEMU, driven through
//! its guest agent and QMP with the project's own clients (`qga.py`,
//! `qmp.py`), and the checks every VM test shares.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use crate::{ok, output, root};

/// VM tests boot QEMU under TCG on a 2-core machine: one test at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A booted test VM; stopped when dropped.
pub struct TestVm {
    /// The VM's name: its sockets are `NAME.qmp`, `NAME.qga`, `NAME.data`.
    pub name: String,
    /// The directory holding its sockets (a hypervisor's `--vm-dir`).
    pub dir: PathBuf,
}

fn script(name: &str) -> PathBuf {
    root().join("tests/vm").join(name)
}

impl TestVm {
    /// Boots VM `name` with sockets in `dir` and `/data` made from `data`.
    pub fn boot(dir: &Path, name: &str, data: &Path) -> Self {
        let images = root().join("target/vm");
        assert!(
            images.join("vmlinuz").exists(),
            "{} has no test guest: run tests/vm/build-guest (make test does)",
            images.display()
        );
        ok(Command::new(script("boot"))
            .args([name, &dir.display().to_string(), "--data"])
            .arg(data));
        Self {
            name: name.into(),
            dir: dir.to_owned(),
        }
    }

    /// The VM's socket of this kind (`qmp`, `qga`, `data`).
    pub fn socket(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    /// Runs a shell script in the guest; its stdout, or a panic with what it
    /// printed when it fails.
    pub fn sh(&self, script_text: &str) -> String {
        ok(&mut self.sh_cmd(script_text))
    }

    /// The command that runs `script_text` in the guest.
    pub fn sh_cmd(&self, script_text: &str) -> Command {
        let mut c = Command::new(script("qga.py"));
        c.arg(self.socket("qga"))
            .args(["exec", "/bin/sh", "-c", script_text]);
        c
    }

    /// Whether the guest agent answers within `secs`.
    pub fn agent_answers(&self, secs: u32) -> bool {
        output(
            Command::new(script("qga.py"))
                .args(["--timeout", &secs.to_string()])
                .arg(self.socket("qga"))
                .arg("ping"),
        )
        .status
        .success()
    }

    /// A QMP command's return value.
    pub fn qmp(&self, command: &str) -> serde_json::Value {
        let out = ok(Command::new(script("qmp.py"))
            .arg(self.socket("qmp"))
            .arg(command));
        serde_json::from_str(&out).expect("qmp.py prints JSON")
    }

    /// What QEMU has attached that comes from Attaché: block devices with a
    /// container inserted, and block nodes Attaché named.
    pub fn attached(&self) -> Vec<String> {
        let mut found = Vec::new();
        for b in self
            .qmp("query-block")
            .as_array()
            .expect("query-block list")
        {
            let file = b["inserted"]["file"].as_str().unwrap_or_default();
            if file.contains("attache-agent") {
                found.push(format!("device {} holds {file}", b["device"]));
            }
        }
        for n in self
            .qmp("query-named-block-nodes")
            .as_array()
            .expect("node list")
        {
            let node = n["node-name"].as_str().unwrap_or_default();
            if node.starts_with("attache-")
                || n["file"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("attache-agent")
            {
                found.push(format!("node {node}"));
            }
        }
        found
    }
}

/// What the VM tests shared by the drivers (tests/support/scenarios.rs)
/// need of a test VM, whichever hypervisor runs it.
pub trait GuestVm {
    /// The VM's name on its hypervisor.
    fn name(&self) -> &str;

    /// Runs a shell script in the guest; its stdout, or a panic with what
    /// it printed when it fails.
    fn sh(&self, script_text: &str) -> String;

    /// Whether the guest agent answers within `secs`.
    fn agent_answers(&self, secs: u32) -> bool;

    /// A guest agent command without arguments; its `return` value.
    fn agent_call(&self, command: &str) -> serde_json::Value;

    /// What the hypervisor has attached that comes from Attaché, one line
    /// each; a container attached as a device reads `device …`.
    fn attached(&self) -> Vec<String>;

    /// Between jobs a VM has no container attached, no mount, no runner and
    /// no file of Attaché's left in the guest.
    fn assert_clean(&self) {
        assert_eq!(
            self.attached(),
            Vec::<String>::new(),
            "{}: a container is still attached",
            self.name()
        );
        let guest = self.sh("grep -c -e /run/attache -e iso9660 /proc/mounts; \
             [ -e /run/attache ] && echo leftover /run/attache; \
             pidof guest-runner && echo runner still running; true");
        assert_eq!(
            guest.trim(),
            "0",
            "{}: the guest is not clean: {guest}",
            self.name()
        );
    }
}

impl GuestVm for TestVm {
    fn name(&self) -> &str {
        &self.name
    }

    fn sh(&self, script_text: &str) -> String {
        TestVm::sh(self, script_text)
    }

    fn agent_answers(&self, secs: u32) -> bool {
        TestVm::agent_answers(self, secs)
    }

    fn agent_call(&self, command: &str) -> serde_json::Value {
        let out = ok(Command::new(script("qga.py"))
            .arg(self.socket("qga"))
            .args(["call", command]));
        serde_json::from_str(&out).expect("qga.py call prints JSON")
    }

    fn attached(&self) -> Vec<String> {
        TestVm::attached(self)
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        let _ = output(Command::new(script("stop")).arg(&self.name).arg(&self.dir));
    }
}
