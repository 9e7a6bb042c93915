//! `attache restore SNAPSHOT [--item ID…] --to local[:DIR]`

use crate::cli::{Cli, RestoreArgs};
use crate::jobs::{self, RestoreRequest};

pub(crate) fn run(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<()> {
    let req = RestoreRequest {
        snapshot: a.snapshot.clone(),
        items: a.item.clone(),
        to: a.to.clone(),
        overwrite: a.overwrite,
        rename_to: a.rename_to.clone(),
        timeout_secs: a.job.timeout_secs,
        app_password: std::env::var(jobs::PASSWORD_ENV).ok(),
        app_password_file: a.job.app_password_file.clone(),
        options: a.job.options.iter().cloned().collect(),
        memory_limit_mib: a.job.memory_limit_mib,
        deadline_secs: a.job.deadline_secs,
    };
    let out = super::run_job(cli, "restore", &req, |ctx, ctl| {
        jobs::restore::run(ctx, &req, ctl)
    })?;
    for w in out["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or("?"));
    }
    if a.json {
        println!("{}", out["report"]);
    } else {
        println!(
            "restored {} item(s) of snapshot {} to {}",
            out["items"],
            &out["snapshot"].as_str().unwrap_or_default()
                [..8.min(out["snapshot"].as_str().unwrap_or_default().len())],
            out["to"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
