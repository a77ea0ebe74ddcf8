//! Where the user's guide is: the mdBook under the repository's `docs/`, built into
//! `docs/book/`. `wsctl docs` prints or opens its pages, and each command's long help ends with
//! the path of that command's page.

use std::path::{Path, PathBuf};

/// The folder holding `book.toml`, `src/` and, once built, `book/`: `WSCTL_DOCS`, else the
/// `docs/` of the checkout this binary was built from (`cargo install --path cli` keeps it).
pub fn docs_dir() -> PathBuf {
    let dir = std::env::var_os("WSCTL_DOCS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs"));
    dir.canonicalize().unwrap_or(dir)
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
    // mdBook makes the first chapter the book's index page.
    let source_page = if command.is_empty() {
        "introduction"
    } else {
        &page
    };
    let source = docs.join("src").join(format!("{source_page}.md"));
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
        format!("Book page: docs/src/{source_page}.md in wsctl's repository")
    }
}

/// A `file://` URL, its path percent-encoded where a URL needs it (RFC 8089, RFC 3986).
pub fn url(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Whether the built book is older than one of its sources (a checkout moved on since it was
/// built): its first page's time against every file under `src/` and `book.toml`.
pub fn stale(docs: &Path) -> bool {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut found = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let time = if path.is_dir() {
                newest(&path)
            } else {
                entry.metadata().and_then(|m| m.modified()).ok()
            };
            found = found.max(time);
        }
        found
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(&built_dir(docs).join("index.html")) else {
        return true;
    };
    let sources = newest(&docs.join("src")).max(modified(&docs.join("book.toml")));
    sources.is_some_and(|s| s > built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_url_encodes_what_a_url_cannot_hold() {
        assert_eq!(
            url(Path::new("/no such/dir/a#b.html")),
            "file:///no%20such/dir/a%23b.html"
        );
    }

    #[test]
    fn a_book_older_than_its_sources_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/guides")).unwrap();
        std::fs::create_dir_all(dir.path().join("book")).unwrap();
        std::fs::write(dir.path().join("src/guides/a.md"), "a").unwrap();
        assert!(stale(dir.path()), "not built");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("book/index.html"), "").unwrap();
        assert!(!stale(dir.path()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("src/guides/a.md"), "b").unwrap();
        assert!(stale(dir.path()), "a chapter changed since");
    }

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
