//! Where the user's guide is: the mdBook under the repository's `docs/`, built into
//! `docs/book/`. `wsctl docs` prints or opens its pages, and each command's long help ends with
//! the path of that command's page.

use std::path::{Path, PathBuf};

/// The folder holding `book.toml`, `src/` and, once built, `book/`: `WSCTL_DOCS`, else the
/// `docs/` of the checkout this binary was built from (`cargo install --path cli` keeps it).
pub fn docs_dir() -> PathBuf {
    std::env::var_os("WSCTL_DOCS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs"))
}

/// The built book's folder, `mdbook build`'s output.
pub fn built_dir(docs: &Path) -> PathBuf {
    docs.join("book")
}

/// A page of the book, from the book's root, without its extension: the command's reference
/// page (`secret rotate` → `reference/commands/secret-rotate`), or the first page.
pub fn page(command: &[&str]) -> String {
    if command.is_empty() {
        "index".into()
    } else {
        format!("reference/commands/{}", command.join("-"))
    }
}

/// What a command's long help ends with: the page as a `file://` link when the book is built,
/// else the page's Markdown source and how to build it.
pub fn help_link(command: &[&str]) -> String {
    let docs = docs_dir();
    let page = page(command);
    let html = built_dir(&docs).join(format!("{page}.html"));
    let source = docs.join("src").join(format!(
        "{}.md",
        if command.is_empty() {
            "introduction"
        } else {
            &page
        }
    ));
    let shown = |p: &Path| {
        p.canonicalize()
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let name = command.join(" ");
    let docs_command = if name.is_empty() {
        "wsctl docs --open".to_string()
    } else {
        format!("wsctl docs {name} --open")
    };
    // The path on a line of its own: help is wrapped at spaces, and a path has none.
    if html.is_file() {
        format!("Book page (`{docs_command}` opens it):\n{}", url(&html))
    } else if source.is_file() {
        format!(
            "Book page (`{docs_command}` builds and opens it):\n{}",
            shown(&source)
        )
    } else {
        format!("Book page: docs/src/{page}.md in wsctl's repository")
    }
}

fn url(path: &Path) -> String {
    format!(
        "file://{}",
        path.canonicalize()
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_names_its_reference_page() {
        assert_eq!(page(&[]), "index");
        assert_eq!(page(&["deploy"]), "reference/commands/deploy");
        assert_eq!(
            page(&["secret", "rotate"]),
            "reference/commands/secret-rotate"
        );
    }
}
