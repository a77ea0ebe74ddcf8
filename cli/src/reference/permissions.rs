//! The IAM documents the book shows, from the code that makes them, for the template's stack
//! (`chat`/`dev` in account 123456789012, eu-west-1): the deploying identity's policy
//! (`wsctl deploy --print-policy`), the roles' permissions boundary (`--print-boundary`), a
//! backend's publish policy (`wsctl publish --print-policy`) and each function's role.

use serde_json::Value;

use crate::aws::policy::{deployer_policy, publisher_policy};
use crate::config::Config;
use crate::engine::desired::{boundary_policy, role_policy};
use crate::names::Target;

pub fn template() -> Config {
    Config::parse(
        std::path::Path::new("wsctl.yaml"),
        include_str!("../../../templates/wsctl.yaml"),
    )
    .expect("the template loads")
}

pub fn target() -> Target {
    Target {
        account: "123456789012".into(),
        region: "eu-west-1".into(),
        api_id: None,
        authorizer_id: None,
        logging_role: None,
    }
}

fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON") + "\n"
}

pub fn pages() -> Vec<(String, String)> {
    let config = template();
    let target = target();
    let names = config.names();
    let mut roles = super::generated_note(
        "the code that writes each function's role (cli/src/engine/desired/policies.rs)",
    );
    roles.push_str(
        "\nEach function's role has one inline policy, shown here for the template's stack \
         (`chat`/`dev`, account 123456789012, eu-west-1; the API's id is its own once created).\n",
    );
    let mut api_target = target.clone();
    api_target.api_id = Some("a1b2c3d4e5".into());
    for logical in config.functions.keys() {
        roles.push_str(&format!(
            "\n### `{logical}`\n\n```json\n{}```\n",
            json(&role_policy(&config, &names, &api_target, logical))
        ));
    }
    vec![
        (
            "reference/generated/deployer-policy.json".into(),
            json(&deployer_policy(&config, &target)),
        ),
        (
            "reference/generated/boundary-policy.json".into(),
            json(&boundary_policy(&names, &target)),
        ),
        (
            "reference/generated/publisher-policy.json".into(),
            json(&publisher_policy(&config, &target)),
        ),
        ("reference/generated/roles.md".into(), roles),
    ]
}
