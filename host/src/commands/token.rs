//! `attache token create|list|revoke`: on the state directory's token
//! store, or through `--server` (an admin token).

use serde_json::{json, Value};

use crate::access::tokens::{NewToken, Store};
use crate::cli::{Cli, JsonArgs, TokenCreateArgs, TokenRevokeArgs};

fn store(cli: &Cli) -> Store {
    Store::new(&super::state(cli))
}

pub(crate) fn create(cli: &Cli, a: &TokenCreateArgs) -> anyhow::Result<()> {
    let new = NewToken {
        role: a.role,
        targets: a.targets.clone(),
        restore_to: a.restore_to.clone(),
    };
    let made = match super::client(cli)? {
        Some(c) => c.post(
            "/tokens",
            &json!({ "role": new.role, "targets": new.targets, "restore_to": new.restore_to }),
        )?,
        None => {
            let ctx = super::context(cli)?;
            let (token, entry) = store(cli).create(&new, &ctx.audit)?;
            let mut v = entry.listed();
            v["token"] = json!(token);
            v
        }
    };
    if a.json {
        println!("{made}");
    } else {
        println!("{}", made["token"].as_str().unwrap_or_default());
        eprintln!(
            "attache: token {} ({}) created; it is shown only now",
            made["id"].as_str().unwrap_or("?"),
            made["role"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) fn list(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    let all: Vec<Value> = match super::client(cli)? {
        Some(c) => serde_json::from_value(c.get("/tokens")?)?,
        None => store(cli).list()?.iter().map(|e| e.listed()).collect(),
    };
    if a.json {
        println!("{}", Value::Array(all));
        return Ok(());
    }
    println!(
        "{:<14} {:<9} {:<24} {:<24} CREATED",
        "ID", "ROLE", "TARGETS", "RESTORE TO"
    );
    for t in &all {
        let list = |k: &str| {
            t[k].as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        println!(
            "{:<14} {:<9} {:<24} {:<24} {}",
            t["id"].as_str().unwrap_or("?"),
            t["role"].as_str().unwrap_or("?"),
            list("targets"),
            list("restore_to"),
            t["created"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) fn revoke(cli: &Cli, a: &TokenRevokeArgs) -> anyhow::Result<()> {
    match super::client(cli)? {
        Some(c) => {
            c.delete(&format!("/tokens/{}", a.id))?;
        }
        None => {
            let ctx = super::context(cli)?;
            store(cli).revoke(&a.id, &ctx.audit)?;
        }
    }
    eprintln!("attache: token {} revoked", a.id);
    Ok(())
}
