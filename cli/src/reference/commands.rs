//! A page per command, from the clap definitions: its summary, usage, arguments and options,
//! then the hand-written notes on what it does (`reference/notes/NAME.md`). The index lists
//! every command and the global options.

use clap::{Arg, Command, CommandFactory};

use super::{generated_note, markdown_text};
use crate::args::Cli;

const SOURCE: &str = "the command line's definitions (cli/src/args.rs)";

pub fn pages() -> Vec<(String, String)> {
    let mut root = Cli::command();
    root.build();
    let mut leaves = Vec::new();
    collect(&root, &mut Vec::new(), &mut leaves);
    let mut out = vec![(
        "reference/commands/index.md".to_string(),
        index(&root, &leaves),
    )];
    for (words, command) in &leaves {
        out.push((
            format!("reference/commands/{}.md", words.join("-")),
            page(words, command),
        ));
    }
    out
}

/// The commands that have a page: every one without subcommands of its own, in the order
/// `wsctl --help` lists them.
fn collect(command: &Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Command)>) {
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        path.push(sub.get_name().to_string());
        if sub.has_subcommands() {
            collect(sub, path, out);
        } else {
            out.push((path.clone(), sub.clone()));
        }
        path.pop();
    }
}

fn index(root: &Command, leaves: &[(Vec<String>, Command)]) -> String {
    let mut s = generated_note(SOURCE);
    s.push_str("\n# Commands\n\n");
    s.push_str(&about(root));
    s.push_str("\n\n```text\n");
    s.push_str(&usage(root));
    s.push_str("\n```\n\n| command | what it does |\n|---|---|\n");
    for (words, command) in leaves {
        s.push_str(&format!(
            "| [`wsctl {}`]({}.md) | {} |\n",
            words.join(" "),
            words.join("-"),
            cell(&markdown_text(&summary(command)))
        ));
    }
    s.push_str("\n## Global options\n\nEvery command takes these.\n\n");
    for arg in root.get_arguments().filter(|a| shown(a)) {
        s.push_str(&option(arg));
    }
    s.push_str("\n## Output, progress and configuration\n\n");
    s.push_str(&super::notes("reference/notes/index.md"));
    s
}

fn page(words: &[String], command: &Command) -> String {
    let name = words.join(" ");
    let mut s = generated_note(SOURCE);
    s.push_str(&format!("\n# wsctl {name}\n\n"));
    s.push_str(&about(command));
    s.push_str("\n\n```text\n");
    s.push_str(&usage(command));
    s.push_str("\n```\n");
    let positionals: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| shown(a) && a.is_positional())
        .collect();
    if !positionals.is_empty() {
        s.push_str("\n## Arguments\n\n");
        for arg in positionals {
            s.push_str(&option(arg));
        }
    }
    let options: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| shown(a) && !a.is_positional() && !a.is_global_set())
        .collect();
    if !options.is_empty() {
        s.push_str("\n## Options\n\n");
        for arg in options {
            s.push_str(&option(arg));
        }
    }
    s.push_str(
        "\nAnd the [global options](index.md#global-options): `--config`, `--profile`, `--region`, `--endpoint-url`, `--output`, …\n",
    );
    s.push_str("\n## What it does\n\n");
    s.push_str(&super::notes(&format!(
        "reference/notes/{}.md",
        words.join("-")
    )));
    s
}

fn shown(arg: &Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// The command's one-line summary (its doc comment's first paragraph).
fn summary(command: &Command) -> String {
    command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// The whole doc comment, as `wsctl CMD --help` shows it.
fn about(command: &Command) -> String {
    markdown_text(
        &command
            .get_long_about()
            .or_else(|| command.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default(),
    )
}

fn usage(command: &Command) -> String {
    command
        .clone()
        .render_usage()
        .to_string()
        .trim_end()
        .to_string()
}

/// One option as a list item: its spellings, what it does, its values, default and variable.
fn option(arg: &Arg) -> String {
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
        && !matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse | clap::ArgAction::Count
        );
    let value = arg
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let spelled = if arg.is_positional() {
        value.clone()
    } else if takes_value {
        format!("{} {value}", names.join(", "))
    } else {
        names.join(", ")
    };
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut facts = Vec::new();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if takes_value && !values.is_empty() {
        facts.push(format!("one of {}", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| format!("`{}`", d.to_string_lossy()))
        .collect();
    if takes_value && !defaults.is_empty() {
        facts.push(format!("default {}", defaults.join(" ")));
    }
    if let Some(env) = arg.get_env() {
        facts.push(format!("or the variable `{}`", env.to_string_lossy()));
    }
    if !arg.is_positional()
        && matches!(
            arg.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        )
    {
        facts.push("repeatable".into());
    }
    let mut item = format!("- **`{spelled}`**");
    let text = indent(&markdown_text(&help));
    if !text.is_empty() {
        item.push_str(": ");
        item.push_str(&text);
    }
    if !facts.is_empty() {
        item.push_str(&format!(" *{}*", facts.join("; ")));
    }
    item.push('\n');
    item
}

/// Later paragraphs of a multi-paragraph help stay inside the list item.
fn indent(text: &str) -> String {
    text.trim()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.is_empty() {
                l.to_string()
            } else {
                format!("  {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_shows_every_flag_its_values_and_default() {
        let pages = pages();
        let deploy = &pages
            .iter()
            .find(|(p, _)| p == "reference/commands/deploy.md")
            .unwrap()
            .1;
        assert!(deploy.contains("# wsctl deploy"), "{deploy}");
        assert!(deploy.contains("Usage: wsctl deploy"), "{deploy}");
        assert!(deploy.contains("**`--print-policy`**"), "{deploy}");
        assert!(deploy.contains("**`--arch <ARCH>`**"), "{deploy}");
        assert!(deploy.contains("`arm64`"), "{deploy}");
        let notes = super::super::notes("reference/notes/deploy.md");
        assert!(
            deploy.ends_with(&format!("## What it does\n\n{notes}")),
            "{deploy}"
        );
        // Global options are on the index only.
        assert!(!deploy.contains("**`-c, --config"), "{deploy}");
        let index = &pages[0].1;
        assert!(index.contains("**`-c, --config <CONFIG>`**"), "{index}");
        assert!(index.contains("`WSCTL_CONFIG`"), "{index}");
        assert!(
            index.contains("[`wsctl secret rotate`](secret-rotate.md)"),
            "{index}"
        );
        assert!(
            pages
                .iter()
                .any(|(p, _)| p == "reference/commands/secret-rotate.md")
        );
    }
}
