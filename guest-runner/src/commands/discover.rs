//! `guest-runner discover`: application items for the catalog, as JSON.

use guest_runner::runtime::convert::kind_to_stream;
use guest_runner::runtime::{Running, State};
use serde_json::json;

use super::prepare;
use crate::options::{Cli, DiscoverArgs};

pub fn run(cli: &Cli, a: &DiscoverArgs) -> anyhow::Result<()> {
    let p = prepare(cli, &a.plugin)?;
    let grants = cli.grants(&a.grant_read, None);
    grants.check(&p.info)?;
    let limits = cli.limits();
    let state = State::new(&a.plugin, grants.wasi()?, limits.memory);
    let mut run = Running::start(&p.sandbox, &p.component, state, limits)?;
    let entries = run.discover(
        a.scope.as_deref(),
        a.depth,
        &crate::options::all_options(&a.options, &a.option_env),
    )?;
    let out: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "kind": kind_to_stream(e.kind).as_str(),
                "size": e.size,
                "has_children": e.has_children,
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
