//! Everything wsctl writes to the terminal goes through here: results on stdout (text or
//! JSON), progress and notes on stderr, a progress bar only on a terminal.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::engine::plan::{Action, Change};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// A command's result: one value that is its JSON (`Serialize`) and its text (`Display`).
/// The command returns it; the printer picks the form `--output` asked for.
pub trait Report: Serialize + Display {}

impl<T: Serialize + Display> Report for T {}

/// The JSON of a result as wsctl prints it: keys sorted (each object goes through a
/// `serde_json::Value`, whose maps are ordered by key), two-space indent.
pub fn pretty(report: &impl Serialize) -> String {
    serde_json::to_value(report)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default()
}

fn compact(report: &impl Serialize) -> String {
    serde_json::to_value(report)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Both forms of a result, as `--output json` and the default print them: what tests pin.
#[cfg(test)]
pub fn forms(report: &impl Report) -> (String, String) {
    (pretty(report), report.to_string())
}

/// Both forms of a stream's line, as [`Printer::line`] prints them.
#[cfg(test)]
pub fn line_forms(report: &impl Report) -> (String, String) {
    (compact(report), report.to_string())
}

/// A document printed as JSON in either form: the deployer policy, the config's schema.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Document(pub serde_json::Value);

impl Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&pretty(&self.0))
    }
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

    /// The command's answer (stdout): its text, or its JSON pretty-printed.
    pub fn show(&self, report: &impl Report) {
        match self.format {
            Format::Text => {
                let text = report.to_string();
                if !text.is_empty() {
                    println!("{text}");
                }
            }
            Format::Json => println!("{}", pretty(report)),
        }
    }

    /// One line of a stream (stdout, flushed): `tail`'s events, `gc`'s log line for cron,
    /// `wsctl dev`'s "up" line a script reads before the logs start. JSON on one line.
    pub fn line(&self, report: &impl Report) {
        let mut out = std::io::stdout().lock();
        let _ = match self.format {
            Format::Text => writeln!(out, "{report}"),
            Format::Json => writeln!(out, "{}", compact(report)),
        };
        let _ = out.flush();
    }

    /// What a peer sent, as it sent it, whatever the form: `wsctl connect`'s frames.
    pub fn verbatim(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// A note for a person (stderr), silenced by `-q`.
    pub fn note(&self, text: impl AsRef<str>) {
        if self.verbosity >= 0 {
            eprintln!("{}", text.as_ref());
        }
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
