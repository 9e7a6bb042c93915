//! Progress of long commands: a live bar on a terminal, plain lines when
//! stderr is a file or a pipe (so logs stay readable).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::jobs::Progress;

pub(crate) enum Display {
    Bar(ProgressBar),
    Lines { what: String, last: Mutex<Instant> },
}

impl Display {
    pub(crate) fn new(what: &str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar(bar)
        } else {
            Display::Lines {
                what: what.to_owned(),
                last: Mutex::new(Instant::now()),
            }
        }
    }

    pub(crate) fn update(&self, p: &Progress) {
        match self {
            Display::Bar(b) => b.set_message(format!("{} items, {}", p.items, HumanBytes(p.bytes))),
            Display::Lines { what, last } => {
                let Ok(mut last) = last.lock() else { return };
                if last.elapsed() >= Duration::from_secs(2) {
                    eprintln!("{what}: {} items, {}", p.items, HumanBytes(p.bytes));
                    *last = Instant::now();
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Display::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}
