//! `attache restore SNAPSHOT [--item ID…] --to local[:DIR]`

use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};

use crate::cli::{Cli, RestoreArgs};
use crate::repo::{write_restore_stream, Repository};
use crate::target::{self, RestoreTo};

pub fn run(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<()> {
    let to = target::restore_to(&a.to)?;
    let repo = Repository::open(&cli.repo, false)?;
    let snap = repo.find(&a.snapshot)?;
    let all = repo.items(&snap)?;
    for want in &a.item {
        if !all.iter().any(|i| i.is_at_or_below(want)) {
            bail!("snapshot {} has no item {want:?}", snap.short_id());
        }
    }
    let selected: Vec<_> = all
        .iter()
        .filter(|i| a.item.is_empty() || a.item.iter().any(|w| i.is_at_or_below(w)))
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
        &repo,
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
    }
    if !status.success() {
        if !a.json {
            eprint!("{report}");
        }
        bail!("restore failed: the runner exited with {status}");
    }
    let items = sent.context("sending the restore stream")?;
    if !a.json {
        println!(
            "restored {items} item(s) of snapshot {} to {}",
            snap.short_id(),
            dir.display()
        );
    }
    Ok(())
}
