//! The user's guide: the book builds with mdBook without a warning and without a dead link,
//! `wsctl docs` and each command's long help point at its pages, and the getting-started
//! chapter's commands run as written, against `wsctl dev` and against an emulated AWS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wsctl_tests::dev::Dev;
use wsctl_tests::{Moto, Project, build_fixture, isolate, root, text, wsctl_bin};

/// The mdBook release `.ci/run` installs.
const MDBOOK: &str = "0.5.4";

/// `mdbook build docs` into `out`: it must succeed and say nothing above INFO.
fn build_book(out: &Path) {
    let built = Command::new("mdbook")
        .arg("build")
        .arg(root().join("docs"))
        .arg("--dest-dir")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mdbook ({e}): install it with `cargo install mdbook --version {MDBOOK} --locked` (.ci/run does)")
        });
    let log = text(&built);
    assert!(built.status.success(), "mdbook build failed:\n{log}");
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        noisy.is_empty(),
        "mdbook build warned:\n{}",
        noisy.join("\n")
    );
}

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            html_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "html") {
            out.push(path);
        }
    }
}

/// Every `href="…"` and `src="…"` of a page but the `<base>` of mdBook's 404 page, which
/// names the site's root on a server.
fn links(html: &str) -> Vec<String> {
    let html = html.replace("<base href=\"/\">", "");
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html.as_str();
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// An element id a `#fragment` may point at.
fn has_id(html: &str, id: &str) -> bool {
    html.contains(&format!("id=\"{id}\""))
}

/// The dead links of the built book: a file that is not there, or a `#fragment` that no
/// element of its page has.
fn dead_links(book: &Path) -> Vec<String> {
    let mut pages = Vec::new();
    html_files(book, &mut pages);
    assert!(pages.len() > 30, "the book has its pages: {}", pages.len());
    let mut dead = Vec::new();
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        for link in links(&html) {
            if link.is_empty()
                || link.contains("://")
                || link.starts_with("mailto:")
                || link.starts_with("data:")
                || link.starts_with("javascript:")
            {
                continue;
            }
            let (path, fragment) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let path = path.split('?').next().unwrap();
            let target = if path.is_empty() {
                page.clone()
            } else {
                let t = page.parent().unwrap().join(path);
                if t.is_dir() { t.join("index.html") } else { t }
            };
            let shown = format!("{} → {link}", page.strip_prefix(book).unwrap().display());
            if !target.is_file() {
                dead.push(shown);
                continue;
            }
            if let Some(id) = fragment.filter(|f| !f.is_empty()) {
                let body = std::fs::read_to_string(&target).unwrap_or_default();
                if !has_id(&body, id) {
                    dead.push(format!("{shown} (no such anchor)"));
                }
            }
        }
    }
    dead
}

#[test]
fn the_book_builds_without_a_warning_or_a_dead_link_and_wsctl_points_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book");
    build_book(&book);
    let dead = dead_links(&book);
    assert!(
        dead.is_empty(),
        "dead links in the book:\n{}",
        dead.join("\n")
    );
    // Every page mdBook made from a chapter, not an include left unexpanded.
    let mut pages = Vec::new();
    html_files(&book, &mut pages);
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        assert!(
            !html.contains("{{#include"),
            "{} has an unexpanded include",
            page.display()
        );
    }

    // `wsctl docs` finds the built book (WSCTL_DOCS names the folder holding `book/`).
    let docs = |args: &[&str], docs_dir: &Path| {
        let mut cmd = Command::new(wsctl_bin());
        cmd.arg("docs").args(args).env("WSCTL_DOCS", docs_dir);
        isolate(&mut cmd);
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    let out = docs(&["deploy"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let page = book
        .join("reference/commands/deploy.html")
        .canonicalize()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        page.display().to_string()
    );
    let out = docs(&["secret", "rotate"], dir.path());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("reference/commands/secret-rotate.html"),
        "{}",
        text(&out)
    );
    let out = docs(&[], dir.path());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("book/index.html"),
        "{}",
        text(&out)
    );
    // A typo is named, with the commands there are.
    let out = docs(&["deplyo"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`wsctl deplyo` is not a command"),
        "{}",
        text(&out)
    );
    // No book and no sources: exit 5, saying where to point it.
    let empty = tempfile::tempdir().unwrap();
    let out = docs(&[], empty.path());
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("WSCTL_DOCS"), "{}", text(&out));

    // Each command's long help ends with its page, as a link once the book is built.
    for (args, page) in [
        (vec!["deploy", "--help"], "reference/commands/deploy.html"),
        (
            vec!["secret", "rotate", "--help"],
            "reference/commands/secret-rotate.html",
        ),
        (vec!["--help"], "index.html"),
    ] {
        let mut cmd = Command::new(wsctl_bin());
        cmd.args(&args).env("WSCTL_DOCS", dir.path());
        isolate(&mut cmd);
        let out = cmd.output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let last = help
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        let want = book.join(page).canonicalize().unwrap();
        assert_eq!(last, format!("file://{}", want.display()), "{help}");
        assert!(help.contains("Book page (`wsctl docs"), "{help}");
    }
}

#[test]
fn wsctl_docs_builds_the_book_first_when_it_is_not_built() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("book.toml"), "[book]\ntitle = \"t\"\n").unwrap();
    std::fs::write(
        dir.path().join("src/SUMMARY.md"),
        "# Summary\n\n[Intro](introduction.md)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("src/introduction.md"), "# Intro\n").unwrap();
    let docs = |path: &str| {
        let mut cmd = Command::new(wsctl_bin());
        cmd.arg("docs")
            .env("WSCTL_DOCS", dir.path())
            .env("PATH", path);
        isolate(&mut cmd);
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    // Without mdBook on the PATH: exit 5, and how to install it.
    let out = docs("/nonexistent");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        text(&out).contains("cargo install mdbook"),
        "{}",
        text(&out)
    );
    // With it: built, then its first page printed.
    let out = docs(&std::env::var("PATH").unwrap());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("building the book"), "{}", text(&out));
    let index = dir.path().join("book/index.html").canonicalize().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        index.display().to_string()
    );
}

/// A fenced `sh` block of the getting-started chapter and what its marker line says to do.
struct Block {
    check: String,
    script: String,
    line: usize,
}

/// Every shell block (```sh, ```bash, ```shell, ```console) with the `<!-- check: … -->` line
/// before it; a block without one fails the test, so no command of the chapter goes unrun
/// without a stated reason.
fn blocks(chapter: &str) -> Vec<Block> {
    let lines: Vec<&str> = chapter.lines().collect();
    let shell = |l: &str| {
        let info = l.trim_start().trim_start_matches("```");
        l.trim_start().starts_with("```")
            && ["sh", "bash", "shell", "console"]
                .iter()
                .any(|s| info.split([',', ' ']).next() == Some(s))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if shell(lines[i]) {
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.trim().strip_prefix("<!-- check:"))
                .and_then(|l| l.strip_suffix("-->"))
                .unwrap_or_else(|| {
                    panic!(
                        "getting-started.md line {}: a sh block without a `<!-- check: dev|aws|skip: why -->` line before it",
                        i + 1
                    )
                })
                .trim()
                .to_string();
            let start = i + 1;
            let end = (start..lines.len())
                .find(|&e| lines[e].trim_start().starts_with("```"))
                .unwrap_or_else(|| panic!("getting-started.md line {}: an unclosed block", i + 1));
            out.push(Block {
                check: marker,
                script: lines[start..end].join("\n"),
                line: i + 1,
            });
            i = end;
        }
        i += 1;
    }
    out
}

fn run_script(script: &str, dir: &Path, envs: &[(&str, String)]) {
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script]);
    isolate(&mut cmd);
    let bin_dir = wsctl_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    cmd.env("PATH", path).current_dir(dir).stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the getting-started commands failed:\n{script}\n---\n{}",
        text(&out)
    );
}

/// The chapter a new user follows, run as written: its `dev` blocks in one shell against
/// `wsctl dev` on the repository's wsctl.yaml (the chapter's `127.0.0.1:8080` being this
/// server's address), its `aws` blocks in another against moto, in a project of the test
/// fixture's stack (the bundled functions' Lambda build takes minutes; the commands are the
/// same).
#[tokio::test(flavor = "multi_thread")]
async fn the_getting_started_commands_run_as_written() {
    let chapter = std::fs::read_to_string(root().join("docs/src/getting-started.md")).unwrap();
    let blocks = blocks(&chapter);
    for b in &blocks {
        assert!(
            b.check == "dev" || b.check == "aws" || b.check.starts_with("skip:"),
            "getting-started.md line {}: unknown check {:?}",
            b.line,
            b.check
        );
    }
    let script = |check: &str| {
        blocks
            .iter()
            .filter(|b| b.check == check)
            .map(|b| format!("# getting-started.md line {}\n{}", b.line, b.script))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (dev_script, aws_script) = (script("dev"), script("aws"));
    assert!(dev_script.contains("wsctl publish"), "{dev_script}");
    assert!(aws_script.contains("wsctl deploy"), "{aws_script}");

    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let address = dev.base().trim_start_matches("http://").to_string();
    let work = tempfile::tempdir().unwrap();
    run_script(
        &dev_script.replace("127.0.0.1:8080", &address),
        work.path(),
        &[(
            "WSCTL_CONFIG",
            root().join("wsctl.yaml").display().to_string(),
        )],
    );

    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    run_script(
        &aws_script,
        project.dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", moto.url()),
        ],
    );
}
