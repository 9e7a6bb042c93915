//! Host bindings generated from `wit/`, one module per contract version the
//! runner serves. WASI types are those of wasmtime-wasi, so that a plugin's
//! WASI descriptors can be handed to the runner's own imports; the
//! resources of the sink and source are the same Rust types in every
//! version.
//!
//! Every host import is traced (`tracing`): a span per call, at trace
//! level, with its arguments but not its byte lists, inside the runner's
//! span of the job (`ATTACHE_LOG`/`--log trace` shows them).
//!
//! The newest version is re-exported at the top: the runner's host code is
//! written against it, and `since_v0_1` adapts the frozen 0.1.0 imports
//! onto it.

/// `attache:plugin@0.2.0`, the newest contract.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "attache:plugin/plugin-world",
        imports: { default: trappable | tracing },
        with: {
            "wasi:filesystem/types": wasmtime_wasi::p2::bindings::sync::filesystem::types,
            "wasi:filesystem/preopens": wasmtime_wasi::p2::bindings::filesystem::preopens,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "attache:plugin/backup-sink.item-writer": crate::runtime::sink::ItemWriterHandle,
            "attache:plugin/restore-source.item-content": crate::runtime::source::ContentHandle,
        },
    });
}

/// `attache:plugin@0.1.0`, frozen: plugins built against it still run.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "attache:plugin/plugin-world",
        imports: { default: trappable | tracing },
        with: {
            "wasi:filesystem/types": wasmtime_wasi::p2::bindings::sync::filesystem::types,
            "wasi:filesystem/preopens": wasmtime_wasi::p2::bindings::filesystem::preopens,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "attache:plugin/backup-sink.item-writer": crate::runtime::sink::ItemWriterHandle,
            "attache:plugin/restore-source.item-content": crate::runtime::source::ContentHandle,
        },
    });
}

pub(crate) use v0_2::*;
