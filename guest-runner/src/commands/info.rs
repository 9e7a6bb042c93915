//! `guest-runner info`: verifies the container and describes its plugins as
//! JSON on stdout.

use guest_runner::runtime::convert::{application_kind_name, capability_name};
use guest_runner::runtime::PluginInfo;
use serde_json::json;

use super::{agent_dir, prepare};
use crate::options::{Cli, InfoArgs};

pub fn run(cli: &Cli, a: &InfoArgs) -> anyhow::Result<()> {
    let manifest = guest_runner::manifest::Manifest::load(&agent_dir(cli)?)?;
    let names: Vec<String> = match &a.plugin {
        Some(p) => vec![p.clone()],
        None => manifest.plugins.iter().map(|p| p.name.clone()).collect(),
    };
    let mut plugins = Vec::new();
    for name in names {
        let p = prepare(cli, &name)?;
        plugins.push(describe(&p.info, &p.manifest.plugin(&name)?.entry.blake3));
    }
    let out = json!({ "container": manifest.version, "wit": manifest.wit, "plugins": plugins });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn describe(i: &PluginInfo, blake3: &str) -> serde_json::Value {
    json!({
        "name": i.name,
        "version": i.version,
        "kind": application_kind_name(i.kind),
        "description": i.description,
        "capabilities": i.capabilities.iter().map(|c| capability_name(*c)).collect::<Vec<_>>(),
        "supports_quiesce": i.supports_quiesce,
        "blake3": blake3,
    })
}
