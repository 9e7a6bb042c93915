//! `attache`: the Attaché backup server and command line, as a library.
//!
//! The binary (`main.rs`) only calls [`run`]. Everything else is
//! `pub(crate)` but a small, deliberate face: [`repository`], which opens
//! an existing repository in-process (for tests and tools) to list its
//! snapshots, read their items and verify it.
//!
//! One file per command under `commands/`; the store under `store/` and the
//! repository (store plus catalog) under `repo/`; the agent container and
//! local runs in `agent.rs`.

mod access;
mod agent;
mod audit;
mod cli;
mod client;
mod commands;
mod container;
mod db;
mod fleet;
mod hypervisor;
mod jobs;
mod mmap_threshold;
mod progress;
mod repo;
pub mod repository;
mod server;
mod store;
mod target;

use std::process::ExitCode;

use clap::Parser;

use cli::{
    Cli, Command, ContainerCommand, HypervisorCommand, KeyCommand, PluginCommand, PolicyCommand,
    RepairCommand, TokenCommand, VmCommand,
};

/// Runs the `attache` command line on the process's arguments and
/// environment, as the `attache` binary does: parses them (printing usage
/// and exiting on bad ones), runs the command and reports its error on
/// stderr. A reader that went away (`attache ls | head`) is success.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    mmap_threshold::hold(matches!(
        cli.command,
        Command::Backup(_) | Command::Serve(_)
    ));
    store::backend::s3::configure(store::backend::s3::Settings {
        endpoint: cli.s3_endpoint.clone(),
        region: cli.s3_region.clone(),
    });
    guest_runner::logging::init("warn");
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(&cli, a),
        Command::Find(a) => commands::find::run(&cli, a),
        Command::Verify(a) => commands::verify::run(&cli, a),
        Command::Forget(a) => commands::forget::run(&cli, a),
        Command::Prune => commands::prune::run(&cli),
        Command::Repair {
            command: RepairCommand::Index(a),
        } => commands::repair::index(&cli, a),
        Command::Repair {
            command: RepairCommand::Snapshots(a),
        } => commands::repair::snapshots(&cli, a),
        Command::Serve(a) => commands::serve::run(&cli, a),
        Command::Backup(a) => commands::backup::run(&cli, a),
        Command::Discover(a) => commands::discover::run(&cli, a),
        Command::Snapshots(a) => commands::snapshots::run(&cli, a),
        Command::Ls(a) => commands::ls::run(&cli, a),
        Command::Restore(a) => commands::restore::run(&cli, a),
        Command::Container {
            command: ContainerCommand::Assemble(a),
        } => commands::container::assemble_command(a),
        Command::Container {
            command: ContainerCommand::Build(a),
        } => commands::container::build(&cli, a),
        Command::Container {
            command: ContainerCommand::Sign(a),
        } => commands::container::sign(&cli, a),
        Command::Key {
            command: KeyCommand::Generate(a),
        } => commands::key::generate(a),
        Command::Hypervisor {
            command: HypervisorCommand::Add(a),
        } => commands::hypervisor::add(&cli, a),
        Command::Hypervisor {
            command: HypervisorCommand::List(a),
        } => commands::hypervisor::list(&cli, a),
        Command::Vm {
            command: VmCommand::List(a),
        } => commands::vm::list(&cli, a),
        Command::Policy {
            command: PolicyCommand::Show(a),
        } => match &a.name {
            None => commands::policy::show(&cli, a),
            Some(name) => commands::fleet::show(&cli, name, a.json),
        },
        Command::Policy {
            command: PolicyCommand::Add(a),
        } => commands::fleet::add(&cli, a),
        Command::Policy {
            command: PolicyCommand::List(a),
        } => commands::fleet::list(&cli, a),
        Command::Policy {
            command: PolicyCommand::Remove(a),
        } => commands::fleet::remove(&cli, a),
        Command::Policy {
            command: PolicyCommand::Run(a),
        } => commands::fleet::run(&cli, a),
        Command::Jobs(a) => commands::jobs::run(&cli, a),
        Command::Vm {
            command: VmCommand::Tag(a),
        } => commands::vm::tag(&cli, a, true),
        Command::Vm {
            command: VmCommand::Untag(a),
        } => commands::vm::tag(&cli, a, false),
        Command::Token {
            command: TokenCommand::Create(a),
        } => commands::token::create(&cli, a),
        Command::Token {
            command: TokenCommand::List(a),
        } => commands::token::list(&cli, a),
        Command::Token {
            command: TokenCommand::Revoke(a),
        } => commands::token::revoke(&cli, a),
        Command::Audit(a) => commands::audit::run(&cli, a),
        Command::Plugin {
            command: PluginCommand::New(a),
        } => commands::plugin::new(a),
        Command::Plugin {
            command: PluginCommand::Info,
        } => commands::plugin::info(&cli),
        Command::Plugin {
            command: PluginCommand::Test(a),
        } => commands::plugin_test::run(&cli, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`attache ls | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("attache: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
