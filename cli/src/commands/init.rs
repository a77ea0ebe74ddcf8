use std::path::Path;

use crate::config;
use crate::error::Error;
use crate::output::Printer;

const TEMPLATE: &str = include_str!("../../../templates/wsctl.yaml");

/// Writes the commented template; refuses to overwrite without `--force`.
pub fn run(path: &Path, force: bool, printer: &Printer) -> Result<(), Error> {
    if path.exists() && !force {
        return Err(Error::Usage {
            usage: format!(
                "{} already exists\nhint: pass --force to overwrite it",
                path.display()
            ),
        });
    }
    std::fs::write(path, TEMPLATE)
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))?;
    // The schema the template's first line names, beside it; generated, so always rewritten.
    let schema = path.with_file_name(config::SCHEMA_FILE);
    std::fs::write(&schema, config::json_schema())
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", schema.display())))?;
    printer.note(format!(
        "Wrote {} and {} (its schema, for editors). Edit it, then run `wsctl plan` and `wsctl deploy`.",
        path.display(),
        schema.display()
    ));
    Ok(())
}
