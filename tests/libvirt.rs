//! The libvirt driver against a real libvirtd (Debian's, started by the
//! tests with a configuration and state of its own: tests/vm/libvirtd)
//! running the project's test guest as a transient domain under TCG. It
//! passes the granular backup, restore and failure tests the QEMU driver
//! passes (tests/support/scenarios.rs), and leaves no device in the
//! domain's XML after a job.

use std::path::Path;
use std::process::Stdio;

use attache_tests::libvirt::{LibvirtVm, Libvirtd};
use attache_tests::ok;
use attache_tests::scenarios::{self, data_tree, random_bytes, write, Site};
use attache_tests::server::{free_port, wait_healthy};
use attache_tests::vm::{serial, GuestVm};
use serde_json::Value;

/// A site with its own libvirtd.
fn libvirtd(site: &Site) -> Libvirtd {
    Libvirtd::start(&site.path("lv"))
}

/// Registers libvirt hypervisor `lv` for `d`'s domains, with datastore
/// `ds/`; what `hypervisor add` printed.
fn register(site: &Site, d: &Libvirtd) -> String {
    site.add_hypervisor(
        "lv",
        &["--driver", "libvirt", "--uri", &d.uri],
        &[&site.path("ds")],
    )
}

fn boot<'d>(site: &Site, d: &'d Libvirtd, name: &str, src: &Path) -> LibvirtVm<'d> {
    LibvirtVm::boot(d, &site.path("vms"), name, src)
}

#[test]
fn libvirt_backup_granular_restore_and_a_killed_runner() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    data_tree(&src);
    let d = libvirtd(&site);
    let vm = boot(&site, &d, "lv1", &src);
    let added = register(&site, &d);
    assert!(added.contains("(1 VMs now)"), "{added}");
    assert!(added.contains("container on"), "{added}");
    let hvs: Value =
        serde_json::from_str(&ok(site.attache().args(["hypervisor", "list", "--json"])))
            .expect("JSON");
    assert_eq!(hvs[0]["driver"], "libvirt", "{hvs}");
    assert_eq!(hvs[0]["uri"], d.uri.as_str(), "{hvs}");
    scenarios::listed_running(&site, "lv/lv1");
    // The server's view (the console's overview) through the same driver.
    let (token, port) = ("a-test-token-of-enough-length", free_port());
    let url = format!("http://127.0.0.1:{port}");
    let mut server = site
        .attache()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ATTACHE_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn attache serve");
    wait_healthy(&url);
    let hvs = scenarios::http(&url, token, "GET", "/hypervisors", None);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(hvs[0]["driver"], "libvirt", "{hvs}");
    assert_eq!(hvs[0]["vm_dir"], d.uri.as_str(), "{hvs}");
    assert_eq!(hvs[0]["vms"][0]["name"], "lv1", "{hvs}");
    assert_eq!(hvs[0]["vms"][0]["state"], "running", "{hvs}");
    assert_eq!(hvs[0]["vms"][0]["guest_agent"], "answers", "{hvs}");

    scenarios::granular_backup_and_restore(&site, &vm, "lv/lv1");
    assert_eq!(vm.attache_disks(), Vec::<String>::new());

    // Mid-job (the runner held stopped in the guest): the container is a
    // read-only SCSI CD-ROM of the domain, from the datastore, under
    // Attaché's alias; after the job it is gone from the domain's XML.
    vm.sh(
        "( while ! pidof guest-runner >/dev/null; do sleep 0.02; done; \
           kill -STOP $(pidof guest-runner); touch /run/attache-test-stopped ) >/dev/null 2>&1 &",
    );
    let job = site
        .attache()
        .args([
            "backup",
            "lv/lv1",
            "--plugin",
            "filesystem",
            "--include",
            "/data",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn attache");
    site.wait_running();
    let disks = vm.attache_disks();
    assert_eq!(disks.len(), 1, "{disks:?}");
    let disk = &disks[0];
    assert!(disk.contains("device='cdrom'"), "{disk}");
    assert!(disk.contains("bus='scsi'"), "{disk}");
    assert!(disk.contains("<readonly/>"), "{disk}");
    assert!(disk.contains("<alias name='ua-attache-cd-"), "{disk}");
    assert!(
        disk.contains(&format!("{}/attache-agent-", site.path("ds").display())),
        "{disk}"
    );
    // Resumed only once it was stopped: the job is seen running (its pid
    // journaled) before the guest's shell has exec'd the runner, and a
    // CONT sent before the STOP would leave the runner stopped for good.
    vm.sh(
        "while [ ! -e /run/attache-test-stopped ]; do sleep 0.02; done; \
         rm /run/attache-test-stopped; kill -CONT $(pidof guest-runner)",
    );
    let o = job.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(vm.attache_disks(), Vec::<String>::new());
    vm.assert_clean();

    scenarios::runner_killed(&site, &vm, "lv/lv1");
    assert_eq!(vm.attache_disks(), Vec::<String>::new());
}

#[test]
fn libvirt_a_silent_guest_agent() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("big.bin"), &random_bytes(64 << 20, 3));
    write(&src.join("small.txt"), b"small\n");
    let d = libvirtd(&site);
    let vm = boot(&site, &d, "lv1", &src);
    register(&site, &d);
    let snap = site.backup("lv/lv1", "/data");
    assert_eq!(snap["items"], 4); // /data, lost+found and two files
    vm.assert_clean();

    scenarios::silent_guest_agent(&site, &vm, "lv/lv1");
    assert_eq!(vm.attache_disks(), Vec::<String>::new());
}

#[test]
fn libvirt_a_cancelled_a_timed_out_and_a_killed_job_leave_nothing_attached() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("big.bin"), &random_bytes(200 << 20, 5));
    let d = libvirtd(&site);
    let vm = boot(&site, &d, "lv1", &src);
    register(&site, &d);

    scenarios::cancelled_timed_out_and_killed(&site, &vm, "lv/lv1");
    assert_eq!(vm.attache_disks(), Vec::<String>::new());
}

/// A domain without the `attache.data` channel in its XML: a clear error
/// naming it, and the VM clean (the container attached for the visit is
/// detached again).
#[test]
fn libvirt_a_domain_without_the_data_channel_fails_cleanly() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("f.txt"), b"x\n");
    let d = libvirtd(&site);
    let vm = LibvirtVm::boot_with(&d, &site.path("vms"), "lv1", &src, false);
    register(&site, &d);
    let err = attache_tests::fails(site.attache().args([
        "backup",
        "lv/lv1",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(err.contains("data port of lv/lv1"), "{err}");
    assert!(
        err.contains("no virtio-serial channel named attache.data"),
        "{err}"
    );
    vm.assert_clean();
    site.assert_journal_empty();
    assert_eq!(vm.attache_disks(), Vec::<String>::new());
}

/// Registration needs the driver's own flag, and a libvirt that cannot be
/// reached registers nothing.
#[test]
fn libvirt_registration_is_refused_without_a_uri_or_a_reachable_libvirtd() {
    let site = Site::new();
    let ds = site.path("ds");
    // Usage errors (exit 2), from the flags alone.
    let err = attache_tests::fails_with(
        site.attache()
            .args(["hypervisor", "add", "lv", "--driver", "libvirt"])
            .arg("--datastore")
            .arg(&ds),
        2,
    );
    assert!(err.contains("--uri"), "{err}");
    let err = attache_tests::fails_with(
        site.attache()
            .args(["hypervisor", "add", "hv", "--driver", "qemu", "--datastore"])
            .arg(&ds),
        2,
    );
    assert!(err.contains("--vm-dir"), "{err}");
    let nowhere = format!(
        "qemu:///system?socket={}",
        site.path("no-libvirtd/libvirt-sock").display()
    );
    let err = attache_tests::fails(
        site.attache()
            .args([
                "hypervisor",
                "add",
                "lv",
                "--driver",
                "libvirt",
                "--uri",
                &nowhere,
            ])
            .arg("--datastore")
            .arg(&ds),
    );
    assert!(err.contains("cannot list the domains of lv"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let list = ok(site.attache().args(["hypervisor", "list", "--json"]));
    assert_eq!(list.trim(), "[]", "nothing registered: {list}");
}
