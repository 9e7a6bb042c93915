//! The [`Plugin`] trait and the [`export_plugin!`](crate::export_plugin)
//! macro that exports a type implementing it as the component's `plugin`
//! interface.

use crate::{
    AccessPlan, BackupRequest, CatalogEntry, OptionList, PlanRequest, PluginError, PluginInfo,
    RestoreRequest, Summary,
};

/// What a plugin implements: the `plugin` interface of contract 0.2.0,
/// with defaults for the calls an application may not need.
///
/// Each function is documented in `wit/0.2.0/attache.wit`.
pub trait Plugin {
    /// Describes the plugin; must not touch the application.
    fn info() -> PluginInfo;

    /// Says what a job will need. Runs granted nothing: it must derive
    /// everything from the request (ids, destination, options).
    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError>;

    /// Lists the items below `scope`. By default there is nothing to list.
    fn discover(
        scope: Option<String>,
        depth: u32,
        options: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        let _ = (scope, depth, options);
        Ok(Vec::new())
    }

    /// Holds the application consistent; returns what `thaw` needs. By
    /// default there is nothing to hold and the state is empty.
    fn quiesce(selection: Vec<String>, options: OptionList) -> Result<String, PluginError> {
        let _ = (selection, options);
        Ok(String::new())
    }

    /// Releases what `quiesce` holds, given the state it returned. By
    /// default there is nothing to release.
    fn thaw(state: String, options: OptionList) -> Result<(), PluginError> {
        let _ = (state, options);
        Ok(())
    }

    /// Backs up the selection through [`crate::sink`].
    fn backup(request: BackupRequest) -> Result<Summary, PluginError>;

    /// Restores what [`crate::source`] yields.
    fn restore(request: RestoreRequest) -> Result<Summary, PluginError>;
}

/// Exports a type implementing [`Plugin`] as the component's `plugin`
/// interface: `export_plugin!(MyApp);` once, in the crate's `lib.rs`.
///
/// The type must be a plain name (`MyApp`, not a path), defined in the
/// crate that invokes the macro. On a native target only the trait
/// delegation is generated, no exports, so that the crate links natively
/// for `cargo test`.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ident) => {
        impl $crate::bindings::exports::attache::plugin::plugin::Guest for $ty {
            fn info() -> $crate::PluginInfo {
                <$ty as $crate::Plugin>::info()
            }
            fn plan(
                request: $crate::PlanRequest,
            ) -> ::core::result::Result<$crate::AccessPlan, $crate::PluginError> {
                <$ty as $crate::Plugin>::plan(request)
            }
            fn discover(
                scope: ::core::option::Option<::std::string::String>,
                depth: u32,
                options: $crate::OptionList,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::CatalogEntry>, $crate::PluginError>
            {
                <$ty as $crate::Plugin>::discover(scope, depth, options)
            }
            fn quiesce(
                selection: ::std::vec::Vec<::std::string::String>,
                options: $crate::OptionList,
            ) -> ::core::result::Result<::std::string::String, $crate::PluginError> {
                <$ty as $crate::Plugin>::quiesce(selection, options)
            }
            fn thaw(
                state: ::std::string::String,
                options: $crate::OptionList,
            ) -> ::core::result::Result<(), $crate::PluginError> {
                <$ty as $crate::Plugin>::thaw(state, options)
            }
            fn backup(
                request: $crate::BackupRequest,
            ) -> ::core::result::Result<$crate::Summary, $crate::PluginError> {
                <$ty as $crate::Plugin>::backup(request)
            }
            fn restore(
                request: $crate::RestoreRequest,
            ) -> ::core::result::Result<$crate::Summary, $crate::PluginError> {
                <$ty as $crate::Plugin>::restore(request)
            }
        }
        // Natively there is no component to export from (and the export
        // names would not link into a native library): tests call the
        // plugin's functions directly, on the mock host, and this table
        // stands for the exports, so that a native build (tests, lints)
        // sees the plugin's code reachable as the component does.
        #[cfg(target_arch = "wasm32")]
        #[allow(
            unsafe_code,
            reason = "wit-bindgen's export glue is unsafe code it generates; the plugin has none"
        )]
        mod __attache_plugin_exports {
            use super::$ty;
            $crate::bindings::export!($ty with_types_in $crate::bindings);
        }
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __attache_plugin_native_exports() -> $crate::NativeExports {
            $crate::NativeExports::of::<$ty>()
        }
    };
}

/// [`Plugin::discover`]'s signature.
#[cfg(not(target_arch = "wasm32"))]
pub type Discover = fn(Option<String>, u32, OptionList) -> Result<Vec<CatalogEntry>, PluginError>;

/// A plugin's functions as a table, on a native target where there is no
/// component to export them from: what `export_plugin!` makes reachable
/// there, as the component's exports make them reachable on wasm32.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy)]
pub struct NativeExports {
    /// [`Plugin::info`].
    pub info: fn() -> PluginInfo,
    /// [`Plugin::plan`].
    pub plan: fn(PlanRequest) -> Result<AccessPlan, PluginError>,
    /// [`Plugin::discover`].
    pub discover: Discover,
    /// [`Plugin::quiesce`].
    pub quiesce: fn(Vec<String>, OptionList) -> Result<String, PluginError>,
    /// [`Plugin::thaw`].
    pub thaw: fn(String, OptionList) -> Result<(), PluginError>,
    /// [`Plugin::backup`].
    pub backup: fn(BackupRequest) -> Result<Summary, PluginError>,
    /// [`Plugin::restore`].
    pub restore: fn(RestoreRequest) -> Result<Summary, PluginError>,
}

#[cfg(not(target_arch = "wasm32"))]
impl NativeExports {
    /// The table of plugin `P`.
    pub fn of<P: Plugin>() -> Self {
        Self {
            info: P::info,
            plan: P::plan,
            discover: P::discover,
            quiesce: P::quiesce,
            thaw: P::thaw,
            backup: P::backup,
            restore: P::restore,
        }
    }
}
