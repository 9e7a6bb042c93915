//! `attache`: the Attaché backup server's command line. Everything is in
//! the library (`lib.rs`); this only runs it.

fn main() -> std::process::ExitCode {
    attache::run()
}
