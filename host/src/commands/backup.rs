//! `attache backup TARGET --plugin P --include ITEM…`

use std::sync::atomic::AtomicBool;

use serde_json::json;

use crate::cli::{BackupArgs, Cli};
use crate::jobs::{self, BackupRequest, Control};
use crate::progress::Display;

pub fn run(cli: &Cli, a: &BackupArgs) -> anyhow::Result<()> {
    let req = BackupRequest {
        target: a.target.clone(),
        plugin: a.plugin.clone(),
        include: a.include.clone(),
    };
    let out = if let Some(client) = super::client(cli)? {
        let job = client.run_job(&json!({ "kind": "backup", "backup": req }), "backup")?;
        job["result"].clone()
    } else {
        let display = Display::new("backup");
        let cancel = AtomicBool::new(false);
        let r = jobs::backup::run(
            &super::context(cli),
            &req,
            &Control {
                progress: &|p| display.update(p),
                cancel: &cancel,
            },
        );
        display.finish();
        serde_json::to_value(r?)?
    };
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
            eprintln!(
                "warning: {}: {}",
                w["id"].as_str().unwrap_or("?"),
                w["message"].as_str().unwrap_or("?")
            );
        }
        println!("{}", out["id"].as_str().unwrap_or_default());
    }
    Ok(())
}
