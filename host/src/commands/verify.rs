//! `attache verify [--read-data]`

use crate::cli::{Cli, VerifyArgs};
use crate::repo::verify::verify;
use crate::store::lock::Lock;

pub(crate) fn run(cli: &Cli, a: &VerifyArgs) -> anyhow::Result<()> {
    super::local_only(cli, "verify")?;
    let repo = super::repository(cli, false)?;
    let _lock = Lock::acquire(&repo.store, false, "verify")?;
    let r = verify(&repo, a.read_data)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "checked {} snapshot(s), {} pack(s){}",
            r.snapshots,
            r.packs,
            if a.read_data {
                format!(", {} chunk(s) read and verified", r.blobs_checked)
            } else {
                String::new()
            }
        );
        for e in &r.errors {
            println!("error: {e}");
        }
        for (b, why) in &r.bad_blobs {
            println!("damaged chunk {}: {why}", &b[..16]);
        }
        for (snap, items) in &r.affected {
            println!("snapshot {} is affected:", &snap[..8]);
            for i in items {
                println!("  {i}");
            }
        }
    }
    anyhow::ensure!(
        r.is_clean(),
        "the repository has {} error(s) and {} damaged chunk(s)",
        r.errors.len(),
        r.bad_blobs.len()
    );
    if !a.json {
        println!("no errors found");
    }
    Ok(())
}
