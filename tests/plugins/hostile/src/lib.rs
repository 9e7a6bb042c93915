//! A plugin that tries to break out of its sandbox, for tests/sandbox.rs.
//!
//! The backup option `attack` picks what it tries. Whatever it manages to
//! read it emits as an item, so a test that finds no such item in the stream
//! (and a clear error instead) knows the sandbox held. Its plan asks to
//! read the path in option `grant`, and nothing else.

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
        PluginInfo::new(
            "hostile",
            "0.0.0",
            ApplicationKind::Other,
            "attacks its sandbox (tests only)",
        )
        .option(OptionSpec::new(
            "attack",
            "read-outside, symlink-out, socket, memory or loop",
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
    }

    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
        let plan = AccessPlan::new();
        Ok(match Options::new(&request.options).get("grant") {
            Some(path) => plan.read(path, "the grant option"),
            None => plan,
        })
    }

    fn quiesce(_: Vec<String>, _: OptionList) -> Result<String, PluginError> {
        Err(PluginError::invalid("no"))
    }

    fn thaw(_: String, _: OptionList) -> Result<(), PluginError> {
        Err(PluginError::invalid("no"))
    }

    fn backup(req: BackupRequest) -> Result<Summary, PluginError> {
        match option(&req.options, "attack") {
            Some("read-outside") => read_outside(&["/etc/hostname", "/etc/passwd"]),
            Some("symlink-out") => symlink_out(),
            Some("socket") => socket(option(&req.options, "addr").unwrap_or("127.0.0.1:9")),
            Some("memory") => memory(),
            Some("loop") => spin(),
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
