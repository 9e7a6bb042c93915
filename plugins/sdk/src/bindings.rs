//! The raw bindings of the `attache:plugin/plugin-world@0.2.0` world, as
//! `wit-bindgen` generates them from `wit/` (a copy of `wit/0.2.0`).
//!
//! Prefer the SDK's façades ([`crate::sink`], [`crate::source`],
//! [`crate::host`]) to the imports here: only the façades work under the
//! [`crate::mock`] host. The WASI and `posix` imports have no mock; a native
//! test that calls them aborts.

#![allow(
    missing_docs,
    clippy::all,
    clippy::mem_forget,
    reason = "code wit-bindgen generates, documented in the WIT it comes from"
)]

wit_bindgen::generate!({
    path: "wit",
    world: "attache:plugin/plugin-world",
    generate_all,
    pub_export_macro: true,
    default_bindings_module: "attache_plugin_sdk::bindings",
    additional_type_attributes: {
        "attache:plugin/types@0.2.0/timestamp": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/item-metadata": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/item": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/catalog-entry": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/plugin-error": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/option-spec": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/path-need": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/net-need": [#[derive(PartialEq, Eq)]],
        "attache:plugin/types@0.2.0/access-plan": [#[derive(PartialEq, Eq)]],
    },
});
