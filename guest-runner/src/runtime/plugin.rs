//! One running plugin instance, whatever contract version it was built
//! against: calls into it through the newest contract's types, with traps
//! turned into errors that name the limit that stopped it.

use std::time::{Duration, Instant};

use wasmtime::component::{types::ComponentItem, Component};
use wasmtime::{Engine, Store, Trap};

use super::bindings::attache::plugin::types::{
    AccessPlan, CatalogEntry, PlanRequest, PluginError, PluginInfo,
};
use super::bindings::exports::attache::plugin::plugin::{BackupRequest, RestoreRequest, Summary};
use super::bindings::{v0_1, v0_2};
use super::limits::{ticks, Limits, MemoryLimitReached};
use super::{RunnerError, Sandbox, State};

/// A contract version this runner serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `attache:plugin@0.1.0`, frozen.
    V0_1,
    /// `attache:plugin@0.2.0`, the newest.
    V0_2,
}

/// The versions this runner serves, oldest first.
pub const SERVED: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

impl Contract {
    /// The version as the WIT package names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// The versions served, for messages.
    pub fn served() -> String {
        SERVED.map(|c| c.as_str()).join(", ")
    }

    /// The contract a component was built against, from the name of the
    /// `attache:plugin/plugin` interface it exports.
    pub fn of(engine: &Engine, component: &Component, plugin: &str) -> Result<Self, RunnerError> {
        let ty = component.component_type();
        let mut found = Vec::new();
        for (name, item) in ty.exports(engine) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                continue;
            }
            if let Some(v) = name.strip_prefix("attache:plugin/plugin@") {
                match SERVED.iter().find(|c| c.as_str() == v) {
                    Some(c) => return Ok(*c),
                    None => found.push(v.to_owned()),
                }
            }
        }
        Err(RunnerError::Contract {
            plugin: plugin.to_owned(),
            found: if found.is_empty() {
                "none (it exports no attache:plugin/plugin interface)".into()
            } else {
                found.join(", ")
            },
            served: Contract::served(),
        })
    }
}

/// The plugin's exports, in its own contract version.
enum World {
    V0_1(v0_1::PluginWorld),
    V0_2(v0_2::PluginWorld),
}

/// A plugin instantiated in its own store.
pub struct Running {
    store: Store<State>,
    world: World,
    limits: Limits,
    name: String,
    /// When the instance's deadline passes; every call runs under it.
    deadline_at: Instant,
    /// A trap leaves an instance unusable: later calls fail at once.
    poisoned: bool,
    contract: Contract,
    /// For 0.1.0 plugins: what their `info` declared (the runner makes
    /// their plans from it).
    legacy_info: Option<v0_1::attache::plugin::types::PluginInfo>,
}

/// Which bound a call runs under.
#[derive(Clone, Copy)]
enum Bound {
    Deadline,
    Quiesce,
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
        let contract = Contract::of(&sandbox.engine, component, &name)?;
        let mut store = Store::new(&sandbox.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits.deadline));
        let load = |e: wasmtime::Error| RunnerError::Load {
            plugin: name.clone(),
            source: e,
        };
        let pre = sandbox.linker.instantiate_pre(component).map_err(load)?;
        let world = match contract {
            Contract::V0_1 => v0_1::PluginWorldPre::new(pre)
                .map_err(load)?
                .instantiate(&mut store)
                .map(World::V0_1),
            Contract::V0_2 => v0_2::PluginWorldPre::new(pre)
                .map_err(load)?
                .instantiate(&mut store)
                .map(World::V0_2),
        };
        let world = world.map_err(|e| classify(&store, &limits, &name, e, Bound::Deadline))?;
        Ok(Self {
            store,
            world,
            limits,
            name,
            deadline_at: Instant::now() + limits.deadline,
            poisoned: false,
            contract,
            legacy_info: None,
        })
    }

    /// The contract version the plugin was built against.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// The plugin's name as the container knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a trap has left the instance unusable.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Calls the plugin's `info`.
    pub fn info(&mut self) -> Result<PluginInfo, RunnerError> {
        match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Deadline, |s| w.call_info(s))
            }
            World::V0_1(w) => {
                let w = w.attache_plugin_plugin().clone();
                let old = self.call(Bound::Deadline, |s| w.call_info(s))?;
                let info = super::since_v0_1::info(&old);
                self.legacy_info = Some(old);
                Ok(info)
            }
        }
    }

    /// The plugin's plan for a job. A 0.1.0 plugin has no `plan`: the
    /// runner makes one from its declared capabilities and path-like ids.
    pub fn plan(&mut self, request: &PlanRequest) -> Result<AccessPlan, RunnerError> {
        match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                let r = self.call(Bound::Deadline, |s| w.call_plan(s, request))?;
                self.plugin_result(r)
            }
            World::V0_1(_) => {
                if self.legacy_info.is_none() {
                    self.info()?;
                }
                let info = self.legacy_info.as_ref().expect("set by info");
                super::since_v0_1::plan(info, request).map_err(|message| RunnerError::Capability {
                    plugin: self.name.clone(),
                    message,
                })
            }
        }
    }

    /// Calls the plugin's `discover`: the catalog below `scope`, `depth` levels deep.
    pub fn discover(
        &mut self,
        scope: Option<&str>,
        depth: u32,
        options: &Vec<(String, String)>,
    ) -> Result<Vec<CatalogEntry>, RunnerError> {
        let r = match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Deadline, |s| {
                    w.call_discover(s, scope, depth, options)
                })?
            }
            World::V0_1(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Deadline, |s| {
                    w.call_discover(s, scope, depth, options)
                })?
                .map(|v| v.into_iter().map(Into::into).collect())
                .map_err(Into::into)
            }
        };
        self.plugin_result(r)
    }

    /// Quiesces the application, bounded by the quiesce limit; the state
    /// `thaw` needs.
    pub fn quiesce(
        &mut self,
        selection: &[String],
        options: &Vec<(String, String)>,
    ) -> Result<String, RunnerError> {
        let r = match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Quiesce, |s| w.call_quiesce(s, selection, options))?
            }
            World::V0_1(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Quiesce, |s| w.call_quiesce(s, selection, options))?
                    .map(|()| String::new())
                    .map_err(Into::into)
            }
        };
        self.plugin_result(r)
    }

    /// Releases what `quiesce` holds, bounded by the quiesce limit.
    pub fn thaw(
        &mut self,
        state: &str,
        options: &Vec<(String, String)>,
    ) -> Result<(), RunnerError> {
        let r = match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Quiesce, |s| w.call_thaw(s, state, options))?
            }
            World::V0_1(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Quiesce, |s| w.call_thaw(s))?
                    .map_err(Into::into)
            }
        };
        self.plugin_result(r)
    }

    /// Calls the plugin's `backup`, streaming into the sink the store carries.
    pub fn backup(&mut self, req: &BackupRequest) -> Result<Summary, RunnerError> {
        let r = match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Deadline, |s| w.call_backup(s, req))?
            }
            World::V0_1(w) => {
                let w = w.attache_plugin_plugin().clone();
                let req = super::since_v0_1::backup_request(req);
                self.call(Bound::Deadline, |s| w.call_backup(s, &req))?
                    .map(Into::into)
                    .map_err(Into::into)
            }
        };
        self.plugin_result(r)
    }

    /// Calls the plugin's `restore`, reading from the source the store carries.
    pub fn restore(&mut self, req: &RestoreRequest) -> Result<Summary, RunnerError> {
        let r = match &self.world {
            World::V0_2(w) => {
                let w = w.attache_plugin_plugin().clone();
                self.call(Bound::Deadline, |s| w.call_restore(s, req))?
            }
            World::V0_1(w) => {
                let w = w.attache_plugin_plugin().clone();
                let req = super::since_v0_1::restore_request(req);
                self.call(Bound::Deadline, |s| w.call_restore(s, &req))?
                    .map(Into::into)
                    .map_err(Into::into)
            }
        };
        self.plugin_result(r)
    }

    /// The host state, to take the sink or source back after a call.
    pub fn state(&mut self) -> &mut State {
        self.store.data_mut()
    }

    /// Runs one call under the instance's deadline (and, for quiesce and
    /// thaw, the quiesce bound).
    fn call<T>(
        &mut self,
        bound: Bound,
        f: impl FnOnce(&mut Store<State>) -> wasmtime::Result<T>,
    ) -> Result<T, RunnerError> {
        if self.poisoned {
            return Err(RunnerError::Poisoned {
                plugin: self.name.clone(),
            });
        }
        let left = self.deadline_at.saturating_duration_since(Instant::now());
        let allowed = match bound {
            Bound::Deadline => left,
            Bound::Quiesce => left.min(self.limits.quiesce),
        };
        let bound = if allowed < left {
            bound
        } else {
            Bound::Deadline
        };
        self.store.set_epoch_deadline(ticks(allowed));
        let r = f(&mut self.store);
        self.map(r, bound)
    }

    fn plugin_result<T>(&mut self, r: Result<T, PluginError>) -> Result<T, RunnerError> {
        r.map_err(|e| RunnerError::Plugin {
            plugin: self.name.clone(),
            message: describe(&e),
        })
    }

    /// A trapped instance is never entered again.
    fn map<T>(&mut self, r: wasmtime::Result<T>, bound: Bound) -> Result<T, RunnerError> {
        r.map_err(|e| {
            self.poisoned = true;
            classify(&self.store, &self.limits, &self.name, e, bound)
        })
    }
}

/// The error naming what stopped a plugin: its memory limit, its deadline
/// or quiesce bound, or a trap (with the plugin's own function names).
fn classify(
    store: &Store<State>,
    limits: &Limits,
    plugin: &str,
    e: wasmtime::Error,
    bound: Bound,
) -> RunnerError {
    let plugin = plugin.to_owned();
    if store.data().limiter.hit || e.downcast_ref::<MemoryLimitReached>().is_some() {
        RunnerError::MemoryLimit {
            plugin,
            limit_mib: (limits.memory >> 20) as u64,
        }
    } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        match bound {
            Bound::Deadline => RunnerError::Deadline {
                plugin,
                deadline: limits.deadline,
            },
            Bound::Quiesce => RunnerError::QuiesceTimeout {
                plugin,
                limit: limits.quiesce,
            },
        }
    } else {
        RunnerError::Trap {
            plugin,
            message: trap_message(&e),
            trap: e,
        }
    }
}

/// A demangled name without the crate disambiguators rustc adds
/// (`std[d123b7a1]::process::abort` is `std::process::abort`).
fn without_disambiguators(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('[') {
        match rest[i + 1..].find(']') {
            Some(j)
                if rest[i + 1..i + 1 + j]
                    .chars()
                    .all(|c| c.is_ascii_hexdigit()) =>
            {
                out.push_str(&rest[..i]);
                rest = &rest[i + j + 2..];
            }
            _ => {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A trap in one line: its cause, and where in the plugin's own code it
/// happened (the innermost frames that are not the standard library's),
/// named from the plugin's name section.
fn trap_message(e: &wasmtime::Error) -> String {
    let cause = e.root_cause().to_string();
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return cause;
    };
    let library = |n: &str| {
        [
            "core::",
            "std::",
            "alloc::",
            "panic_",
            "abort",
            "__",
            "rust_",
            "<",
            "dlmalloc",
            "wit_bindgen",
            "cabi_",
            "attache_plugin_sdk::",
        ]
        .iter()
        .any(|p| n.starts_with(p))
    };
    let names: Vec<String> = bt
        .frames()
        .iter()
        .filter_map(|f| f.func_name())
        .map(|n| {
            let d = without_disambiguators(&rustc_demangle::demangle(n).to_string());
            // Without the hash suffix rustc adds (`::h0123…`).
            match d.rfind("::h") {
                Some(i) if d[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => d[..i].to_owned(),
                _ => d,
            }
        })
        .filter(|n| !library(n))
        .take(3)
        .collect();
    if names.is_empty() {
        cause
    } else {
        format!("{cause}, in {}", names.join(" < "))
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

/// How long a fresh instance that only thaws may run.
pub const THAW_DEADLINE: Duration = Duration::from_secs(60);
