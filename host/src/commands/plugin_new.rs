//! `attache plugin new NAME`: writes a plugin crate that builds on its own,
//! outside this repository, with `cargo build --release --target
//! wasm32-wasip2`: the template in `plugins/template/` (a key-value store
//! plugin to edit), a copy of the plugin SDK in `sdk/`, and the contract's
//! WIT in `sdk/wit/`. Everything is embedded in the binary at build time.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The template's files, as (path in the new crate, text with
/// `{{name}}` and `{{crate}}` placeholders).
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../plugins/template/Cargo.toml"),
    ),
    (
        "README.md",
        include_str!("../../../plugins/template/README.md"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../plugins/template/src/lib.rs"),
    ),
];

/// The SDK's sources, copied as they are.
const SDK: &[(&str, &str)] = &[
    (
        "sdk/README.md",
        include_str!("../../../plugins/sdk/README.md"),
    ),
    (
        "sdk/src/bindings.rs",
        include_str!("../../../plugins/sdk/src/bindings.rs"),
    ),
    (
        "sdk/src/catalog.rs",
        include_str!("../../../plugins/sdk/src/catalog.rs"),
    ),
    (
        "sdk/src/error.rs",
        include_str!("../../../plugins/sdk/src/error.rs"),
    ),
    (
        "sdk/src/host.rs",
        include_str!("../../../plugins/sdk/src/host.rs"),
    ),
    (
        "sdk/src/ids.rs",
        include_str!("../../../plugins/sdk/src/ids.rs"),
    ),
    (
        "sdk/src/info.rs",
        include_str!("../../../plugins/sdk/src/info.rs"),
    ),
    (
        "sdk/src/item.rs",
        include_str!("../../../plugins/sdk/src/item.rs"),
    ),
    (
        "sdk/src/lib.rs",
        include_str!("../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "sdk/src/meta.rs",
        include_str!("../../../plugins/sdk/src/meta.rs"),
    ),
    (
        "sdk/src/mock.rs",
        include_str!("../../../plugins/sdk/src/mock.rs"),
    ),
    (
        "sdk/src/options.rs",
        include_str!("../../../plugins/sdk/src/options.rs"),
    ),
    (
        "sdk/src/plan.rs",
        include_str!("../../../plugins/sdk/src/plan.rs"),
    ),
    (
        "sdk/src/plugin.rs",
        include_str!("../../../plugins/sdk/src/plugin.rs"),
    ),
    (
        "sdk/src/preopens.rs",
        include_str!("../../../plugins/sdk/src/preopens.rs"),
    ),
    (
        "sdk/src/sink.rs",
        include_str!("../../../plugins/sdk/src/sink.rs"),
    ),
    (
        "sdk/src/source.rs",
        include_str!("../../../plugins/sdk/src/source.rs"),
    ),
    (
        "sdk/src/summary.rs",
        include_str!("../../../plugins/sdk/src/summary.rs"),
    ),
    (
        "sdk/src/time.rs",
        include_str!("../../../plugins/sdk/src/time.rs"),
    ),
    (
        "sdk/wit/attache.wit",
        include_str!("../../../wit/0.2.0/attache.wit"),
    ),
    (
        "sdk/wit/deps/cli/cli.wit",
        include_str!("../../../wit/deps/cli/cli.wit"),
    ),
    (
        "sdk/wit/deps/clocks/clocks.wit",
        include_str!("../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "sdk/wit/deps/filesystem/filesystem.wit",
        include_str!("../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "sdk/wit/deps/io/io.wit",
        include_str!("../../../wit/deps/io/io.wit"),
    ),
    (
        "sdk/wit/deps/random/random.wit",
        include_str!("../../../wit/deps/random/random.wit"),
    ),
    (
        "sdk/wit/deps/sockets/sockets.wit",
        include_str!("../../../wit/deps/sockets/sockets.wit"),
    ),
];

/// The SDK's manifest outside the workspace: no inherited fields.
const SDK_MANIFEST: &str = r#"[package]
name = "attache-plugin-sdk"
version = "0.2.0"
edition = "2021"
license = "Apache-2.0"
description = "Writing Attaché plugins: the 0.2.0 contract's bindings, builders, typed errors, helpers and a mock host for native tests"

[dependencies]
wit-bindgen = "0.61"
"#;

/// Checks a plugin name: lowercase ASCII letters, digits, `-` and `_`,
/// starting with a letter.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() || !ok_chars || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    Ok(())
}

/// Writes a new plugin crate named `name` into `dir/name` (which must not
/// exist yet) and returns that directory.
pub(crate) fn write_crate(name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} exists already; choose another name or --dir",
            root.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let files = TEMPLATE
        .iter()
        .map(|(path, text)| {
            (
                *path,
                text.replace("{{name}}", name)
                    .replace("{{crate}}", &crate_name),
            )
        })
        .chain(SDK.iter().map(|(path, text)| (*path, (*text).to_owned())))
        .chain(std::iter::once(("sdk/Cargo.toml", SDK_MANIFEST.to_owned())));
    for (path, text) in files {
        let out = root.join(path);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_complete_crate() {
        let tmp = tempfile::tempdir().unwrap();
        let root = write_crate("my-kv", tmp.path()).unwrap();
        for f in [
            "Cargo.toml",
            "src/lib.rs",
            "README.md",
            "sdk/Cargo.toml",
            "sdk/src/mock.rs",
            "sdk/wit/attache.wit",
            "sdk/wit/deps/io/io.wit",
        ] {
            assert!(root.join(f).is_file(), "{f} missing");
        }
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-kv\"") && manifest.contains("[workspace]"));
        assert!(!std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("{{"));
        assert!(!std::fs::read_to_string(root.join("sdk/Cargo.toml"))
            .unwrap()
            .contains("workspace"));
        assert!(write_crate("my-kv", tmp.path()).is_err());
        for bad in ["", "My", "a b", "../x", "1x", "x/y"] {
            assert!(write_crate(bad, tmp.path()).is_err(), "{bad:?}");
        }
    }
}
