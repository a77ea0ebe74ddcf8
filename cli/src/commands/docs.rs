//! `wsctl docs [COMMAND]`: the path of the built user's guide, or of one command's page in it;
//! `--open` opens it. A book not yet built is built first when mdBook is on the PATH.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use serde::Serialize;

use crate::args::{Cli, DocsArgs};
use crate::book;
use crate::error::Error;
use crate::output::Printer;

/// The mdBook release the book is built and checked with.
pub const MDBOOK: &str = "0.5.4";

#[derive(Debug, Serialize)]
pub struct Page {
    pub path: PathBuf,
    pub opened: bool,
}

impl fmt::Display for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

pub fn run(args: &DocsArgs, printer: &Printer) -> Result<Page, Error> {
    let words: Vec<&str> = args.command.iter().map(String::as_str).collect();
    known_command(&words)?;
    let docs = book::docs_dir();
    let built = book::built_dir(&docs);
    if !built.join("index.html").is_file() {
        build(&docs, printer)?;
    } else if book::stale(&docs) {
        // A checkout that moved on since the book was built: rebuild when mdBook is here,
        // else show the older pages and say so.
        if let Err(e) = build(&docs, printer) {
            printer.note(format!(
                "the book in {} is older than its sources, and rebuilding it failed: {e}",
                built.display()
            ));
        }
    }
    let path = built.join(format!("{}.html", book::page(&words)));
    if !path.is_file() {
        return Err(Error::Docs(format!(
            "the book at {} has no page {}: it was built from an older checkout\nhint: rebuild it with `mdbook build {}`",
            built.display(),
            path.display(),
            docs.display()
        )));
    }
    let path = path.canonicalize().unwrap_or(path);
    if args.open {
        open(&path)?;
    }
    Ok(Page {
        path,
        opened: args.open,
    })
}

/// The words must name a command (`secret rotate`), so a typo is an error rather than a
/// page that does not exist.
fn known_command(words: &[&str]) -> Result<(), Error> {
    let mut command = Cli::command();
    for (i, word) in words.iter().enumerate() {
        let Some(sub) = command.find_subcommand(word).cloned() else {
            let path = words[..i].join(" ");
            let choices: Vec<_> = command
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .filter(|n| n != "help")
                .collect();
            return Err(Error::Usage {
                usage: format!(
                    "`wsctl{}{path} {word}` is not a command\nhint: one of: {}",
                    if path.is_empty() { "" } else { " " },
                    choices.join(", ")
                ),
            });
        };
        command = sub;
    }
    if command.has_subcommands() && !words.is_empty() {
        let subs: Vec<_> = command
            .get_subcommands()
            .map(|c| format!("{} {}", words.join(" "), c.get_name()))
            .collect();
        return Err(Error::Usage {
            usage: format!(
                "`{}` has pages per subcommand\nhint: name one: {}",
                words.join(" "),
                subs.join(", ")
            ),
        });
    }
    Ok(())
}

fn build(docs: &Path, printer: &Printer) -> Result<(), Error> {
    if !docs.join("book.toml").is_file() {
        return Err(Error::Docs(format!(
            "the book's sources are not at {}: this wsctl was not installed from a checkout it can find (one from crates.io, or a moved clone)\nhint: set WSCTL_DOCS to the `docs` folder of a wsctl checkout, or read docs/src in wsctl's repository",
            docs.display()
        )));
    }
    printer.note(format!("building the book in {}", docs.display()));
    let out = Command::new("mdbook")
        .arg("build")
        .arg(docs)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(Error::Docs(format!(
            "mdbook build {} failed:\n{}",
            docs.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Docs(format!(
            "mdBook, which builds the book, is not installed\nhint: `cargo install mdbook --version {MDBOOK} --locked`, then run this again; or read the Markdown under {}",
            docs.join("src").display()
        ))),
        Err(e) => Err(Error::Docs(format!("cannot run mdbook: {e}"))),
    }
}

/// `$BROWSER` first (what terminals and SSH sessions set; a browser it names keeps running, so
/// it is not waited for), then the desktop's opener, which returns once it has handed over.
fn open(path: &Path) -> Result<(), Error> {
    let url = book::url(path);
    let mut tried = Vec::new();
    if let Some(browser) = std::env::var("BROWSER").ok().filter(|b| !b.is_empty()) {
        match Command::new(&browser)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(_) => return Ok(()),
            Err(e) => tried.push(format!("{browser} ({e})")),
        }
    }
    let desktop = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match Command::new(desktop)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => tried.push(format!("{desktop} ({status})")),
        Err(e) => tried.push(format!("{desktop} ({e})")),
    }
    Err(Error::Docs(format!(
        "cannot open {url}: tried {}\nhint: open it in your browser, or set BROWSER to the browser's command",
        tried.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let page = Page {
            path: "/src/wsctl/docs/book/reference/commands/gc.html".into(),
            opened: false,
        };
        let (json, text) = crate::output::forms(&page);
        assert_eq!(
            json,
            "{\n  \"opened\": false,\n  \"path\": \"/src/wsctl/docs/book/reference/commands/gc.html\"\n}"
        );
        assert_eq!(text, "/src/wsctl/docs/book/reference/commands/gc.html");
    }

    #[test]
    fn only_a_command_names_a_page() {
        assert!(known_command(&[]).is_ok());
        assert!(known_command(&["deploy"]).is_ok());
        assert!(known_command(&["secret", "rotate"]).is_ok());
        let typo = known_command(&["deplyo"]).unwrap_err().to_string();
        assert!(typo.contains("`wsctl deplyo` is not a command"), "{typo}");
        assert!(typo.contains("deploy"), "{typo}");
        let group = known_command(&["secret"]).unwrap_err().to_string();
        assert!(group.contains("secret rotate"), "{group}");
    }
}
