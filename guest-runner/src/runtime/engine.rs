//! The wasmtime engine and linker shared by every plugin run, and the cache
//! of precompiled components.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::{RunnerError, State};
use crate::manifest::Manifest;

/// Engine, linker and optional cache directory.
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
    cache: Option<PathBuf>,
}

impl Sandbox {
    /// A sandbox whose plugins are interrupted by epoch deadlines. With a
    /// cache directory, compiled components are kept there and reused.
    pub fn new(cache: Option<PathBuf>) -> Result<Self, RunnerError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        // An explicit target turns off the detection of this CPU's extra
        // features, so code compiled here runs on every CPU of the
        // architecture: a container's precompiled plugins (compiled on the
        // server) load in any guest, whatever CPU the hypervisor shows it.
        config.target(&portable_triple()).map_err(other)?;
        let engine = Engine::new(&config).map_err(other)?;
        super::limits::start_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(other)?;
        // Preopens come from the job's grants (a file can be granted alone),
        // replacing wasmtime-wasi's list of directories.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::filesystem::preopens::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(other)?;
        // Directory listings give each entry's type without a stat of it.
        super::readdir::shadow(&mut linker).map_err(other)?;
        linker.allow_shadowing(false);
        // Attaché's own interfaces, once per contract version served.
        {
            use super::bindings::v0_2::attache::plugin as wit;
            wit::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::posix::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::backup_sink::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::restore_source::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
                .map_err(other)?;
        }
        {
            use super::bindings::v0_1::attache::plugin as wit;
            wit::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::posix::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::backup_sink::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(other)?;
            wit::restore_source::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
                .map_err(other)?;
        }
        if let Some(dir) = &cache {
            std::fs::create_dir_all(dir).map_err(|e| {
                RunnerError::Other(format!("cache directory {}: {e}", dir.display()))
            })?;
        }
        Ok(Self {
            engine,
            linker,
            cache,
        })
    }

    /// Names this engine's compiled code: precompiled components carry it,
    /// and only an engine with the same id loads them.
    pub fn engine_id(&self) -> String {
        let mut h = DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{}-{:016x}", portable_triple(), h.finish())
    }

    /// Compiles a component into the form `load` takes from a container;
    /// also the contract version it was built against (one this runner
    /// serves, or an error naming those it serves).
    pub fn precompile(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, super::Contract), RunnerError> {
        let load_err = |e: wasmtime::Error| RunnerError::Load {
            plugin: name.into(),
            source: e,
        };
        let component = Component::new(&self.engine, bytes).map_err(load_err)?;
        let contract = super::Contract::of(&self.engine, &component, name)?;
        Ok((component.serialize().map_err(load_err)?, contract))
    }

    /// Loads plugin `name` of the container at `dir`: its component is
    /// verified against the manifest first (a container whose component was
    /// changed is refused, whatever else it holds), then the container's
    /// precompiled form for this engine is used, or the cache, or the
    /// component is compiled. A precompiled form that is missing, does not
    /// match the manifest or does not load is never run: the verified
    /// component is compiled instead.
    pub fn load(
        &self,
        dir: &Path,
        manifest: &Manifest,
        name: &str,
    ) -> Result<Component, RunnerError> {
        let bytes = manifest.read_verified(dir, name)?;
        match manifest.read_verified_precompiled(dir, name, &self.engine_id()) {
            Ok(Some(code)) => {
                #[allow(
                    unsafe_code,
                    reason = "loading precompiled code is what makes a plugin start without compiling"
                )]
                // SAFETY: these bytes hash to the manifest's value, and the
                // manifest is what vouches for the runner executing this very
                // code: the precompiled form is trusted exactly as far as the
                // runner binary is. It was made by `precompile` of a runner
                // with this engine id (checked above; wasmtime checks it
                // again).
                let loaded = unsafe { Component::deserialize(&self.engine, &code) };
                match loaded {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(plugin = name, "precompiled form unusable, compiling: {e:#}")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(plugin = name, "precompiled form refused, compiling: {e}"),
        }
        let hash = &manifest.plugin(name)?.entry.blake3;
        self.component(name, &bytes, hash)
    }

    /// The component for `bytes` whose BLAKE3 is `hash`.
    pub fn component(
        &self,
        name: &str,
        bytes: &[u8],
        hash: &str,
    ) -> Result<Component, RunnerError> {
        let load_err = |e: wasmtime::Error| RunnerError::Load {
            plugin: name.into(),
            source: e,
        };
        let Some(cache) = &self.cache else {
            return Component::new(&self.engine, bytes).map_err(load_err);
        };
        let mut h = DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let path = cache.join(format!("{hash}-{:016x}.cwasm", h.finish()));
        if path.exists() {
            #[allow(
                unsafe_code,
                reason = "the compiled-plugin cache is what makes later runs start without compiling"
            )]
            // SAFETY: the cache holds only what `serialize` below wrote for
            // this engine configuration, under a name keyed by the verified
            // hash of the source component; it must be writable by the
            // runner alone, as documented for `--cache-dir`.
            let loaded = unsafe { Component::deserialize_file(&self.engine, &path) };
            match loaded {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e:#}")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(load_err)?;
        match component.serialize() {
            Ok(compiled) => {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let written =
                    std::fs::write(&tmp, &compiled).and_then(|_| std::fs::rename(&tmp, &path));
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot serialize compiled component: {e:#}"),
        }
        Ok(component)
    }
}

/// This architecture and OS with no CPU features beyond the baseline.
fn portable_triple() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!("{}-unknown-linux-{env}", std::env::consts::ARCH)
}

fn other(e: wasmtime::Error) -> RunnerError {
    RunnerError::Engine(e)
}
