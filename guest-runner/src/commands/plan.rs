//! `guest-runner plan`: what a job would need, as the plugin plans it,
//! printed as JSON (`guest_runner::plan::Plan`). The server runs it before
//! it attaches anything, to check the plan against its policy.

use guest_runner::runtime::{Operation, PlanRequest};

use super::{destination, prepare, selected};
use crate::options::{Cli, OperationArg, PlanArgs};

pub fn run(cli: &Cli, a: &PlanArgs) -> anyhow::Result<()> {
    let p = prepare(cli, &a.plugin)?;
    let options = crate::options::all_options(&a.options, &a.option_env);
    let request = PlanRequest {
        operation: match a.operation {
            OperationArg::Discover => Operation::Discover,
            OperationArg::Backup => Operation::Backup,
            OperationArg::Restore => Operation::Restore,
        },
        selection: selected(&a.select, &a.select_kind)?,
        destination: (a.operation == OperationArg::Restore)
            .then(|| destination(a.target.as_ref(), &a.rename)),
        options,
    };
    p.check_options(&request.options)?;
    let plan = p.plan(&request)?;
    if a.check {
        cli.policy()?.check(&a.plugin, &plan, cli.job_limits())?;
    }
    println!("{}", serde_json::to_string_pretty(&plan)?);
    Ok(())
}
