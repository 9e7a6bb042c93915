//! `guest-runner info`: verifies the container and describes its plugins as
//! JSON on stdout: each with the contract version it was built against, the
//! options it takes, and the contract versions this runner serves.

use guest_runner::runtime::convert::application_kind_name;
use guest_runner::runtime::{Contract, PluginInfo, SERVED};
use serde_json::json;

use super::{agent_dir, prepare};
use crate::options::{Cli, InfoArgs};

pub(crate) fn run(cli: &Cli, a: &InfoArgs) -> anyhow::Result<()> {
    let manifest = guest_runner::manifest::Manifest::load(&agent_dir(cli)?)?;
    let names: Vec<String> = match &a.plugin {
        Some(p) => vec![p.clone()],
        None => manifest.plugins.iter().map(|p| p.name.clone()).collect(),
    };
    let mut plugins = Vec::new();
    for name in names {
        let p = prepare(cli, &name)?;
        plugins.push(describe(
            &p.info,
            p.contract,
            &p.manifest.plugin(&name)?.entry.blake3,
        ));
    }
    let out = json!({
        "container": manifest.version,
        "contracts_served": SERVED.map(|c| c.as_str()),
        "plugins": plugins,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn describe(i: &PluginInfo, contract: Contract, blake3: &str) -> serde_json::Value {
    json!({
        "name": i.name,
        "version": i.version,
        "contract": contract.as_str(),
        "kind": application_kind_name(i.kind),
        "description": i.description,
        "options": i.options.iter().map(|o| json!({
            "name": o.name,
            "description": o.description,
            "required": o.required,
            "secret": o.secret,
        })).collect::<Vec<_>>(),
        "supports_quiesce": i.supports_quiesce,
        "blake3": blake3,
    })
}
