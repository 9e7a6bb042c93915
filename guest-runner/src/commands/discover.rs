//! `guest-runner discover`: application items for the catalog, as JSON on
//! standard output, or as the data channel's reply in a VM.

use std::io::Write as _;

use guest_runner::runtime::convert::kind_to_stream;
use guest_runner::runtime::{Operation, PlanRequest, Running, State};
use serde_json::json;

use super::{prepare, selected};
use crate::options::{Cli, DiscoverArgs};

pub(crate) fn run(cli: &Cli, a: &DiscoverArgs) -> anyhow::Result<()> {
    let p = prepare(cli, &a.plugin)?;
    let request = PlanRequest {
        operation: Operation::Discover,
        selection: selected(a.scope.as_slice(), &[])?,
        destination: None,
        options: crate::options::all_options(&a.options, &a.option_env),
    };
    let job = p.job(cli, &request, None)?;
    let state = State::granted(&a.plugin, &job.grants, job.limits.memory)?;
    let mut run = Running::start(&p.sandbox, &p.component, state, job.limits)?;
    let entries = run.discover(a.scope.as_deref(), a.depth, &job.options)?;
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
    match (&a.channel.channel, &a.channel.session) {
        (Some(path), Some(session)) => {
            let mut ch = crate::io::open_channel(path, session)?;
            guest_runner::channel::write_reply(&mut ch.writer, &serde_json::to_vec(&out)?)?;
            ch.writer.flush()?;
        }
        _ => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}
