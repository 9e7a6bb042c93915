//! Issue 11, finding 6: the memory limit holds for the total of a plugin
//! instance's memories, not for each one. A component with 8 linear
//! memories, built here byte by byte (no toolchain or network needed), is
//! instantiated with the runner's own [`MemoryLimiter`] under a 64 MiB
//! limit: 8 × 16 MiB is refused with the memory-limit error, 8 × 4 MiB
//! fits, and the process's resident memory stays bounded throughout.
//!
//! This runs at the runtime level (wasmtime with the runner's limiter),
//! not through `guest-runner backup`: a component that also
//! satisfies the plugin world would need wit-component, which this
//! workspace does not otherwise depend on.

use super::limits::{MemoryLimitReached, MemoryLimiter};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

const PAGE: usize = 64 << 10;

fn leb(mut v: u32, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(payload.len() as u32, out);
    out.extend_from_slice(payload);
}

/// A core module with `memories` memories of `pages` pages each, every one
/// of them written at its last byte by a start function (so each is really
/// used, as the finding's component did).
fn core_module(memories: u32, pages: u32) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Type section: one type, () -> ().
    section(1, &[1, 0x60, 0, 0], &mut m);
    // Function section: one function of type 0.
    section(3, &[1, 0], &mut m);
    // Memory section.
    let mut mem = Vec::new();
    leb(memories, &mut mem);
    for _ in 0..memories {
        mem.push(0x00); // min only
        leb(pages, &mut mem);
    }
    section(5, &mem, &mut m);
    // Start section: function 0.
    section(8, &[0], &mut m);
    // Code section: for each memory, i32.store8 at its last byte.
    let mut body = vec![0]; // no locals
    let last = pages as u64 * PAGE as u64 - 1;
    for i in 0..memories {
        body.push(0x41); // i32.const
                         // signed LEB of `last` (fits in i32 for these sizes)
        let mut v = last as i64;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
            body.push(if done { b } else { b | 0x80 });
            if done {
                break;
            }
        }
        body.extend_from_slice(&[0x41, 1]); // i32.const 1
                                            // i32.store8 with a memory index: align flag bit 6 set.
        body.extend_from_slice(&[0x3a, 0x40]);
        leb(i, &mut body);
        body.push(0); // offset
    }
    body.push(0x0b); // end
    let mut code = vec![1];
    leb(body.len() as u32, &mut code);
    code.extend_from_slice(&body);
    section(10, &code, &mut m);
    m
}

/// A component that embeds [`core_module`] and instantiates it.
fn component(memories: u32, pages: u32) -> Vec<u8> {
    let mut c = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &core_module(memories, pages), &mut c);
    // Core instance section: instantiate module 0 with no arguments.
    section(2, &[1, 0x00, 0, 0], &mut c);
    c
}

fn rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<usize>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn instantiate(engine: &Engine, bytes: &[u8], limit: usize) -> (wasmtime::Result<()>, bool) {
    let component = Component::new(engine, bytes).expect("the component compiles");
    let mut store = Store::new(engine, MemoryLimiter::new(limit));
    store.limiter(|l| l);
    let linker: Linker<MemoryLimiter> = Linker::new(engine);
    let r = linker.instantiate(&mut store, &component).map(|_| ());
    (r, store.data().hit)
}

#[test]
fn eight_memories_share_one_limit() {
    let mut config = Config::new();
    config.wasm_component_model(true).wasm_multi_memory(true);
    let engine = Engine::new(&config).expect("engine");
    let limit = 64 << 20;
    let before = rss();

    // 8 × 16 MiB = 128 MiB: each memory is within 64 MiB, the total not.
    let (r, hit) = instantiate(&engine, &component(8, 256), limit);
    let e = r.expect_err("8 × 16 MiB under a 64 MiB limit must be refused");
    assert!(hit, "the limiter refused it: {e:?}");
    assert!(
        e.downcast_ref::<MemoryLimitReached>().is_some()
            || format!("{e:?}").contains("memory limit reached"),
        "the error names the memory limit: {e:?}"
    );

    // 8 × 4 MiB = 32 MiB fits, and each memory is really written.
    let (r, hit) = instantiate(&engine, &component(8, 64), limit);
    r.expect("8 × 4 MiB fits in 64 MiB");
    assert!(!hit);

    // 40 memories of 2 MiB (80 MiB) are refused too.
    let (r, _) = instantiate(&engine, &component(40, 32), limit);
    assert!(r.is_err(), "40 × 2 MiB under 64 MiB must be refused");

    let grown = rss().saturating_sub(before);
    assert!(
        grown < 128 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );
}
