//! `wsctl build`: real cargo-lambda builds, skipped when nothing changed, clear when tools are missing.

use wsctl_tests::*;

#[test]
fn a_repeated_build_changes_nothing() {
    build_fixture();
    let project = Project::new();
    let out = project.wsctl("http://127.0.0.1:9", &["build", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let built = stdout_json(&out);
    let functions = built["functions"].as_object().unwrap();
    assert_eq!(functions.len(), 5);
    for (name, a) in functions {
        assert_eq!(
            a["rebuilt"], false,
            "{name} was rebuilt though nothing changed"
        );
        assert_eq!(a["architecture"], "x86_64");
        let zip = std::fs::read(a["zip"].as_str().unwrap()).unwrap();
        assert_eq!(zip.len() as u64, a["bytes"].as_u64().unwrap());
        assert_eq!(&zip[..2], b"PK");
    }
}

#[test]
fn missing_cargo_lambda_says_how_to_install_it() {
    let project = Project::new();
    let cargo = std::process::Command::new("which")
        .arg("cargo")
        .output()
        .unwrap();
    let cargo_dir = std::path::PathBuf::from(String::from_utf8_lossy(&cargo.stdout).trim())
        .parent()
        .unwrap()
        .to_path_buf();
    let mut cmd = project.command("http://127.0.0.1:9", &["build"]);
    cmd.env("PATH", cargo_dir);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cargo-lambda is not installed") && err.contains("pip install cargo-lambda"),
        "{err}"
    );
}

/// Lambda's `provided.al2023` runtime has glibc 2.34 ("Lambda runtimes", AWS Lambda developer
/// guide: Amazon Linux 2023 ships glibc 2.34): a bootstrap needing a newer symbol version fails
/// to start there with `GLIBC_2.xx not found`, however well it ran here.
const LAMBDA_GLIBC: (u32, u32) = (2, 34);

/// The glibc versions a binary needs, as binutils' `readelf` reads its version tables (an
/// independent reader from wsctl's own check), with the symbols that need each.
fn glibc_needs(binary: &[u8]) -> Vec<((u32, u32), String)> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), binary).unwrap();
    let out = std::process::Command::new("readelf")
        .args(["-W", "--dyn-syms"])
        .arg(file.path())
        .output()
        .expect("readelf (binutils) is installed");
    assert!(out.status.success(), "{}", text(&out));
    let mut needs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "    12: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND arc4random@GLIBC_2.36 (4)"
        let Some(name) = line.split_whitespace().nth(7) else {
            continue;
        };
        let Some((symbol, version)) = name.split_once("@GLIBC_") else {
            continue;
        };
        let mut parts = version.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            needs.push(((major, minor), symbol.to_string()));
        }
    }
    needs
}

fn bootstrap_of(zip: &str) -> Vec<u8> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut program = Vec::new();
    archive
        .by_name("bootstrap")
        .unwrap()
        .read_to_end(&mut program)
        .unwrap();
    program
}

/// The architectures this machine can build for Lambda: x86_64 always, arm64 once rustup has
/// its target (scripts/tools adds it where it can).
fn buildable_archs() -> Vec<&'static str> {
    let mut archs = vec!["x86_64"];
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "aarch64-unknown-linux-gnu")
    {
        archs.push("arm64");
    }
    archs
}

#[test]
fn every_built_bootstrap_runs_on_lambdas_glibc() {
    build_fixture();
    let project = Project::new();
    for arch in buildable_archs() {
        let out = project.wsctl(
            "http://127.0.0.1:9",
            &["build", "--arch", arch, "--output", "json"],
        );
        assert!(out.status.success(), "{arch}: {}", text(&out));
        let built = stdout_json(&out);
        for (name, a) in built["functions"].as_object().unwrap() {
            assert_eq!(a["architecture"], arch);
            let program = bootstrap_of(a["zip"].as_str().unwrap());
            let needs = glibc_needs(&program);
            assert!(!needs.is_empty(), "{name} ({arch}) is a glibc binary");
            let newer: Vec<_> = needs.iter().filter(|(v, _)| *v > LAMBDA_GLIBC).collect();
            assert!(
                newer.is_empty(),
                "{name} ({arch}) needs a newer glibc than provided.al2023's 2.34: {newer:?}"
            );
        }
    }
}

/// A stack of one function built from `tests/fixtures/newer-glibc`, which calls `arc4random`
/// (glibc 2.36).
fn newer_glibc_project() -> Project {
    let project = Project::new();
    let krate = root().join("tests/fixtures/newer-glibc");
    project.write_config(&format!(
        "stack: glibc\nstage: test\narchitecture: x86_64\nfunctions:\n  handler: {{ crate: {} }}\nroutes:\n  $default: handler\n",
        krate.display()
    ));
    project
}

#[test]
fn a_function_needing_a_newer_glibc_than_lambdas_is_refused() {
    let project = newer_glibc_project();
    // Linked by zig against glibc 2.34 (the default for Lambda), and natively (`--arch host`,
    // this machine's newer glibc) where only the check of the built binary can catch it.
    for args in [&["build"][..], &["build", "--arch", "host"][..]] {
        let out = project.wsctl("http://127.0.0.1:9", args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("`arc4random`")
                && err.contains("glibc 2.34")
                && err.contains("provided.al2023"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn missing_zig_says_how_to_install_it() {
    let project = Project::new();
    let mut cmd = project.command("http://127.0.0.1:9", &["build"]);
    // Where cargo-lambda's linker looks for zig: its own variables, then `zig`/`python3`.
    cmd.env("CARGO_ZIGBUILD_ZIG_PATH", "/nonexistent/zig")
        .env("CARGO_ZIGBUILD_PYTHON_PATH", "/nonexistent/python3");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zig is not installed")
            && err.contains("pip install ziglang==")
            && err.contains("glibc 2.34"),
        "{err}"
    );
}
