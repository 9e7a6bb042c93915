//! `attache plugin new|info`: for plugin authors. (`plugin test` is in
//! `plugin_test.rs`; the template in `plugin_new.rs`.)

use anyhow::Context as _;

use crate::cli::{Cli, PluginNewArgs};

pub(crate) fn new(a: &PluginNewArgs) -> anyhow::Result<()> {
    let dir = super::plugin_new::write_crate(&a.name, &a.dir)?;
    println!("{}", dir.display());
    eprintln!(
        "next: cd {} && cargo build --release --target wasm32-wasip2, then \
         `attache plugin test target/wasm32-wasip2/release/*.wasm` (see its README.md)",
        dir.display()
    );
    Ok(())
}

/// Prints `guest-runner info` of the agent container: each plugin's
/// version, contract version and options.
pub(crate) fn info(cli: &Cli) -> anyhow::Result<()> {
    let ctx = super::context(cli)?;
    let out = ctx
        .runner()?
        .command()
        .args(crate::jobs::plugin::trust_args(&ctx.trust))
        .arg("info")
        .stdout(std::process::Stdio::piped())
        .output()
        .context("cannot run the agent's guest-runner")?;
    if !out.status.success() {
        anyhow::bail!("{}", crate::jobs::plugin::runner_error(&out.stderr));
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
