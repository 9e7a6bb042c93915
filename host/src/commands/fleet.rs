//! `attache policy add|list|show NAME|remove|run`: backup policies, on the
//! state directory's database or through `--server`.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::cli::{Cli, JsonArgs, PolicyAddArgs, PolicyNameArgs, PolicyRunArgs};
use crate::db::records::Keep;
use crate::db::{JobFilter, PolicyRecord};
use crate::fleet::schedule::Schedule;
use crate::server::queue::{now, Queue};

pub(crate) fn add(cli: &Cli, a: &PolicyAddArgs) -> anyhow::Result<()> {
    let p = PolicyRecord {
        name: a.name.clone(),
        vms: a.vms.clone(),
        plugin: a.plugin.clone(),
        include: a.include.clone(),
        options: a.options.iter().cloned().collect(),
        schedule: a.schedule.clone(),
        keep: Keep {
            last: a.keep_last,
            daily: a.keep_daily,
            weekly: a.keep_weekly,
            monthly: a.keep_monthly,
        },
        retries: a.retries,
        created: now(),
        last_fired: None,
    };
    crate::fleet::check::check(&p)?;
    match super::client(cli)? {
        Some(c) => {
            c.post("/policies", &serde_json::to_value(&p)?)?;
        }
        None => {
            super::db(cli)?.add_policy(&p)?;
            super::context(cli)?.audit.record(
                "policy.add",
                json!({ "policy": crate::server::shown_policy(p.clone()) }),
            )?;
        }
    }
    eprintln!("attache: policy {} added", p.name);
    Ok(())
}

fn policies(cli: &Cli) -> anyhow::Result<Vec<PolicyRecord>> {
    Ok(match super::client(cli)? {
        Some(c) => serde_json::from_value(c.get("/policies")?)?,
        None => super::db(cli)?
            .policies()?
            .into_iter()
            .map(crate::server::shown_policy)
            .collect(),
    })
}

fn keep_text(k: Keep) -> String {
    let parts: Vec<String> = [
        ("last", k.last),
        ("daily", k.daily),
        ("weekly", k.weekly),
        ("monthly", k.monthly),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(w, n)| format!("{w} {n}"))
    .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(", ")
    }
}

/// When `p` runs next on its schedule.
fn next_run(p: &PolicyRecord) -> Option<i64> {
    let since = p.last_fired.unwrap_or(p.created).max(p.created);
    Schedule::parse(&p.schedule).ok()?.next_after(since)
}

pub(crate) fn list(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    let all = policies(cli)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<18} {:<12} {:<28} VMS",
        "NAME", "SCHEDULE", "PLUGIN", "KEEP"
    );
    for p in &all {
        println!(
            "{:<16} {:<18} {:<12} {:<28} {}",
            p.name,
            p.schedule,
            p.plugin,
            keep_text(p.keep),
            p.vms.join(" ")
        );
    }
    Ok(())
}

pub(crate) fn show(cli: &Cli, name: &str, json_out: bool) -> anyhow::Result<()> {
    let (p, jobs): (PolicyRecord, Vec<Value>) = match super::client(cli)? {
        Some(c) => (
            serde_json::from_value(c.get(&format!("/policies/{name}"))?)?,
            serde_json::from_value(c.get(&format!("/jobs?policy={name}&limit=20"))?)?,
        ),
        None => {
            let db = super::db(cli)?;
            let p = db
                .policy(name)?
                .with_context(|| format!("no policy {name:?} (attache policy list)"))?;
            let jobs = db.jobs(&JobFilter {
                policy: Some(name.to_owned()),
                limit: Some(20),
                ..Default::default()
            })?;
            (
                crate::server::shown_policy(p),
                jobs.into_iter()
                    .map(|j| serde_json::to_value(j).unwrap_or_default())
                    .collect(),
            )
        }
    };
    let next = next_run(&p);
    if json_out {
        let mut v = serde_json::to_value(&p)?;
        v["next_run"] = json!(next);
        v["jobs"] = json!(jobs);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("policy    {}", p.name);
    println!("vms       {}", p.vms.join(" "));
    println!("plugin    {}", p.plugin);
    println!("include   {}", p.include.join(" "));
    for (k, v) in &p.options {
        println!("option    {k}={v}");
    }
    println!("schedule  {} (UTC)", p.schedule);
    if let Some(t) = next {
        println!("next run  {}", super::ls::time(t, 0));
    }
    println!("keep      {}", keep_text(p.keep));
    if p.retries > 0 {
        println!("retries   {} (of an interrupted job)", p.retries);
    }
    println!("last jobs");
    for j in &jobs {
        println!(
            "  {}  {:<24} {:<11} {}",
            j["id"].as_str().unwrap_or_default(),
            j["target"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            j["snapshot"]
                .as_str()
                .or(j["result"]["id"].as_str())
                .or(j["error"].as_str())
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) fn remove(cli: &Cli, a: &PolicyNameArgs) -> anyhow::Result<()> {
    match super::client(cli)? {
        Some(c) => {
            c.delete(&format!("/policies/{}", a.name))?;
        }
        None => {
            if !super::db(cli)?.remove_policy(&a.name)? {
                bail!("no policy {:?}", a.name);
            }
            super::context(cli)?
                .audit
                .record("policy.remove", json!({ "policy": a.name }))?;
        }
    }
    eprintln!("attache: policy {} removed", a.name);
    Ok(())
}

pub(crate) fn run(cli: &Cli, a: &PolicyRunArgs) -> anyhow::Result<()> {
    let jobs: Vec<Value> = match super::client(cli)? {
        Some(c) => {
            let run = c.post(&format!("/policies/{}/run", a.name), &json!({}))?;
            for u in run["unreachable"].as_array().into_iter().flatten() {
                eprintln!(
                    "attache: hypervisor {} unreachable: {}",
                    u[0].as_str().unwrap_or("?"),
                    u[1].as_str().unwrap_or("?")
                );
            }
            let mut jobs: Vec<Value> = serde_json::from_value(run["jobs"].clone())?;
            if !a.no_wait {
                for j in &mut jobs {
                    let id = j["id"].as_str().context("a job without id")?.to_owned();
                    while !crate::client::ended(j) {
                        std::thread::sleep(Duration::from_millis(250));
                        *j = c.get(&format!("/jobs/{id}"))?;
                    }
                }
            }
            jobs
        }
        None => local_run(cli, &a.name)?,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        for j in &jobs {
            println!(
                "{}  {:<24} {:<11} {}",
                j["id"].as_str().unwrap_or_default(),
                j["target"].as_str().unwrap_or_default(),
                j["status"].as_str().unwrap_or_default(),
                j["result"]["id"]
                    .as_str()
                    .or(j["error"].as_str())
                    .unwrap_or_default()
            );
        }
    }
    let failed = jobs
        .iter()
        .filter(|j| crate::client::ended(j) && j["status"] != "succeeded")
        .count();
    if failed > 0 {
        bail!("{failed} of {} job(s) did not succeed", jobs.len());
    }
    Ok(())
}

/// Runs the policy here, through a queue of this process, and waits for
/// its jobs and its retention; the jobs as they ended.
fn local_run(cli: &Cli, name: &str) -> anyhow::Result<Vec<Value>> {
    let ctx = super::context(cli)?;
    let db = ctx.db()?;
    let p = db
        .policy(name)?
        .with_context(|| format!("no policy {name:?} (attache policy list)"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let queue = std::sync::Arc::new(Queue::standalone(ctx, db)?);
        let q = queue.clone();
        let mut run = tokio::task::spawn_blocking(move || {
            q.run_policy(&p, &crate::access::Principal::local())
        })
        .await?
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        for u in &run.unreachable {
            eprintln!("attache: hypervisor {} unreachable: {}", u.0, u.1);
        }
        if let Some(done) = run.done.take() {
            done.await?;
        }
        let mut out = Vec::new();
        for j in &run.jobs {
            let v = queue
                .view(&j.id)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?
                .with_context(|| format!("job {} is gone", j.id))?;
            out.push(serde_json::to_value(v)?);
        }
        Ok(out)
    })
}
