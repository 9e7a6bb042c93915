//! `guest-runner precompile`: compiles the container's plugin components
//! ahead of time, for guests too slow to compile them on every job (a VM
//! under software emulation takes seconds where the server takes
//! milliseconds). Run on the server by `attache container assemble`: the
//! compiled forms go next to the components as `plugins/NAME.cwasm`, and
//! the engine id printed on stdout's first line goes into the manifest, so
//! that only a runner with this very engine loads them. Each further line
//! is `NAME CONTRACT`: the contract version the plugin was built against,
//! which the manifest records too.

use std::fs;

use anyhow::Context;
use guest_runner::manifest::{check_name, plugin_file, precompiled_file};
use guest_runner::runtime::Sandbox;

use super::agent_dir;
use crate::options::{Cli, PrecompileArgs};

pub(crate) fn run(cli: &Cli, a: &PrecompileArgs) -> anyhow::Result<()> {
    let dir = agent_dir(cli)?;
    let sandbox = Sandbox::new(None)?;
    let mut contracts = Vec::new();
    for name in &a.plugins {
        check_name(name)?;
        let src = dir.join(plugin_file(name));
        let bytes = fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
        let (code, contract) = sandbox.precompile(name, &bytes)?;
        contracts.push(format!("{name} {}", contract.as_str()));
        let dst = dir.join(precompiled_file(name));
        let tmp = dst.with_extension("cwasm.tmp");
        fs::write(&tmp, &code).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &dst).with_context(|| format!("cannot write {}", dst.display()))?;
    }
    println!("{}", sandbox.engine_id());
    for c in contracts {
        println!("{c}");
    }
    Ok(())
}
