//! `attache restore SNAPSHOT [--item ID…] --to local[:DIR]`

use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};

use crate::cli::{Cli, RestoreArgs};
use crate::repo::{is_at_or_below, write_restore_stream};
use crate::store::lock::Lock;
use crate::target::{self, RestoreTo};

pub fn run(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<()> {
    let to = target::restore_to(&a.to)?;
    let repo = super::repository(cli, false)?;
    let snap = repo.find_snapshot(&a.snapshot)?;
    // Shared: prune waits until the restore has read what it needs.
    let _lock = Lock::acquire(repo.store.root(), false, "restore")?;
    let all = repo.catalog.items(&snap.id, None)?;
    for want in &a.item {
        if !all.iter().any(|i| is_at_or_below(&i.record.id, want)) {
            bail!("snapshot {} has no item {want:?}", snap.short_id());
        }
    }
    let selected: Vec<_> = all
        .iter()
        .filter(|i| a.item.is_empty() || a.item.iter().any(|w| is_at_or_below(&i.record.id, w)))
        .cloned()
        .collect();
    let dir: PathBuf = match &to {
        RestoreTo::LocalOriginal => "/".into(),
        RestoreTo::LocalDir(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            std::path::absolute(d)?
        }
    };

    let runner = super::local_runner(cli)?;
    let mut cmd = runner.command();
    cmd.args(["restore", "--plugin", &snap.plugin, "--input", "-"])
        .arg("--target")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if a.overwrite {
        cmd.arg("--overwrite");
    }
    let mut child = cmd.spawn().context("cannot start the runner")?;
    let mut stdout = child.stdout.take().context("runner has no stdout")?;
    let report = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let stdin = child.stdin.take().context("runner has no stdin")?;
    let sent = write_restore_stream(
        &repo.store,
        &snap,
        &all,
        &selected,
        BufWriter::with_capacity(1 << 20, stdin),
    );
    let status = child.wait()?;
    let report = report
        .join()
        .map_err(|_| anyhow::anyhow!("report reader panicked"))??;
    if a.json {
        print!("{report}");
    } else if !status.success() {
        eprint!("{report}");
    }
    if let Ok(sent) = &sent {
        for (id, why) in &sent.failed {
            eprintln!("not restored: {id}: {why}");
        }
    }
    if !status.success() {
        bail!("restore failed: the runner exited with {status}");
    }
    let sent = sent.context("sending the restore stream")?;
    if !sent.failed.is_empty() {
        bail!(
            "{} item(s) could not be restored from damaged data; the others were",
            sent.failed.len()
        );
    }
    if !a.json {
        println!(
            "restored {} item(s) of snapshot {} to {}",
            sent.items,
            snap.short_id(),
            dir.display()
        );
    }
    Ok(())
}
