//! Host bindings generated from `wit/`. WASI types are those of
//! wasmtime-wasi, so that a plugin's WASI descriptors can be handed to the
//! runner's own imports.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "attache:plugin/plugin-world",
    imports: { default: trappable },
    with: {
        "wasi:filesystem/types": wasmtime_wasi::p2::bindings::sync::filesystem::types,
        "wasi:filesystem/preopens": wasmtime_wasi::p2::bindings::filesystem::preopens,
        "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "attache:plugin/backup-sink.item-writer": crate::runtime::sink::ItemWriterHandle,
        "attache:plugin/restore-source.item-content": crate::runtime::source::ContentHandle,
    },
});
