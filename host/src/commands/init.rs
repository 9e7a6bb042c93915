//! `attache init [--no-encryption]`

use crate::cli::{Cli, InitArgs};
use crate::repo::Password;
use crate::store::Store;

pub(crate) fn run(cli: &Cli, a: &InitArgs) -> anyhow::Result<()> {
    super::local_only(cli, "init")?;
    let password = Password {
        file: cli.password_file.clone(),
    }
    .get()?;
    let password = match (password, a.no_encryption) {
        (Some(_), true) => anyhow::bail!("--no-encryption and a password exclude each other"),
        (None, false) => anyhow::bail!(
            "set ATTACHE_PASSWORD or pass --password-file (or ask for --no-encryption)"
        ),
        (p, _) => p,
    };
    let store = Store::init(&cli.repo, password.as_deref())?;
    println!(
        "created {} repository {} at {}",
        if password.is_some() {
            "an encrypted"
        } else {
            "an UNENCRYPTED"
        },
        store.config.id,
        cli.repo.display()
    );
    Ok(())
}
