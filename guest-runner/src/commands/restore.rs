//! `guest-runner restore`: feeds a stream's items to the plugin's restore and
//! prints what happened as JSON on stdout.

use guest_runner::runtime::{
    Notes, Operation, PlanRequest, RestoreRequest, RunnerError, Running, Source, State,
};
use serde_json::json;

use super::{destination, prepare, selected};
use crate::io::{open_channel, open_input};
use crate::options::{Cli, RestoreArgs};

pub(crate) fn run(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<()> {
    let _span = tracing::info_span!("restore", plugin = %a.plugin).entered();
    let p = prepare(cli, &a.plugin)?;
    let destination = destination(a.target.as_ref(), &a.rename, &a.select)?;
    let request = PlanRequest {
        operation: Operation::Restore,
        selection: selected(&a.select, &a.select_kind)?,
        destination: Some(destination.clone()),
        options: crate::options::all_options(&a.options, &a.option_env),
    };
    // Writes land below the target root; `/` is the original place.
    let root = a.target.as_deref().filter(|t| t.as_os_str() != "/");
    let job = p.job(cli, &request, root)?;
    let limits = job.limits;
    let input: Box<dyn std::io::Read + Send> = match (&a.channel.channel, &a.channel.session) {
        (Some(path), Some(session)) => Box::new(open_channel(path, session)?.reader),
        _ => open_input(&a.input)?,
    };
    let source = Source::new(input)?;
    if source.header().plugin != a.plugin {
        return Err(RunnerError::WrongPlugin {
            expected: a.plugin.clone(),
            found: source.header().plugin.clone(),
        }
        .into());
    }
    let state = State::granted(&a.plugin, &job.grants, limits.memory)?.with_source(source);
    let mut run = Running::start(&p.sandbox, &p.component, state, limits)?;
    let request = RestoreRequest {
        destination,
        overwrite: a.overwrite,
        options: job.options.clone(),
    };
    let result = run.restore(&request);
    let source = run
        .state()
        .take_source()
        .ok_or_else(|| RunnerError::Other("the source disappeared".into()))?;
    let refused = source.refused.clone();
    let warnings = source.warnings.clone();
    let summary = result?;
    let trailer = source.finish().map_err(RunnerError::Other)?;
    let notes = |n: &Notes| {
        n.kept()
            .iter()
            .map(|(id, m)| json!({ "id": id, "message": m }))
            .collect::<Vec<_>>()
    };
    // Past the bounds (runtime::notes), notes are counted: the report
    // lists the first ones and says how many more there were.
    let out = json!({
        "items": summary.items,
        "bytes": summary.bytes,
        "stream_items": trailer.items,
        "refused": notes(&refused),
        "refused_unlisted": refused.dropped(),
        "warnings": notes(&warnings),
        "warnings_unlisted": warnings.dropped(),
    });
    println!("{out}");
    if !refused.is_empty() || !warnings.is_empty() {
        anyhow::bail!(
            "restore finished, but {} item(s) were refused and {} not restored (see the report above)",
            refused.total(),
            warnings.total()
        );
    }
    Ok(())
}
