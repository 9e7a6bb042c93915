//! `attache`: the Attaché backup server's command line.
//!
//! One file per command under `commands/`; the repository under `repo/`;
//! the agent container and local runs in `agent.rs`.

mod access;
mod agent;
mod audit;
mod cli;
mod client;
mod commands;
mod container;
mod hypervisor;
mod jobs;
mod progress;
mod repo;
mod server;
mod store;
mod target;

use std::process::ExitCode;

use clap::Parser;

use cli::{
    Cli, Command, ContainerCommand, HypervisorCommand, KeyCommand, PluginCommand, PolicyCommand,
    RepairCommand, TokenCommand, VmCommand,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        } => commands::policy::show(&cli, a),
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
