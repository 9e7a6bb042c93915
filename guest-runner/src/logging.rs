//! The one logging set-up of both binaries (`attache` and `guest-runner`):
//! `tracing` lines on stderr, filtered by `ATTACHE_LOG` (an `EnvFilter`
//! directive such as `info` or `guest_runner=trace`) or else the binary's
//! default, in colour only for a person at a terminal (the server captures
//! and quotes the runner's output).

use std::io::IsTerminal;

/// Installs the subscriber; `default` is the filter when `ATTACHE_LOG` is
/// unset or invalid.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATTACHE_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}
