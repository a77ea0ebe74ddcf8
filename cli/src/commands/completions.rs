//! `wsctl completions SHELL`: the completion script clap derives from the command line itself,
//! so it never lags behind a new command or flag.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;

pub fn run(shell: Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "wsctl", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        run(shell, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_shell_completes_the_commands_and_their_flags() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::PowerShell,
            Shell::Elvish,
        ] {
            let text = script(shell);
            for word in [
                "deploy",
                "dev",
                "gc",
                "completions",
                "endpoint-url",
                "print-policy",
            ] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }

    /// What a user gets at the prompt: bash, with the script loaded, completes `wsctl dep` and
    /// `wsctl deploy --print-p`.
    #[test]
    fn bash_completes_commands_and_flags_from_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wsctl.bash");
        std::fs::write(&path, script(Shell::Bash)).unwrap();
        let complete = |line: &str| -> String {
            let words: Vec<&str> = line.split(' ').collect();
            let program = format!(
                "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; _wsctl wsctl '{}' '{}'; echo \"${{COMPREPLY[@]}}\"",
                path.display(),
                words.join(" "),
                words.len() - 1,
                line.len(),
                words[words.len() - 1],
                words[words.len() - 2],
            );
            let out = std::process::Command::new("bash")
                .args(["--norc", "-c", &program])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(complete("wsctl dep"), "deploy");
        assert_eq!(complete("wsctl deploy --print-p"), "--print-policy");
    }
}
