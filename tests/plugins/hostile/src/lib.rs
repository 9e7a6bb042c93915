//! A plugin that tries to break out of its sandbox, for tests/sandbox.rs
//! and tests/contract.rs.
//!
//! The backup option `attack` picks what it tries. Whatever it manages to
//! read it emits as an item, so a test that finds no such item in the stream
//! (and a clear error instead) knows the sandbox held. Its plan asks to
//! read the path in option `grant`, and nothing else; for the attacks after
//! quiesce (`panic-after-quiesce`, `oom-after-quiesce`,
//! `spin-after-quiesce`) it asks to read and write it instead: quiesce
//! writes a file `quiesced` into that directory and returns its path as
//! the state, and thaw writes `thawed` next to it, so that a test sees
//! that thaw ran after the plugin was stopped.
//!
//! Built with the feature `required-option` it declares a required option
//! `mode`, for the test of a missing required option.

use attache_plugin_sdk::prelude::*;
use attache_plugin_sdk::sink::emit;
use attache_plugin_sdk::wasi::filesystem::preopens::get_directories;
use attache_plugin_sdk::wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

struct Hostile;

fn option<'a>(opts: &'a OptionList, key: &str) -> Option<&'a str> {
    Options::new(opts).get(key)
}

fn leak(id: &str, bytes: Vec<u8>) -> Result<(), PluginError> {
    let item = Item::new(
        format!("leak://{id}"),
        ItemKind::Blob,
        Meta::new(bytes.len() as u64),
    );
    emit(&item, &ItemData::Inline(bytes))
}

/// Tries each way of reading `paths` outside the grant; leaks what works.
fn read_outside(paths: &[&str]) -> Result<Summary, PluginError> {
    let mut denied = Vec::new();
    let mut leaked = 0;
    for p in paths {
        match std::fs::read(p) {
            Ok(b) => {
                leak(p, b)?;
                leaked += 1;
            }
            Err(e) => denied.push(format!("std::fs::read({p}): {e}")),
        }
        for (dir, name) in get_directories() {
            let rel = format!("../../../../../../..{p}");
            match dir.open_at(
                PathFlags::SYMLINK_FOLLOW,
                &rel,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            ) {
                Ok(fd) => {
                    let (b, _) = fd.read(1 << 20, 0).unwrap_or_default();
                    leak(&format!("{name}/{rel}"), b)?;
                    leaked += 1;
                }
                Err(e) => denied.push(format!("open_at({name}, {rel}): {}", e.message())),
            }
        }
    }
    finish(leaked, denied)
}

/// Follows every symlink in the granted directories.
fn symlink_out() -> Result<Summary, PluginError> {
    let mut denied = Vec::new();
    let mut leaked = 0;
    for (dir, name) in get_directories() {
        let entries = dir
            .read_directory()
            .map_err(|e| PluginError::Other(e.message().into()))?;
        while let Ok(Some(e)) = entries.read_directory_entry() {
            match dir.open_at(
                PathFlags::SYMLINK_FOLLOW,
                &e.name,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            ) {
                Ok(fd) => match fd.read(1 << 20, 0) {
                    Ok((b, _)) => {
                        leak(&format!("{name}/{}", e.name), b)?;
                        leaked += 1;
                    }
                    Err(err) => denied.push(format!("read {}: {}", e.name, err.message())),
                },
                Err(err) => denied.push(format!(
                    "open {} (following links): {}",
                    e.name,
                    err.message()
                )),
            }
        }
    }
    finish(leaked, denied)
}

fn socket(addr: &str) -> Result<Summary, PluginError> {
    match std::net::TcpStream::connect(addr) {
        Ok(mut s) => {
            use std::io::Write;
            let _ = s.write_all(b"leaked");
            leak(&format!("tcp/{addr}"), b"connected".to_vec())?;
            Ok(Summary {
                items: 1,
                bytes: 0,
                warnings: 0,
            })
        }
        Err(e) => Err(PluginError::AccessDenied(format!("connect {addr}: {e}"))),
    }
}

fn memory() -> Result<Summary, PluginError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    for i in 0..256u32 {
        let mut chunk = vec![0u8; 16 << 20];
        chunk[i as usize] = 1;
        hoard.push(chunk);
    }
    Ok(Summary {
        items: hoard.len() as u64,
        bytes: 0,
        warnings: 0,
    })
}

/// Reads the file granted alone (the preopen named `grant`), then tries to
/// open each of `siblings` (names in the same directory) through every
/// preopen and through the absolute path; leaks what works.
fn read_siblings(grant: &str, siblings: &str) -> Result<Summary, PluginError> {
    let all = preopens::all();
    let granted = preopens::find(&all, grant)
        .ok_or_else(|| PluginError::denied(format!("{grant} was not granted")))?;
    let (content, _) = granted
        .dir
        .read(1 << 20, 0)
        .map_err(|e| PluginError::denied(format!("reading {grant}: {}", e.message())))?;
    let parent = preopens::parent(grant)?;
    let mut denied = Vec::new();
    let mut leaked = 0;
    for name in siblings.split(',').filter(|n| !n.is_empty()) {
        let abs = format!("{}/{name}", parent.trim_end_matches('/'));
        for p in [abs.clone(), format!("{grant}/../{name}")] {
            match std::fs::read(&p) {
                Ok(b) => {
                    leak(&p, b)?;
                    leaked += 1;
                }
                Err(e) => denied.push(format!("std::fs::read({p}): {e}")),
            }
        }
        for (dir, pname) in get_directories() {
            for rel in [
                name.to_owned(),
                format!("../{name}"),
                format!("./../{name}"),
                abs.clone(),
            ] {
                match dir.open_at(
                    PathFlags::SYMLINK_FOLLOW,
                    &rel,
                    OpenFlags::empty(),
                    DescriptorFlags::READ,
                ) {
                    Ok(fd) => {
                        let (b, _) = fd.read(1 << 20, 0).unwrap_or_default();
                        leak(&format!("{pname}/{rel}"), b)?;
                        leaked += 1;
                    }
                    Err(e) => denied.push(format!("open_at({pname}, {rel}): {}", e.message())),
                }
            }
            if let Ok(entries) = dir.read_directory() {
                while let Ok(Some(e)) = entries.read_directory_entry() {
                    leak(&format!("{pname}/ls/{}", e.name), Vec::new())?;
                    leaked += 1;
                }
            } else {
                denied.push(format!("read_directory({pname})"));
            }
        }
    }
    if leaked > 0 {
        return Ok(Summary {
            items: leaked,
            bytes: 0,
            warnings: 0,
        });
    }
    Err(PluginError::AccessDenied(format!(
        "read the granted file {grant} ({} bytes); denied: {}",
        content.len(),
        denied.join("; ")
    )))
}

/// The attacks that run after a successful quiesce.
const AFTER_QUIESCE: [&str; 3] = [
    "panic-after-quiesce",
    "oom-after-quiesce",
    "spin-after-quiesce",
];

/// Writes `text` into the file `name` of the granted directory `dir`.
fn mark(dir: &str, name: &str, text: &str) -> Result<(), PluginError> {
    let all = preopens::all();
    let p = preopens::find(&all, dir)
        .ok_or_else(|| PluginError::denied(format!("{dir} was not granted")))?;
    let fd = p
        .dir
        .open_at(
            PathFlags::empty(),
            name,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| PluginError::denied(format!("{dir}/{name}: {}", e.message())))?;
    fd.write(text.as_bytes(), 0)
        .map_err(|e| PluginError::denied(format!("{dir}/{name}: {}", e.message())))?;
    Ok(())
}

#[inline(never)]
fn panic_after_quiesce() -> Result<Summary, PluginError> {
    panic!("hostile: panicking after quiesce, on purpose");
}

fn spin() -> Result<Summary, PluginError> {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn finish(leaked: u64, denied: Vec<String>) -> Result<Summary, PluginError> {
    if leaked > 0 {
        return Ok(Summary {
            items: leaked,
            bytes: 0,
            warnings: 0,
        });
    }
    Err(PluginError::AccessDenied(denied.join("; ")))
}

/// Tries to write outside the restore target.
fn write_outside(target_name: &str) -> Result<Summary, PluginError> {
    let mut denied = Vec::new();
    let mut written = 0;
    for (dir, _) in get_directories() {
        for rel in ["../escaped-by-dotdot", "/tmp/escaped-absolute"] {
            match dir.open_at(
                PathFlags::empty(),
                rel,
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            ) {
                Ok(fd) => {
                    let _ = fd.write(b"escaped", 0);
                    written += 1;
                }
                Err(e) => denied.push(format!("create {rel}: {}", e.message())),
            }
        }
        // A link planted inside the target that points out of it.
        let _ = dir.symlink_at("../", "ladder");
        match dir.open_at(
            PathFlags::SYMLINK_FOLLOW,
            &format!("ladder/{target_name}"),
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        ) {
            Ok(fd) => {
                let _ = fd.write(b"escaped", 0);
                written += 1;
            }
            Err(e) => denied.push(format!("create through ladder: {}", e.message())),
        }
    }
    match std::fs::write("/tmp/escaped-std", b"escaped") {
        Ok(()) => written += 1,
        Err(e) => denied.push(format!("std::fs::write: {e}")),
    }
    if written > 0 {
        return Ok(Summary {
            items: written,
            bytes: 0,
            warnings: 0,
        });
    }
    Err(PluginError::AccessDenied(denied.join("; ")))
}

impl Plugin for Hostile {
    fn info() -> PluginInfo {
        let info = PluginInfo::new(
            "hostile",
            "0.0.0",
            ApplicationKind::Other,
            "attacks its sandbox (tests only)",
        )
        .option(OptionSpec::new(
            "attack",
            "read-outside, symlink-out, socket, memory, loop, read-siblings, \
             panic-after-quiesce, oom-after-quiesce or spin-after-quiesce",
        ))
        .option(OptionSpec::new(
            "grant",
            "the one path the plan asks to read",
        ))
        .option(OptionSpec::new(
            "addr",
            "IP:PORT the socket attack connects to",
        ))
        .option(OptionSpec::new(
            "target-name",
            "a name the restore attack writes",
        ))
        .option(OptionSpec::new(
            "siblings",
            "names beside the granted file the read-siblings attack tries (comma-separated)",
        ))
        .quiesces();
        if cfg!(feature = "required-option") {
            info.option(OptionSpec::new("mode", "a required option (tests only)").required())
        } else {
            info
        }
    }

    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
        let opts = Options::new(&request.options);
        let plan = AccessPlan::new();
        let after_quiesce = opts
            .get("attack")
            .is_some_and(|a| AFTER_QUIESCE.contains(&a));
        Ok(match opts.get("grant") {
            Some(path) if after_quiesce => plan.read_write(path, "quiesce and thaw markers"),
            Some(path) => plan.read(path, "the grant option"),
            None => plan,
        })
    }

    /// Writes `quiesced` into the granted directory for the attacks after
    /// quiesce, returning its path; nothing otherwise.
    fn quiesce(_: Vec<String>, options: OptionList) -> Result<String, PluginError> {
        let opts = Options::new(&options);
        if !opts
            .get("attack")
            .is_some_and(|a| AFTER_QUIESCE.contains(&a))
        {
            return Ok(String::new());
        }
        let dir = opts.require("grant")?;
        mark(dir, "quiesced", "quiesced")?;
        Ok(dir.to_owned())
    }

    /// Writes `thawed` into the directory in `state`, if any.
    fn thaw(state: String, _: OptionList) -> Result<(), PluginError> {
        if state.is_empty() {
            return Ok(());
        }
        mark(&state, "thawed", "thawed")
    }

    fn backup(req: BackupRequest) -> Result<Summary, PluginError> {
        match option(&req.options, "attack") {
            Some("read-outside") => read_outside(&["/etc/hostname", "/etc/passwd"]),
            Some("symlink-out") => symlink_out(),
            Some("socket") => socket(option(&req.options, "addr").unwrap_or("127.0.0.1:9")),
            Some("memory") => memory(),
            Some("loop") => spin(),
            Some("read-siblings") => read_siblings(
                option(&req.options, "grant").unwrap_or("/"),
                option(&req.options, "siblings").unwrap_or(""),
            ),
            Some("panic-after-quiesce") => panic_after_quiesce(),
            Some("oom-after-quiesce") => memory(),
            Some("spin-after-quiesce") => spin(),
            other => Err(PluginError::InvalidRequest(format!(
                "unknown attack {other:?}"
            ))),
        }
    }

    fn restore(req: RestoreRequest) -> Result<Summary, PluginError> {
        write_outside(option(&req.options, "target-name").unwrap_or("x"))
    }
}

export_plugin!(Hostile);
