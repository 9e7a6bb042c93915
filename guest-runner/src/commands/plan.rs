//! `guest-runner plan`: what a job would need, as the plugin plans it,
//! printed as JSON (`guest_runner::plan::Plan`). The server runs it before
//! it attaches anything, to check the plan against its policy.

use guest_runner::runtime::{Operation, PlanRequest};

use super::{destination, prepare, selected};
use crate::options::{Cli, OperationArg, PlanArgs};

pub(crate) fn run(cli: &Cli, a: &PlanArgs) -> anyhow::Result<()> {
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
            .then(|| destination(a.target.as_ref(), &a.rename, &a.select))
            .transpose()?,
        options,
    };
    p.check_options(&request.options)?;
    let plan = p.plan(&request)?;
    if a.check {
        // What a restore below another root writes lands there.
        let root = a.target.as_deref().filter(|t| t.as_os_str() != "/");
        let landed = match root {
            Some(r) if a.operation == OperationArg::Restore => plan.below_root(r),
            _ => plan.clone(),
        };
        cli.policy()?.check(&a.plugin, &landed, cli.job_limits())?;
    }
    println!("{}", serde_json::to_string_pretty(&plan)?);
    Ok(())
}
