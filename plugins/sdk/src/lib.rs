//! The SDK for Attaché plugins of contract 0.2.0 (`wit/0.2.0/attache.wit`).
//!
//! A plugin implements [`Plugin`] and exports it with [`export_plugin!`]:
//!
//! ```ignore
//! use attache_plugin_sdk::prelude::*;
//!
//! struct MyApp;
//!
//! impl Plugin for MyApp {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("myapp", env!("CARGO_PKG_VERSION"), ApplicationKind::Other, "what it protects")
//!     }
//!     fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
//!         Ok(AccessPlan::new().read("/srv/myapp", "the data to back up"))
//!     }
//!     fn backup(_request: BackupRequest) -> Result<Summary, PluginError> {
//!         let item = Item::new("myapp://hello", ItemKind::Blob, Meta::new(5));
//!         sink::emit(&item, &ItemData::Inline(b"hello".to_vec()))?;
//!         Ok(Summary::default().item(5))
//!     }
//!     fn restore(_request: RestoreRequest) -> Result<Summary, PluginError> {
//!         Ok(Summary::default())
//!     }
//! }
//!
//! export_plugin!(MyApp);
//! ```
//!
//! What the SDK adds to the raw bindings ([`bindings`]):
//!
//! - builders: [`Meta`] (item metadata), [`Item::new`], [`CatalogEntry::new`],
//!   [`AccessPlan`], [`PluginInfo::new`], [`OptionSpec::new`];
//! - [`Options`], a view over a job's options that checks them against the
//!   declared [`OptionSpec`]s;
//! - typed error constructors on [`PluginError`];
//! - [`preopens`]: the directories and files a job granted, and which one
//!   holds a path; [`time`]: timestamps;
//! - façades over the runner's imports, [`sink`], [`source`] and [`host`],
//!   which on a native target go to the [`mock`] host so that a plugin's own
//!   `cargo test` runs without a runner.
//!
//! Call the façades, not the raw imports in [`bindings`]: a native test that
//! reaches a raw import aborts the test process.

#![warn(missing_docs)]

pub mod bindings;
mod catalog;
mod error;
pub mod host;
pub mod ids;
mod info;
mod item;
mod meta;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
mod options;
mod plan;
mod plugin;
pub mod preopens;
pub mod sink;
pub mod source;
mod summary;
pub mod time;

pub use bindings::attache::plugin::backup_sink::ItemData;
pub use bindings::attache::plugin::posix;
pub use bindings::attache::plugin::types::{
    AccessPlan, ApplicationKind, CatalogEntry, Item, ItemKind, ItemMetadata, Level, NetNeed,
    Operation, OptionList, OptionSpec, PathAccess, PathNeed, PlanRequest, PluginError, PluginInfo,
    RestoreDestination, Selected, Timestamp,
};
pub use bindings::exports::attache::plugin::plugin::{BackupRequest, RestoreRequest, Summary};
pub use bindings::wasi;
pub use meta::Meta;
pub use options::Options;
pub use plugin::Plugin;
#[cfg(not(target_arch = "wasm32"))]
pub use plugin::{Discover, NativeExports};

/// Everything a plugin usually needs, for `use attache_plugin_sdk::prelude::*`.
pub mod prelude {
    pub use crate::{
        export_plugin, host, preopens, sink, source, time, AccessPlan, ApplicationKind,
        BackupRequest, CatalogEntry, Item, ItemData, ItemKind, ItemMetadata, Level, Meta,
        Operation, OptionList, OptionSpec, Options, PathAccess, PlanRequest, Plugin, PluginError,
        PluginInfo, RestoreDestination, RestoreRequest, Selected, Summary, Timestamp,
    };
}
