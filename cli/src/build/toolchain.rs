//! The toolchain a function build needs: the target triple, who links (zig against Lambda's glibc, or
//! this machine), and the check that a binary needs no newer glibc than Lambda has.

use std::process::Command;

use super::{BuildError, LAMBDA_GLIBC, Profile};
use crate::config::Arch;

pub(super) fn triple(arch: Arch) -> &'static str {
    match arch.resolve() {
        Arch::Arm64 => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    }
}

/// Who links a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Linker {
    /// zig through cargo-lambda, against [`LAMBDA_GLIBC`]: any build machine, any architecture.
    Zig,
    /// This machine's own toolchain and C library.
    Native,
}

impl Linker {
    /// Native only where asked to build for this machine and it can: `wsctl dev`, or
    /// `--arch host` on a Linux glibc machine (a Mac cannot link a Linux binary natively).
    pub(super) fn for_build(requested: Arch, profile: Profile) -> Linker {
        match profile {
            Profile::Local => Linker::Native,
            Profile::Lambda
                if requested == Arch::Host
                    && cfg!(all(target_os = "linux", target_env = "gnu")) =>
            {
                Linker::Native
            }
            Profile::Lambda => Linker::Zig,
        }
    }
}

/// Finds zig where cargo-lambda's linker (cargo-zigbuild) looks for it: `CARGO_ZIGBUILD_ZIG_PATH`
/// or `zig` on the PATH, else Python's `ziglang` package (`CARGO_ZIGBUILD_PYTHON_PATH`, default
/// `python3`). Without it cargo-lambda would offer to install it interactively, or fail late.
pub(super) fn zig_available() -> Result<(), BuildError> {
    let runs = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let zig = std::env::var("CARGO_ZIGBUILD_ZIG_PATH").unwrap_or_else(|_| "zig".into());
    let python = std::env::var("CARGO_ZIGBUILD_PYTHON_PATH").unwrap_or_else(|_| "python3".into());
    if runs(&zig, &["version"]) || runs(&python, &["-m", "ziglang", "version"]) {
        return Ok(());
    }
    Err(BuildError::NoZig(format!(
        "neither `{zig} version` nor `{python} -m ziglang version` ran"
    )))
}

pub(super) fn target_installed(triple: &str) -> bool {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == triple),
        // Without rustup the toolchain's own targets decide; let cargo report it.
        _ => true,
    }
}

/// Refuses a binary that needs a glibc symbol version Lambda's runtime lacks (what `--arch
/// host` can link on a newer distribution; zig builds are checked too, as a backstop).
pub(super) fn check_glibc(program: &[u8], bin: &str, arch: Arch) -> Result<(), BuildError> {
    let needs = crate::glibc::needs(program)
        .map_err(|e| BuildError::Io(format!("reading the ELF symbol versions of {bin}: {e}")))?;
    let newer = crate::glibc::newer_than(&needs, LAMBDA_GLIBC);
    if newer.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = newer.iter().flat_map(|(_, s)| s.clone()).collect();
    Err(BuildError::NewerGlibc {
        bin: bin.to_string(),
        arch,
        needs: newer
            .iter()
            .map(|((major, minor), symbols)| format!("GLIBC_{major}.{minor} ({})", quoted(symbols)))
            .collect::<Vec<_>>()
            .join(", "),
        symbols: quoted(&all),
    })
}

/// `a`, `b`: symbol names as a message shows them (at most a handful).
pub(super) fn quoted(symbols: &[String]) -> String {
    let mut shown: Vec<String> = symbols.iter().take(5).map(|s| format!("`{s}`")).collect();
    if symbols.len() > 5 {
        shown.push(format!("and {} more", symbols.len() - 5));
    }
    shown.join(", ")
}

/// Runs `cmd` with its stderr passed on line by line, and returns the symbols the linker
/// reported undefined (lld: `undefined symbol: NAME`).
pub(super) fn run_showing_stderr(
    mut cmd: Command,
) -> std::io::Result<(std::process::ExitStatus, Vec<String>)> {
    use std::io::BufRead;
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let mut undefined = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line?;
        eprintln!("{line}");
        if let Some((_, symbol)) = line.split_once("undefined symbol: ") {
            let symbol = symbol.trim().to_string();
            if !undefined.contains(&symbol) {
                undefined.push(symbol);
            }
        }
    }
    Ok((child.wait()?, undefined))
}

pub(super) fn triple_of_host() -> &'static str {
    triple(Arch::Host)
}
