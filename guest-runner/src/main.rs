//! `guest-runner`: runs one Attaché plugin in a wasmtime sandbox, inside the
//! guest, and writes or reads the backup stream.
//!
//! It finds the container it was started from (its own directory, holding
//! `manifest.json` and `plugins/`), verifies the plugin against the manifest,
//! and grants it only what the command line lists.

mod commands;
mod io;
mod options;

use std::process::ExitCode;

use clap::Parser;

use options::{Cli, Command};

/// mimalloc, not musl's allocator (see Cargo.toml): a restore allocates a
/// buffer per message or chunk, and musl maps and unmaps each large one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    guest_runner::logging::init(&cli.log);
    let result = match &cli.command {
        Command::Info(a) => commands::info::run(&cli, a),
        Command::Discover(a) => commands::discover::run(&cli, a),
        Command::Plan(a) => commands::plan::run(&cli, a),
        Command::Backup(a) => commands::backup::run(&cli, a),
        Command::Restore(a) => commands::restore::run(&cli, a),
        Command::Precompile(a) => commands::precompile::run(&cli, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest-runner: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit status says what kind of failure it was, for callers that act
/// on it (`attache plugin test`): 2 the job was refused before the plugin
/// ran (policy, options, contract version, signatures and trust); 3 the
/// plugin returned an error; 4 the plugin was stopped (trap, memory limit,
/// deadline); 1 anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    use guest_runner::runtime::RunnerError as E;
    match e.downcast_ref::<E>() {
        Some(E::Policy(_) | E::Options { .. } | E::Contract { .. } | E::Capability { .. }) => 2,
        Some(E::Plugin { .. }) => 3,
        Some(
            E::Trap { .. }
            | E::MemoryLimit { .. }
            | E::Deadline { .. }
            | E::QuiesceTimeout { .. }
            | E::Poisoned { .. },
        ) => 4,
        _ if e
            .downcast_ref::<guest_runner::policy::PolicyError>()
            .is_some() =>
        {
            2
        }
        _ if e
            .downcast_ref::<guest_runner::trust::TrustError>()
            .is_some_and(|t| t.is_signature_refusal()) =>
        {
            2
        }
        _ => 1,
    }
}
