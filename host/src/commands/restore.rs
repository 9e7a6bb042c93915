//! `attache restore SNAPSHOT [--item ID…] --to local[:DIR]`

use std::sync::atomic::AtomicBool;

use serde_json::json;

use crate::cli::{Cli, RestoreArgs};
use crate::jobs::{self, Control, RestoreRequest};
use crate::progress::Display;

pub fn run(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<()> {
    let req = RestoreRequest {
        snapshot: a.snapshot.clone(),
        items: a.item.clone(),
        to: a.to.clone(),
        overwrite: a.overwrite,
    };
    let out = if let Some(client) = super::client(cli)? {
        client.run_job(&json!({ "kind": "restore", "restore": req }), "restore")?["result"].clone()
    } else {
        let display = Display::new("restore");
        let cancel = AtomicBool::new(false);
        let r = jobs::restore::run(
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
