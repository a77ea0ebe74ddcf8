//! Builds function crates (with cargo-lambda for Lambda, with this machine's cargo for
//! `wsctl dev`) and packs each binary into a deployment zip.
//!
//! What goes to Lambda runs on `provided.al2023`, whose C library is glibc 2.34, whatever
//! machine built it: a binary linked against this machine's newer glibc would not start there
//! (`GLIBC_2.3x not found`). So Lambda builds link with zig against glibc 2.34 (cargo-lambda's
//! `--target <triple>.2.34`), and every binary is checked for a newer symbol version before it
//! is zipped. Only `--arch host` builds with this machine's own toolchain (the check still
//! applies), and `wsctl dev` builds for this machine alone.
//!
//! The zip is written byte-for-byte reproducibly (fixed timestamp and mode), so an unchanged
//! binary gives an unchanged `CodeSha256` and deploy skips the upload. Cargo's own
//! fingerprints decide whether anything is recompiled.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Arch, Config};

mod toolchain;

use toolchain::*;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Artifact {
    pub zip: PathBuf,
    /// Base64 SHA-256 of the zip: what Lambda reports as `CodeSha256`.
    pub sha256: String,
    pub bytes: u64,
    pub architecture: String,
    /// False when the zip on disk was already this content.
    pub rebuilt: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "cargo-lambda is not installed (`cargo lambda --version` failed: {0})\nhint: install it with `pip install cargo-lambda` (brings zig for cross-compiling) or `cargo install --locked cargo-lambda`"
    )]
    NoCargoLambda(String),
    #[error(
        "zig is not installed ({0}); builds for Lambda link with it against glibc 2.34, the C library of the provided.al2023 runtime\nhint: install it with `pip install ziglang=={ZIG_VERSION}` (scripts/tools does), or put a `zig` on the PATH (or in CARGO_ZIGBUILD_ZIG_PATH)"
    )]
    NoZig(String),
    #[error(
        "{bin} ({arch}) needs {needs}, which glibc {}.{} of Lambda's provided.al2023 runtime does not have, so Lambda could not start it (`GLIBC_2.x not found`)\nhint: avoid calling {symbols} (directly or through a crate: pick a version or feature of it that does without); only `wsctl dev` runs what this machine's glibc links",
        LAMBDA_GLIBC.0,
        LAMBDA_GLIBC.1
    )]
    NewerGlibc {
        bin: String,
        arch: Arch,
        /// What it needs: "GLIBC_2.36 (`arc4random`)", or the symbols the link left undefined.
        needs: String,
        symbols: String,
    },
    #[error(
        "the Rust target {triple} is not installed, and {arch} functions need it\nhint: run `rustup target add {triple}`, or build for this machine with `--arch host`"
    )]
    MissingTarget { triple: &'static str, arch: Arch },
    #[error(
        "{path} is not a Cargo crate ({detail})\nhint: `crate:` in wsctl.yaml must point at a directory with a Cargo.toml, relative to wsctl.yaml"
    )]
    NotACrate { path: PathBuf, detail: String },
    #[error(
        "crate {krate} has no binary named `{bin}`; it has: {available}\nhint: set `bin:` for this function in wsctl.yaml"
    )]
    NoSuchBin {
        krate: String,
        bin: String,
        available: String,
    },
    #[error(
        "building {bin} for {arch} failed (exit {code}); cargo's output is above\nhint: fix the compile error"
    )]
    Failed { bin: String, arch: Arch, code: i32 },
    #[error("{0}")]
    Io(String),
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BuildError {
    move |e| BuildError::Io(format!("{context}: {e}"))
}

/// wsctl's own package: the bundled functions share its workspace.
const CLI_PACKAGE: &str = "wsctl";

/// The Cargo profile functions are built with. wsctl defines it through cargo's environment
/// configuration, so any function crate gets it without editing its own Cargo.toml.
const PROFILE: &str = "lambda";
/// Small and quick to start (measured: 4.9 MB vs 13 MB with the default release profile, same
/// start-up); the CLI keeps the plain release profile, which builds far quicker.
const PROFILE_SETTINGS: &[(&str, &str)] = &[
    ("CARGO_PROFILE_LAMBDA_INHERITS", "release"),
    ("CARGO_PROFILE_LAMBDA_OPT_LEVEL", "z"),
    ("CARGO_PROFILE_LAMBDA_LTO", "true"),
    ("CARGO_PROFILE_LAMBDA_CODEGEN_UNITS", "1"),
    ("CARGO_PROFILE_LAMBDA_PANIC", "abort"),
    ("CARGO_PROFILE_LAMBDA_STRIP", "true"),
];

/// The glibc of Lambda's `provided.al2023` runtime (Amazon Linux 2023): the newest symbol
/// version a function binary may need.
pub const LAMBDA_GLIBC: crate::glibc::Version = (2, 34);
/// The zig `scripts/tools` installs (`pip install ziglang==…`), named in the missing-zig hint.
const ZIG_VERSION: &str = "0.17.1";

/// What a build is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Lambda: cargo-lambda, the size-optimised `lambda` profile, the architecture's triple,
    /// linked with zig against Lambda's glibc (natively only for `--arch host`).
    Lambda,
    /// `wsctl dev`: this machine's plain `cargo build --release`, into the same target
    /// directory and with the same profile as `cargo install --path cli`, whose build already
    /// holds every dependency of the bundled functions: a first run after install compiles
    /// and links only the functions themselves, where the `lambda` profile compiles every
    /// dependency again.
    Local,
}

/// Builds every function of `config` (for `arch` when given, else each function's own).
/// Functions sharing a crate, binary and architecture are built once. A [`Profile::Local`]
/// build is always for this machine.
pub fn build_all(
    config: &Config,
    arch: Option<Arch>,
    profile: Profile,
    quiet: bool,
) -> Result<BTreeMap<String, Artifact>, BuildError> {
    if profile == Profile::Lambda {
        let version = Command::new("cargo").args(["lambda", "--version"]).output();
        match version {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(BuildError::NoCargoLambda(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            Err(e) => return Err(BuildError::NoCargoLambda(e.to_string())),
        }
    }
    let arch = match profile {
        Profile::Lambda => arch,
        Profile::Local => Some(Arch::Host),
    };
    let mut built: BTreeMap<(PathBuf, String, Arch, Linker), Artifact> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (logical, f) in &config.functions {
        let requested = arch.unwrap_or(config.arch_of(f));
        let linker = Linker::for_build(requested, profile);
        let arch = requested.resolve();
        let krate = inspect(&f.crate_path, f.bin.as_deref())?;
        let key = (f.crate_path.clone(), krate.bin.clone(), arch, linker);
        if let Some(artifact) = built.get(&key) {
            out.insert(logical.clone(), artifact.clone());
            continue;
        }
        if linker == Linker::Zig {
            zig_available()?;
        }
        let artifact = build_one(&krate, arch, profile, linker, quiet)?;
        built.insert(key, artifact.clone());
        out.insert(logical.clone(), artifact);
    }
    Ok(out)
}

/// The zips a previous build left, without building (for `status`): missing ones are absent.
pub fn existing(config: &Config, profile: Profile) -> BTreeMap<String, Artifact> {
    let mut out = BTreeMap::new();
    for (logical, f) in &config.functions {
        let arch = match profile {
            Profile::Lambda => config.arch_of(f).resolve(),
            Profile::Local => Arch::Host.resolve(),
        };
        let Ok(krate) = inspect(&f.crate_path, f.bin.as_deref()) else {
            continue;
        };
        let zip = zip_path(&krate, arch, profile);
        if let Ok(bytes) = std::fs::read(&zip) {
            out.insert(
                logical.clone(),
                Artifact {
                    sha256: sha256_b64(&bytes),
                    bytes: bytes.len() as u64,
                    zip,
                    architecture: arch.lambda_name().into(),
                    rebuilt: false,
                },
            );
        }
    }
    out
}

struct Crate {
    manifest: PathBuf,
    name: String,
    bin: String,
    target_dir: PathBuf,
    /// Whether its workspace also holds wsctl itself (the bundled functions' does).
    beside_cli: bool,
}

fn inspect(dir: &Path, bin: Option<&str>) -> Result<Crate, BuildError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NotACrate {
            path: dir.to_path_buf(),
            detail: "no Cargo.toml".into(),
        });
    }
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(io("running cargo metadata"))?;
    if !out.status.success() {
        return Err(BuildError::NotACrate {
            path: dir.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| BuildError::Io(format!("cargo metadata: {e}")))?;
    let canonical = manifest.canonicalize().map_err(io(manifest.display()))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .map(PathBuf::from)
                .is_some_and(|m| m == canonical)
        })
        .ok_or_else(|| BuildError::NotACrate {
            path: dir.to_path_buf(),
            detail: "cargo metadata does not list it".into(),
        })?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let bins: Vec<String> = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    let bin = match bin {
        Some(b) => b.to_string(),
        None if bins.len() == 1 => bins[0].clone(),
        None => name.clone(),
    };
    if !bins.contains(&bin) {
        let available = if bins.is_empty() {
            "no binaries".to_string()
        } else {
            bins.join(", ")
        };
        return Err(BuildError::NoSuchBin {
            krate: name,
            bin,
            available,
        });
    }
    let target_dir = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));
    let beside_cli = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == CLI_PACKAGE);
    Ok(Crate {
        manifest,
        name,
        bin,
        target_dir,
        beside_cli,
    })
}

fn zip_path(krate: &Crate, arch: Arch, profile: Profile) -> PathBuf {
    let dir = match profile {
        Profile::Lambda => arch.lambda_name().to_string(),
        Profile::Local => format!("local-{}", arch.lambda_name()),
    };
    krate
        .target_dir
        .join("wsctl")
        .join(dir)
        .join(format!("{}.zip", krate.bin))
}

fn build_one(
    krate: &Crate,
    arch: Arch,
    profile: Profile,
    linker: Linker,
    quiet: bool,
) -> Result<Artifact, BuildError> {
    let triple = triple(arch);
    let host = triple == triple_of_host() && cfg!(target_os = "linux");
    if !host && !target_installed(triple) {
        return Err(BuildError::MissingTarget { triple, arch });
    }
    let lock_dir = krate.target_dir.join("wsctl");
    std::fs::create_dir_all(&lock_dir).map_err(io(lock_dir.display()))?;
    // Two wsctl builds of one target directory would race on the zip; take turns.
    let lock = File::create(lock_dir.join("build.lock")).map_err(io("creating build lock"))?;
    lock.lock().map_err(io("locking the build directory"))?;

    let mut cmd = Command::new("cargo");
    let binary = match profile {
        Profile::Lambda => {
            cmd.args([
                "lambda",
                "build",
                "--profile",
                PROFILE,
                "--output-format",
                "binary",
            ])
            .envs(PROFILE_SETTINGS.iter().copied());
            match linker {
                // cargo-zigbuild reads a glibc version suffix on the triple and links against
                // that version's symbols: what Lambda's runtime has, whatever this machine has.
                Linker::Zig => cmd
                    .args(["--compiler", "cargo-zigbuild", "--target"])
                    .arg(format!("{triple}.{}.{}", LAMBDA_GLIBC.0, LAMBDA_GLIBC.1)),
                Linker::Native => cmd.args(["--compiler", "cargo", "--target", triple]),
            };
            // Where cargo-lambda leaves the binary, whatever the target.
            krate
                .target_dir
                .join("lambda")
                .join(&krate.bin)
                .join("bootstrap")
        }
        Profile::Local => {
            cmd.args(["build", "--release", "--package", &krate.name]);
            // Cargo gives a crate's dependencies the features of everything built with it.
            // `cargo install --path cli` built wsctl alone, with more features on the shared
            // crates (the SDK, TLS, tokio) than the functions ask for; built alone, the
            // functions would compile those crates a second time. Named beside wsctl, they get
            // exactly the install's features and its compiled dependencies.
            if krate.beside_cli && krate.name != CLI_PACKAGE {
                cmd.args(["--package", CLI_PACKAGE]);
            }
            krate.target_dir.join("release").join(&krate.bin)
        }
    };
    cmd.args(["--bin", &krate.bin])
        .arg("--manifest-path")
        .arg(&krate.manifest);
    if quiet {
        cmd.arg("--quiet");
    }
    let (status, undefined) = run_showing_stderr(cmd).map_err(io(match profile {
        Profile::Lambda => "running cargo lambda",
        Profile::Local => "running cargo build",
    }))?;
    if !status.success() {
        // Linked against glibc 2.34, a symbol only a newer glibc has is undefined.
        if linker == Linker::Zig && !undefined.is_empty() {
            return Err(BuildError::NewerGlibc {
                bin: krate.bin.clone(),
                arch,
                needs: quoted(&undefined),
                symbols: quoted(&undefined),
            });
        }
        return Err(BuildError::Failed {
            bin: krate.bin.clone(),
            arch,
            code: status.code().unwrap_or(-1),
        });
    }
    // Zipped right away, under the lock.
    let program = std::fs::read(&binary).map_err(io(format!(
        "reading {} (built from {})",
        binary.display(),
        krate.name
    )))?;
    if profile == Profile::Lambda {
        check_glibc(&program, &krate.bin, arch)?;
    }
    let zip = reproducible_zip(&program)
        .map_err(|e| BuildError::Io(format!("zipping {}: {e}", krate.bin)))?;
    let path = zip_path(krate, arch, profile);
    let rebuilt = std::fs::read(&path).ok().as_deref() != Some(zip.as_slice());
    if rebuilt {
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .map_err(io(path.display()))?;
        let tmp = path.with_extension("zip.tmp");
        std::fs::write(&tmp, &zip).map_err(io(tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(io(path.display()))?;
    }
    Ok(Artifact {
        sha256: sha256_b64(&zip),
        bytes: zip.len() as u64,
        zip: path,
        architecture: arch.lambda_name().into(),
        rebuilt,
    })
}

/// `bootstrap` alone, executable, with a fixed timestamp: same binary, same bytes.
pub fn reproducible_zip(program: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .unix_permissions(0o755)
        .last_modified_time(zip::DateTime::default());
    writer.start_file("bootstrap", options)?;
    writer.write_all(program)?;
    Ok(writer.finish()?.into_inner())
}

pub fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_are_reproducible_and_hold_an_executable_bootstrap() {
        let a = reproducible_zip(b"\x7fELF program").unwrap();
        let b = reproducible_zip(b"\x7fELF program").unwrap();
        assert_eq!(a, b);
        assert_ne!(
            sha256_b64(&a),
            sha256_b64(&reproducible_zip(b"other").unwrap())
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let entry = archive.by_name("bootstrap").unwrap();
        assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o755);
    }
}
