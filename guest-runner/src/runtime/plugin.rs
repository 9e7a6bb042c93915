//! One running plugin instance: calls into it, with traps turned into
//! errors that name the limit that stopped it.

use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use super::bindings::attache::plugin::types::{CatalogEntry, PluginError, PluginInfo};
use super::bindings::exports::attache::plugin::plugin::{BackupRequest, RestoreRequest, Summary};
use super::bindings::{PluginWorld, PluginWorldPre};
use super::limits::{DeadlineGuard, Limits, MemoryLimitReached};
use super::{RunnerError, Sandbox, State};

/// A plugin instantiated in its own store.
pub struct Running {
    store: Store<State>,
    world: Option<PluginWorld>,
    limits: Limits,
    name: String,
    _deadline: DeadlineGuard,
}

impl Running {
    /// Instantiates `component` with `state` (its grants, sink or source).
    /// The deadline runs from here over every call on the instance.
    pub fn start(
        sandbox: &Sandbox,
        component: &Component,
        state: State,
        limits: Limits,
    ) -> Result<Self, RunnerError> {
        let name = state.plugin.clone();
        let mut store = Store::new(&sandbox.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(1);
        let deadline = DeadlineGuard::start(&sandbox.engine, limits.deadline);
        let load = |e: wasmtime::Error| RunnerError::Load {
            plugin: name.clone(),
            message: format!("{e:#}"),
        };
        let pre = sandbox.linker.instantiate_pre(component).map_err(load)?;
        let pre = PluginWorldPre::new(pre).map_err(load)?;
        let world = pre.instantiate(&mut store);
        let mut running = Self {
            store,
            world: None,
            limits,
            name,
            _deadline: deadline,
        };
        running.world = Some(running.map(world)?);
        Ok(running)
    }

    pub fn info(&mut self) -> Result<PluginInfo, RunnerError> {
        let r = self
            .world
            .as_ref()
            .expect("set by start")
            .attache_plugin_plugin()
            .call_info(&mut self.store);
        self.map(r)
    }

    pub fn discover(
        &mut self,
        scope: Option<&str>,
        depth: u32,
        options: &Vec<(String, String)>,
    ) -> Result<Vec<CatalogEntry>, RunnerError> {
        let r = self
            .world
            .as_ref()
            .expect("set by start")
            .attache_plugin_plugin()
            .call_discover(&mut self.store, scope, depth, options);
        self.plugin_result(r)
    }

    pub fn quiesce(
        &mut self,
        selection: &[String],
        options: &Vec<(String, String)>,
    ) -> Result<(), RunnerError> {
        let r = self
            .world
            .as_ref()
            .expect("set by start")
            .attache_plugin_plugin()
            .call_quiesce(&mut self.store, selection, options);
        self.plugin_result(r)
    }

    pub fn thaw(&mut self) -> Result<(), RunnerError> {
        let r = self
            .world
            .as_ref()
            .expect("set by start")
            .attache_plugin_plugin()
            .call_thaw(&mut self.store);
        self.plugin_result(r)
    }

    pub fn backup(&mut self, req: &BackupRequest) -> Result<Summary, RunnerError> {
        let r = self
            .world
            .as_ref()
            .expect("set by start")
            .attache_plugin_plugin()
            .call_backup(&mut self.store, req);
        self.plugin_result(r)
    }

    pub fn restore(&mut self, req: &RestoreRequest) -> Result<Summary, RunnerError> {
        let r = self
            .world
            .as_ref()
            .expect("set by start")
            .attache_plugin_plugin()
            .call_restore(&mut self.store, req);
        self.plugin_result(r)
    }

    /// The host state, to take the sink or source back after a call.
    pub fn state(&mut self) -> &mut State {
        self.store.data_mut()
    }

    fn plugin_result<T>(
        &mut self,
        r: wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, RunnerError> {
        self.map(r)?.map_err(|e| RunnerError::Plugin {
            plugin: self.name.clone(),
            message: describe(&e),
        })
    }

    /// Runs under the deadline and turns a trap into the error naming its cause.
    fn map<T>(&mut self, r: wasmtime::Result<T>) -> Result<T, RunnerError> {
        r.map_err(|e| {
            let plugin = self.name.clone();
            if self.store.data().limiter.hit || e.downcast_ref::<MemoryLimitReached>().is_some() {
                RunnerError::MemoryLimit {
                    plugin,
                    limit_mib: (self.limits.memory >> 20) as u64,
                }
            } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                RunnerError::Deadline {
                    plugin,
                    deadline: self.limits.deadline,
                }
            } else {
                RunnerError::Trap {
                    plugin,
                    message: format!("{e:#}"),
                }
            }
        })
    }
}

fn describe(e: &PluginError) -> String {
    match e {
        PluginError::InvalidRequest(m) => format!("invalid request: {m}"),
        PluginError::AccessDenied(m) => format!("access denied: {m}"),
        PluginError::Application(m) => format!("application error: {m}"),
        PluginError::Transport(m) => format!("transport error: {m}"),
        PluginError::Other(m) => m.clone(),
    }
}
