//! `attache jobs [--policy P] [--vm V] [--failed]`: the job history, from
//! the state directory's database (no server needed) or through
//! `--server`.

use serde_json::Value;

use crate::cli::{Cli, JobsArgs};
use crate::client::query_value;
use crate::db::JobFilter;

pub(crate) fn run(cli: &Cli, a: &JobsArgs) -> anyhow::Result<()> {
    let filter = JobFilter {
        policy: a.policy_name.clone(),
        vm: a.vm.clone(),
        failed: a.failed,
        limit: a.limit,
    };
    let jobs: Vec<Value> = match super::client(cli)? {
        Some(c) => {
            let mut q = Vec::new();
            if let Some(p) = &filter.policy {
                q.push(format!("policy={}", query_value(p)));
            }
            if let Some(v) = &filter.vm {
                q.push(format!("vm={}", query_value(v)));
            }
            if filter.failed {
                q.push("failed=true".into());
            }
            if let Some(n) = filter.limit {
                q.push(format!("limit={n}"));
            }
            serde_json::from_value(c.get(&format!("/jobs?{}", q.join("&")))?)?
        }
        None => super::db(cli)?
            .jobs(&filter)?
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<8} {:<24} {:<12} {:<20} {:<12} RESULT",
        "ID", "KIND", "TARGET", "STATUS", "CREATED", "POLICY"
    );
    for j in &jobs {
        let result = j["snapshot"]
            .as_str()
            .or(j["result"]["id"].as_str())
            .map(|s| format!("snapshot {}", &s[..s.len().min(8)]))
            .or(j["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<16} {:<8} {:<24} {:<12} {:<20} {:<12} {}",
            j["id"].as_str().unwrap_or_default(),
            j["kind"].as_str().unwrap_or_default(),
            j["target"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            super::ls::time(j["created"].as_i64().unwrap_or(0), 0),
            j["policy"].as_str().unwrap_or("-"),
            result
        );
    }
    Ok(())
}
