//! A throwaway libvirtd (`tests/vm/libvirtd`: its own configuration and
//! state, in a mount namespace of its own) and the project's test guest run
//! by it as a transient domain, under TCG like the QEMU tests' VMs. The
//! tests drive it with `virsh` (libvirt-clients); Attaché's libvirt driver
//! under test talks to the same libvirtd through libvirt's API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::vm::GuestVm;
use crate::{ok, output, root};

/// A running libvirtd; stopped (with every domain it runs destroyed) when
/// dropped.
pub struct Libvirtd {
    dir: PathBuf,
    child: Child,
    /// The URI to connect with (`qemu:///system?socket=…`).
    pub uri: String,
}

impl Libvirtd {
    /// Starts libvirtd with everything of its own under `dir` (short: it
    /// holds unix sockets); returns once it answers.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let log = std::fs::File::create(dir.join("libvirtd.out")).expect("log file");
        let child = Command::new(root().join("tests/vm/libvirtd"))
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tests/vm/libvirtd");
        let uri = format!(
            "qemu:///system?socket={}",
            dir.join("sock/libvirt-sock").display()
        );
        let mut d = Self {
            dir: dir.to_owned(),
            child,
            uri,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "libvirtd exited ({status}): {}",
                    std::fs::read_to_string(dir.join("libvirtd.out")).unwrap_or_default()
                );
            }
            if output(d.virsh().arg("version")).status.success() {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "libvirtd did not answer within 60 s: {}",
                std::fs::read_to_string(dir.join("log/libvirtd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `virsh` connected to this libvirtd.
    pub fn virsh(&self) -> Command {
        let mut c = Command::new("virsh");
        c.args(["-q", "-c", &self.uri]);
        c
    }

    /// Where libvirtd keeps its domains' QEMU logs.
    pub fn qemu_log(&self, domain: &str) -> PathBuf {
        self.dir.join(format!("log/qemu/{domain}.log"))
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Ok(o) = self.virsh().args(["list", "--name"]).output() {
            for name in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = output(self.virsh().args(["destroy", name]));
            }
        }
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test guest as a transient libvirt domain: `tests/vm/boot`'s
/// machine (kernel command line, virtio-scsi controller `scsi0`, the guest
/// agent's channel, `/data` on virtio-blk) with the data channel
/// `attache.data` declared in the domain XML. Destroyed when dropped.
pub struct LibvirtVm<'d> {
    /// The domain's name.
    pub name: String,
    /// The host end of the data channel (a socket QEMU listens on).
    pub data_socket: PathBuf,
    libvirtd: &'d Libvirtd,
}

impl<'d> LibvirtVm<'d> {
    /// Boots domain `name` on `libvirtd`, its files in `dir` and `/data`
    /// made from `data`; returns once its guest agent answers.
    pub fn boot(libvirtd: &'d Libvirtd, dir: &Path, name: &str, data: &Path) -> Self {
        Self::boot_with(libvirtd, dir, name, data, true)
    }

    /// `boot`, with or without the `attache.data` channel in the domain.
    pub fn boot_with(
        libvirtd: &'d Libvirtd,
        dir: &Path,
        name: &str,
        data: &Path,
        data_channel: bool,
    ) -> Self {
        let images = root().join("target/vm");
        assert!(
            images.join("vmlinuz").exists(),
            "{} has no test guest: run tests/vm/build-guest (make test does)",
            images.display()
        );
        std::fs::create_dir_all(dir).expect("mkdir");
        let base = dir.join(name);
        let img = base.with_extension("data.img");
        ok(Command::new(root().join("tests/vm/data-image"))
            .arg(data)
            .arg(&img));
        let data_socket = base.with_extension("data");
        let xml = format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='scsi' index='0' model='virtio-scsi'><alias name='scsi0'/></controller>
    <controller type='virtio-serial' index='0'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <channel type='unix'>
      <source mode='bind' path='{qga}'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    {data_channel}
    <memballoon model='none'/>
  </devices>
</domain>",
            kernel = images.join("vmlinuz").display(),
            initrd = images.join("initramfs.cpio.gz").display(),
            img = img.display(),
            console = base.with_extension("console.log").display(),
            qga = base.with_extension("qga").display(),
            data_channel = if data_channel {
                format!(
                    "<channel type='unix'><source mode='bind' path='{}'/>\
                     <target type='virtio' name='attache.data'/></channel>",
                    data_socket.display()
                )
            } else {
                String::new()
            },
        );
        let xml_file = base.with_extension("xml");
        std::fs::write(&xml_file, xml).expect("write the domain XML");
        ok(libvirtd.virsh().arg("create").arg(&xml_file));
        let vm = Self {
            name: name.to_owned(),
            data_socket,
            libvirtd,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !vm.agent_answers(2) {
            assert!(
                Instant::now() < deadline,
                "the guest agent of {name} did not answer within 90 s; console: {}; QEMU: {}",
                std::fs::read_to_string(base.with_extension("console.log")).unwrap_or_default(),
                std::fs::read_to_string(libvirtd.qemu_log(name)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        vm
    }

    /// The domain's live XML.
    pub fn xml(&self) -> String {
        ok(self.libvirtd.virsh().args(["dumpxml", &self.name]))
    }

    /// The `<disk>` elements of the live domain XML that mention Attaché
    /// (their text after `<disk `).
    pub fn attache_disks(&self) -> Vec<String> {
        self.xml()
            .split("<disk ")
            .skip(1)
            .filter_map(|d| d.split("</disk>").next())
            .filter(|d| d.contains("attache"))
            .map(|d| d.trim().to_owned())
            .collect()
    }

    /// A guest agent command through libvirt; its `return` value.
    pub fn agent(&self, command: &str, arguments: Value) -> Value {
        let out = ok(self.libvirtd.virsh().args([
            "qemu-agent-command",
            &self.name,
            "--timeout",
            "10",
            &json!({ "execute": command, "arguments": arguments }).to_string(),
        ]));
        let v: Value = serde_json::from_str(&out).expect("the agent answers JSON");
        v["return"].clone()
    }
}

impl GuestVm for LibvirtVm<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn sh(&self, script: &str) -> String {
        let pid = self.agent(
            "guest-exec",
            json!({ "path": "/bin/sh", "arg": ["-c", script], "capture-output": true }),
        )["pid"]
            .as_i64()
            .expect("guest-exec gives a pid");
        let deadline = Instant::now() + Duration::from_secs(60);
        let st = loop {
            let st = self.agent("guest-exec-status", json!({ "pid": pid }));
            if st["exited"] == true {
                break st;
            }
            assert!(Instant::now() < deadline, "`{script}` did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = |k: &str| {
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(st[k].as_str().unwrap_or_default())
                    .expect("base64"),
            )
            .into_owned()
        };
        assert!(
            st["exitcode"] == 0 && st.get("signal").is_none(),
            "`{script}` failed in {}: {st}: {}",
            self.name,
            text("err-data")
        );
        text("out-data")
    }

    fn agent_answers(&self, secs: u32) -> bool {
        output(self.libvirtd.virsh().args([
            "qemu-agent-command",
            &self.name,
            "--timeout",
            &secs.to_string(),
            r#"{"execute":"guest-ping"}"#,
        ]))
        .status
        .success()
    }

    fn agent_call(&self, command: &str) -> Value {
        self.agent(command, json!({}))
    }

    /// Disks of the live domain XML that hold a container or carry an alias
    /// of Attaché's.
    fn attached(&self) -> Vec<String> {
        self.attache_disks()
            .into_iter()
            .map(|d| format!("device <disk {d}</disk>"))
            .collect()
    }
}

impl Drop for LibvirtVm<'_> {
    fn drop(&mut self) {
        let _ = output(self.libvirtd.virsh().args(["destroy", &self.name]));
    }
}
