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
