//! Everything wsctl writes to the terminal goes through here: results on stdout (text or
//! JSON), progress and notes on stderr, a progress bar only on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::plan::{Action, Change};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    /// -1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    pub progress: bool,
}

impl Printer {
    pub fn new(format: Format, verbose: u8, quiet: bool, no_progress: bool) -> Printer {
        let verbosity = if quiet { -1 } else { verbose.min(3) as i8 };
        let progress = !no_progress && !quiet && std::io::stderr().is_terminal();
        Printer {
            format,
            verbosity,
            progress,
        }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// A note for a person (stderr), silenced by `-q`.
    pub fn note(&self, text: impl AsRef<str>) {
        if self.verbosity >= 0 {
            eprintln!("{}", text.as_ref());
        }
    }

    /// The command's result (stdout).
    pub fn result(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }

    pub fn result_json(&self, value: &serde_json::Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }

    /// A result as one JSON line: a log line (`gc` from cron), or one a script reads before
    /// anything else follows (`wsctl dev` is up).
    pub fn result_line(&self, value: &serde_json::Value) {
        println!("{value}");
    }

    /// A counter of work with no known total (a terminal only): `{pos} {unit}, {msg}`.
    pub fn counter(&self, unit: &str) -> Option<ProgressBar> {
        self.progress.then(|| {
            let bar = ProgressBar::new_spinner();
            let template = format!("{{spinner}} {{pos}} {unit}, {{msg}} {{elapsed}}");
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    pub fn reporter(&self, total: usize) -> Reporter {
        let bar = (self.progress && total > 0).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Reporter {
            bar,
            lines: !self.progress && self.verbosity >= 0,
        }
    }
}

/// Progress of an apply; shared by the changes running in parallel.
pub struct Reporter {
    bar: Option<ProgressBar>,
    lines: bool,
}

/// (to do, doing, done)
fn verb(action: &Action) -> (&'static str, &'static str, &'static str) {
    match action {
        Action::Create => ("create", "creating", "created"),
        Action::Update(_) => ("update", "updating", "updated"),
        Action::Replace(_) => ("replace", "replacing", "replaced"),
        Action::Delete => ("delete", "deleting", "deleted"),
    }
}

impl Reporter {
    pub fn begin(&self, change: &Change) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} {}", verb(&change.action).1, change.id));
        }
    }

    pub fn end(&self, change: &Change, ok: bool, elapsed: Duration) {
        let (todo, _, done) = verb(&change.action);
        let line = if ok {
            format!(
                "{:>3} {done} {} ({:.1} s)",
                change.action.symbol(),
                change.id,
                elapsed.as_secs_f64()
            )
        } else {
            format!("  ! failed to {todo} {}", change.id)
        };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.println(line);
            }
            None if self.lines => eprintln!("{line}"),
            None => {}
        }
    }

    /// A note while changes run (above the bar, if there is one); silenced by `-q`.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.lines => eprintln!("{text}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
