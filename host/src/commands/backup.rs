//! `attache backup TARGET --plugin P --include ITEM… [--fsfreeze]`

use serde_json::json;

use crate::cli::{BackupArgs, Cli};
use crate::jobs::{self, BackupRequest};

pub(crate) fn run(cli: &Cli, a: &BackupArgs) -> anyhow::Result<()> {
    let req = BackupRequest {
        target: a.target.clone(),
        plugin: a.plugin.clone(),
        include: a.include.clone(),
        fsfreeze: a.fsfreeze,
        freeze_limit_secs: a.freeze_limit_secs,
        timeout_secs: a.job.timeout_secs,
        app_password: std::env::var(jobs::PASSWORD_ENV).ok(),
        app_password_file: a.job.app_password_file.clone(),
        options: a.job.options.iter().cloned().collect(),
        memory_limit_mib: a.job.memory_limit_mib,
        deadline_secs: a.job.deadline_secs,
        policy: None,
        attempt: 0,
    };
    let out = super::run_job(cli, "backup", &req, |ctx, ctl| {
        jobs::backup::run(ctx, &req, ctl)
    })?;
    if a.json {
        let keep = ["id", "items", "bytes", "read_bytes", "added_bytes"];
        let mut v = json!({});
        for k in keep {
            v[k] = out[k].clone();
        }
        v["warnings"] = json!(out["warnings"].as_array().map(Vec::len).unwrap_or(0));
        println!("{v}");
    } else {
        for w in out["warnings"].as_array().into_iter().flatten() {
            let message = w["message"].as_str().unwrap_or("?");
            match w["id"].as_str().unwrap_or_default() {
                "" => eprintln!("warning: {message}"),
                id => eprintln!("warning: {id}: {message}"),
            }
        }
        println!("{}", out["id"].as_str().unwrap_or_default());
    }
    Ok(())
}
