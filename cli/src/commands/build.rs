use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;

use crate::args::BuildArgs;
use crate::build::{Artifact, Profile};
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;

pub async fn run(config: &Config, args: &BuildArgs, printer: &Printer) -> Result<Built, Error> {
    let functions = super::artifacts(
        config,
        &BuildArgs {
            no_build: false,
            ..args.clone()
        },
        Profile::Lambda,
        printer,
    )
    .await?;
    Ok(Built { functions })
}

/// `wsctl build`'s answer: each function's zip.
#[derive(Debug, Serialize)]
pub struct Built {
    functions: BTreeMap<String, Artifact>,
}

impl Display for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines = self.functions.iter().map(|(function, a)| {
            let state = if a.rebuilt { "built" } else { "unchanged" };
            format!(
                "{function:<16} {:<7} {:>9} bytes  {state:<9} {}",
                a.architecture,
                a.bytes,
                a.zip.display()
            )
        });
        f.write_str(&lines.collect::<Vec<_>>().join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let built = Built {
            functions: [(
                "message".to_string(),
                Artifact {
                    zip: "target/lambda/message/bootstrap.zip".into(),
                    sha256: "q1w2".into(),
                    bytes: 2_345_678,
                    architecture: "arm64".into(),
                    rebuilt: true,
                },
            )]
            .into(),
        };
        let (json, text) = crate::output::forms(&built);
        assert_eq!(
            json,
            r#"{
  "functions": {
    "message": {
      "architecture": "arm64",
      "bytes": 2345678,
      "rebuilt": true,
      "sha256": "q1w2",
      "zip": "target/lambda/message/bootstrap.zip"
    }
  }
}"#
        );
        assert_eq!(
            text,
            "message          arm64     2345678 bytes  built     target/lambda/message/bootstrap.zip"
        );
    }
}
