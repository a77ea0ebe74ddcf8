//! `wsctl schema`: the JSON Schema of wsctl.yaml, for editors and CI checks.

use crate::config;

pub fn run(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(config::json_schema().as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::config::{self, SCHEMA_FILE};

    fn validator() -> jsonschema::Validator {
        let schema: Value = serde_json::from_str(&config::json_schema()).unwrap();
        jsonschema::validator_for(&schema).expect("a valid JSON Schema")
    }

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str(text).expect("YAML")
    }

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
        v.iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn the_template_and_every_config_in_the_repository_validate() {
        let v = validator();
        // The root wsctl.yaml is a link to the template.
        for file in ["templates/wsctl.yaml", "tests/fixtures/stack.yaml"] {
            let text = std::fs::read_to_string(root().join(file)).unwrap();
            assert_eq!(errors(&v, &yaml(&text)), Vec::<String>::new(), "{file}");
            // And wsctl itself loads it: the schema accepts nothing wsctl refuses to parse.
            serde_saphyr::from_str::<config::Config>(&text).unwrap();
        }
    }

    #[test]
    fn a_bad_key_or_value_fails_where_it_is() {
        let v = validator();
        let template = std::fs::read_to_string(root().join("templates/wsctl.yaml")).unwrap();
        let cases = [
            ("stack: chat", "stack: chat\nstak: typo", "stak"),
            (
                "crate: functions/authorizer",
                "crate: functions/authorizer\n    memroy: 256",
                "memroy",
            ),
            (
                "architecture: arm64",
                "architecture: sparc",
                "/architecture",
            ),
            ("stack: chat", "stack: Chat_Room", "/stack"),
        ];
        for (from, to, named) in cases {
            assert!(template.contains(from), "{from}");
            let doc = yaml(&template.replacen(from, to, 1));
            let found = errors(&v, &doc);
            assert!(
                found.iter().any(|e| e.contains(named)),
                "{to:?} should fail naming {named}: {found:?}"
            );
        }
        // A memory size Lambda refuses.
        assert!(template.contains("memory: 128 "));
        let doc = yaml(&template.replacen("memory: 128 ", "memory: 64 ", 1));
        let found = errors(&v, &doc);
        assert!(found.iter().any(|e| e.contains("memory")), "{found:?}");
    }

    #[test]
    fn the_template_points_editors_at_the_schema_and_the_repository_copy_is_current() {
        let template = std::fs::read_to_string(root().join("templates/wsctl.yaml")).unwrap();
        assert_eq!(
            template.lines().next(),
            Some(format!("# yaml-language-server: $schema={SCHEMA_FILE}").as_str())
        );
        let committed = std::fs::read_to_string(root().join(SCHEMA_FILE)).unwrap();
        assert!(
            committed == config::json_schema(),
            "{SCHEMA_FILE} is stale: run `wsctl schema > {SCHEMA_FILE}`"
        );
    }
}
