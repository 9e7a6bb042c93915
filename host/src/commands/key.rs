//! `attache key generate`: a publisher's Ed25519 key pair, for signing
//! containers (`container sign`, `container build --sign`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use guest_runner::trust::key::PrivateKey;

use crate::cli::KeyGenerateArgs;

/// Writes `DIR/NAME.key` (0600) and `DIR/NAME.pub`, refusing to replace
/// either; prints the key id and a trust file entry.
pub(crate) fn generate(a: &KeyGenerateArgs) -> anyhow::Result<()> {
    guest_runner::manifest::check_name(&a.name).map_err(|_| {
        anyhow::anyhow!(
            "invalid key name {:?}: use lowercase letters, digits, '-' and '_'",
            a.name
        )
    })?;
    fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let private = a.out.join(format!("{}.key", a.name));
    let public = a.out.join(format!("{}.pub", a.name));
    for p in [&private, &public] {
        anyhow::ensure!(
            !p.exists(),
            "{} exists: a key is never replaced (remove it yourself, or pick another --name)",
            p.display()
        );
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let key = PrivateKey::from_seed(&seed);
    write_new(&private, key.file_text().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, key.public().file_text().as_bytes(), 0o644) {
        let _ = fs::remove_file(&private);
        return Err(e);
    }
    let p = key.public();
    println!(
        "key {} written to {} and {}",
        p.id(),
        private.display(),
        public.display()
    );
    println!("\ntrust file entry (say what it may sign):\n");
    println!(
        "[[publisher]]\nname = {:?}\nkey = \"{p}\"\nrunner = false\nplugins = []",
        a.name
    );
    Ok(())
}

/// Creates `path` (failing if it exists) with `mode` from the start, and
/// syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
