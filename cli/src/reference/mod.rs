//! The book's reference pages that are generated from the code, so they cannot drift from it:
//! every command and flag from the clap definitions, every `wsctl.yaml` key from the JSON
//! Schema, and the IAM policies from the code that prints them. A test compares each page with
//! the committed one; `WSCTL_UPDATE_DOCS=1 cargo test -p wsctl reference` writes them.

mod commands;
mod config;
mod permissions;

use std::path::{Path, PathBuf};

/// The book's source folder.
fn book_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src")
}

/// Every generated file: its path under the book's source folder, and its text.
fn pages() -> Vec<(String, String)> {
    let mut out = commands::pages();
    out.push(("reference/config.md".into(), config::page()));
    out.extend(permissions::pages());
    out
}

/// A hand-written part of a generated page, copied in (rather than an mdBook include) so the
/// page reads whole where Markdown is shown as it is, as on a code host.
fn notes(path: &str) -> String {
    let file = book_src().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write what the page should say there",
            file.display()
        )
    })
}

/// The line a generated Markdown page starts with.
fn generated_note(source: &str) -> String {
    format!(
        "<!-- Generated from {source} by `WSCTL_UPDATE_DOCS=1 cargo test -p wsctl reference`; edit that, not this file. -->\n"
    )
}

/// Help text as Markdown: a `<` outside a code span is text, not the start of an HTML tag.
fn markdown_text(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.replace('<', "&lt;").replace('>', "&gt;")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angle_brackets_outside_code_are_escaped() {
        assert_eq!(
            markdown_text("AWS_ENDPOINT_URL_<SERVICE> and `<ARCH>`"),
            "AWS_ENDPOINT_URL_&lt;SERVICE&gt; and `<ARCH>`"
        );
    }

    #[test]
    fn reference_pages_match_the_code() {
        let update = std::env::var_os("WSCTL_UPDATE_DOCS").is_some();
        let src = book_src();
        let mut stale = Vec::new();
        let generated = pages();
        for (path, text) in &generated {
            let file = src.join(path);
            if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            if update {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, text).unwrap();
            } else {
                stale.push(path.clone());
            }
        }
        // A page left behind by a removed command is stale too.
        for dir in ["reference/commands", "reference/generated"] {
            for entry in std::fs::read_dir(src.join(dir)).unwrap() {
                let name = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
                if !generated.iter().any(|(p, _)| *p == name) {
                    if update {
                        std::fs::remove_file(src.join(&name)).unwrap();
                    } else {
                        stale.push(name);
                    }
                }
            }
        }
        assert!(
            stale.is_empty(),
            "the book's generated reference is stale: {stale:?}\nhint: run `WSCTL_UPDATE_DOCS=1 cargo test -p wsctl reference` and commit docs/src"
        );
    }

    #[test]
    fn every_command_page_is_in_the_table_of_contents_and_has_its_notes() {
        let summary = std::fs::read_to_string(book_src().join("SUMMARY.md")).unwrap();
        for (path, _) in commands::pages() {
            assert!(
                summary.contains(&format!("({path})")),
                "docs/src/SUMMARY.md does not list {path}"
            );
            let name = Path::new(&path).file_name().unwrap();
            let notes = book_src().join("reference/notes").join(name);
            assert!(
                notes.is_file(),
                "{path} includes {}, which does not exist: write what the command does there",
                notes.display()
            );
        }
    }
}
