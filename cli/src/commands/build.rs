use serde_json::json;

use crate::args::BuildArgs;
use crate::build::Profile;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;

pub async fn run(config: &Config, args: &BuildArgs, printer: &Printer) -> Result<(), Error> {
    let artifacts = super::artifacts(
        config,
        &BuildArgs {
            no_build: false,
            ..args.clone()
        },
        Profile::Lambda,
        printer,
    )
    .await?;
    if printer.json() {
        printer.result_json(&json!({ "functions": artifacts }));
        return Ok(());
    }
    for (function, a) in &artifacts {
        let state = if a.rebuilt { "built" } else { "unchanged" };
        printer.result(format!(
            "{function:<16} {:<7} {:>9} bytes  {state:<9} {}",
            a.architecture,
            a.bytes,
            a.zip.display()
        ));
    }
    Ok(())
}
