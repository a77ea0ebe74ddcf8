//! The checks of each section of the config, one method each, run by [`Config::problems`].

use super::*;

impl Config {
    pub(super) fn name_problems(&self, bad: &mut impl FnMut(String, String)) {
        if !is_name(&self.stack, 20) {
            bad(
                "stack".into(),
                format!(
                    "`{}` is not allowed: use 1-20 characters, lower-case letters, digits and `-`, starting with a letter",
                    self.stack
                ),
            );
        }
        if !is_name(&self.stage, 16) {
            bad(
                "stage".into(),
                format!(
                    "`{}` is not allowed: use 1-16 characters, lower-case letters, digits and `-`, starting with a letter",
                    self.stage
                ),
            );
        }
        if let Some(region) = &self.region {
            let ok = region.split('-').count() >= 3
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                bad(
                    "region".into(),
                    format!("`{region}` is not an AWS region name such as `eu-west-1`"),
                );
            }
        }
    }

    /// Each function: its name, memory, timeout, handler, environment, tables and the functions it invokes.
    pub(super) fn function_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.functions.is_empty() {
            bad(
                "functions".into(),
                "at least one function is required".into(),
            );
        }
        for (name, f) in &self.functions {
            let at = format!("functions.{name}");
            if !is_name(name, 24) {
                bad(at.clone(), "function names use 1-24 characters, lower-case letters, digits and `-`, starting with a letter".into());
            }
            if !(128..=10240).contains(&f.memory) {
                bad(
                    format!("{at}.memory"),
                    format!(
                        "{} MB is out of range: Lambda allows 128 to 10240",
                        f.memory
                    ),
                );
            }
            if !(1..=900).contains(&f.timeout) {
                bad(
                    format!("{at}.timeout"),
                    format!("{} s is out of range: Lambda allows 1 to 900", f.timeout),
                );
            }
            for key in f.environment.keys() {
                // Lambda's pattern for a key: `[a-zA-Z]([a-zA-Z0-9_])+` (Environment, API reference).
                let valid = key.len() >= 2
                    && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    bad(
                        format!("{at}.environment.{key}"),
                        "variable names are 2 or more letters, digits and `_`, starting with a letter (Lambda's rule)".into(),
                    );
                } else if LAMBDA_RESERVED_ENV.contains(&key.as_str()) {
                    bad(
                        format!("{at}.environment.{key}"),
                        format!("`{key}` is reserved: Lambda sets it in every function; remove it"),
                    );
                } else if key.starts_with("AWS_") || key.starts_with("WSCTL_") {
                    bad(format!("{at}.environment.{key}"), "names starting with AWS_ or WSCTL_ are reserved (Lambda and the AWS SDK read AWS_*, wsctl sets WSCTL_* itself)".into());
                }
            }
            for table in f.tables.keys() {
                if !self.tables.contains_key(table) {
                    bad(
                        format!("{at}.tables.{table}"),
                        format!(
                            "no table `{table}` is declared under `tables`; declared: {}",
                            list(self.tables.keys())
                        ),
                    );
                }
            }
            for target in &f.invoke {
                if !self.functions.contains_key(target) {
                    bad(
                        format!("{at}.invoke"),
                        format!(
                            "no function `{target}`; declared: {}",
                            list(self.functions.keys())
                        ),
                    );
                }
            }
            if f.reserved_concurrency.is_some_and(|n| n == 0 || n > 10_000) {
                bad(
                    format!("{at}.reserved_concurrency"),
                    "1 to 10000 (0 would throttle every call; stay below the account's limit, 1000 by default)"
                        .into(),
                );
            }
            // Lambda's Handler: at most 128 characters matching `[^\s]+` (CreateFunction).
            if let Some(h) = &f.handler
                && (h.is_empty() || h.chars().count() > 128 || h.chars().any(char::is_whitespace))
            {
                bad(
                    format!("{at}.handler"),
                    "1 to 128 characters, no spaces (Lambda's rule); omit it for `bootstrap`"
                        .into(),
                );
            }
            if f.bin.as_deref().is_some_and(str::is_empty) {
                bad(
                    format!("{at}.bin"),
                    "must not be empty; omit it to use the crate's name".into(),
                );
            }
        }
    }

    /// The routes, and the functions they name.
    pub(super) fn route_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.routes.is_empty() {
            bad(
                "routes".into(),
                "at least one route is required, e.g. `$default: message`".into(),
            );
        }
        for (key, function) in &self.routes {
            let at = format!("routes.{key}");
            if key.starts_with('$') {
                if !SPECIAL_ROUTES.contains(&key.as_str()) {
                    bad(
                        at.clone(),
                        format!(
                            "`{key}` is not a route key: the only keys starting with `$` are $connect, $disconnect and $default"
                        ),
                    );
                }
            } else if key.is_empty()
                || key.len() > 128
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
            {
                bad(
                    at.clone(),
                    format!(
                        "`{key}` is not a route key: use 1-128 letters, digits, `_`, `-`, `.` or `:` (it is matched against the `action` field of a frame)"
                    ),
                );
            }
            if !self.functions.contains_key(function) {
                bad(
                    at,
                    format!(
                        "no function `{function}`; declared: {}",
                        list(self.functions.keys())
                    ),
                );
            }
        }
        if !self
            .route_selection_expression
            .starts_with("$request.body.")
        {
            bad(
                "route_selection_expression".into(),
                format!(
                    "`{}` is not allowed: it must select a body field, e.g. `$request.body.action`",
                    self.route_selection_expression
                ),
            );
        }
    }

    /// The `$connect` authorizer: its function, identity source, audience and identity provider.
    pub(super) fn authorizer_problems(&self, bad: &mut impl FnMut(String, String)) {
        if let Some(auth) = &self.authorizer {
            if !self.functions.contains_key(&auth.function) {
                bad(
                    "authorizer.function".into(),
                    format!(
                        "no function `{}`; declared: {}",
                        auth.function,
                        list(self.functions.keys())
                    ),
                );
            }
            if !self.routes.contains_key("$connect") {
                bad(
                    "authorizer".into(),
                    "an authorizer runs on `$connect`, so `routes` must have a `$connect` route"
                        .into(),
                );
            }
            if auth.identity_source.is_empty() {
                bad(
                    "authorizer.identity_source".into(),
                    format!("at least one source is required, e.g. `{DEFAULT_IDENTITY_SOURCE}`"),
                );
            }
            for source in &auth.identity_source {
                let ok = [
                    "route.request.querystring.",
                    "route.request.header.",
                    "stageVariables.",
                    "context.",
                ]
                .iter()
                .any(|p| source.starts_with(p) && source.len() > p.len());
                if !ok {
                    bad(
                        "authorizer.identity_source".into(),
                        format!(
                            "`{source}` is not an identity source: use route.request.querystring.NAME or route.request.header.NAME"
                        ),
                    );
                }
            }
            if auth.audience.as_deref().is_some_and(str::is_empty) {
                bad(
                    "authorizer.audience".into(),
                    "must not be empty; omit it to accept tokens without `aud`".into(),
                );
            }
            if let Some(oidc) = &auth.oidc {
                // The same rule the authorizer applies before fetching keys.
                let url = wsctl_functions::http::is_trusted_url;
                if !url(&oidc.issuer) {
                    bad(
                        "authorizer.oidc.issuer".into(),
                        format!(
                            "`{}` is not an https:// URL (the `iss` of the provider's tokens)",
                            oidc.issuer
                        ),
                    );
                }
                if oidc.audience.is_empty() {
                    bad(
                        "authorizer.oidc.audience".into(),
                        "required: the `aud` the provider puts in tokens for this application"
                            .into(),
                    );
                }
                if let Some(u) = &oidc.jwks_url
                    && !url(u)
                {
                    bad(
                        "authorizer.oidc.jwks_url".into(),
                        format!("`{u}` is not an https:// URL (plain http only to this machine)"),
                    );
                }
                if oidc
                    .capabilities_claim
                    .as_deref()
                    .is_some_and(str::is_empty)
                {
                    bad(
                        "authorizer.oidc.capabilities_claim".into(),
                        "must not be empty; omit it to give every user `default_capabilities`"
                            .into(),
                    );
                }
                if let Some(prefix) = &oidc.user_prefix
                    && (prefix.contains('|') || prefix.chars().count() > 64)
                {
                    bad(
                        "authorizer.oidc.user_prefix".into(),
                        format!(
                            "`{prefix}` must be at most 64 characters without `|` (the separator before `sub`)"
                        ),
                    );
                }
                for (glob, ops) in &oidc.default_capabilities {
                    let rule = format!("{glob}:{}", ops.join(","));
                    if let Err(why) = wsctl_functions::auth::Capabilities::parse_rule(&rule) {
                        bad(format!("authorizer.oidc.default_capabilities.{glob}"), why);
                    }
                }
            }
        }
    }

    /// Each table: its name, keys and indexes.
    pub(super) fn table_problems(&self, bad: &mut impl FnMut(String, String)) {
        for (name, t) in &self.tables {
            let at = format!("tables.{name}");
            if !is_name(name, 24) {
                bad(at.clone(), "table names use 1-24 characters, lower-case letters, digits and `-`, starting with a letter".into());
            }
            let mut keys = vec![
                (format!("{at}.partition_key"), Some(&t.partition_key)),
                (format!("{at}.sort_key"), t.sort_key.as_ref()),
            ];
            for (index, i) in &t.indexes {
                // DynamoDB's IndexName: 3-255 characters of `[a-zA-Z0-9_.-]` (CreateTable, API
                // reference). Table names need no such check: `is_name` above keeps the
                // physical `STACK-STAGE-NAME` within the same rule.
                let ok = (3..=255).contains(&index.len())
                    && index
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    bad(
                        format!("{at}.indexes.{index}"),
                        "index names are 3-255 letters, digits, `_`, `.` or `-` (DynamoDB's rule)"
                            .into(),
                    );
                }
                keys.push((
                    format!("{at}.indexes.{index}.partition_key"),
                    Some(&i.partition_key),
                ));
                keys.push((
                    format!("{at}.indexes.{index}.sort_key"),
                    i.sort_key.as_ref(),
                ));
            }
            let mut types: BTreeMap<String, String> = BTreeMap::new();
            for (field, spec) in keys {
                let Some(spec) = spec else { continue };
                match KeyAttr::parse(spec) {
                    Err(e) => bad(field, e),
                    Ok(k) => {
                        if let Some(prev) = types.insert(k.name.clone(), k.kind.clone())
                            && prev != k.kind
                        {
                            bad(
                                field,
                                format!(
                                    "attribute `{}` is used as {} elsewhere in this table; one attribute has one type",
                                    k.name, prev
                                ),
                            );
                        }
                    }
                }
            }
            if t.ttl_attribute.is_empty() {
                bad(
                    format!("{at}.ttl_attribute"),
                    "must name the attribute holding the expiry (epoch seconds), e.g. `ttl`".into(),
                );
            }
        }
    }

    /// The stage's throttling and the log retention.
    pub(super) fn stage_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.throttling.burst < 0 || self.throttling.burst > 5000 {
            bad(
                "throttling.burst".into(),
                format!(
                    "{} is out of range: 0 to 5000 (the account's burst limit)",
                    self.throttling.burst
                ),
            );
        }
        if !(0.0..=10000.0).contains(&self.throttling.rate) {
            bad(
                "throttling.rate".into(),
                format!(
                    "{} is out of range: 0 to 10000 requests/s (the account's limit)",
                    self.throttling.rate
                ),
            );
        }
        let publish = layout::PUBLISH_FUNCTION;
        let serves_url = self
            .functions
            .get(publish)
            .is_some_and(|f| f.handler.as_deref() == Some(publish));
        if self.publish_endpoint && !serves_url {
            bad(
                "publish_endpoint".into(),
                format!(
                    "the endpoint is a URL of the `{publish}` function, which this stack does not have as the bundled one; add `{publish}` to `functions:` with `crate: functions/pubsub` and `handler: {publish}`, or remove `publish_endpoint`"
                ),
            );
        }
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            bad(
                "log_retention_days".into(),
                format!(
                    "{} is not a CloudWatch Logs retention; allowed: {}",
                    self.log_retention_days,
                    list(LOG_RETENTION_DAYS.iter())
                ),
            );
        }
    }

    /// The stack's tags, by the narrowest rule of the services that carry them.
    pub(super) fn tag_problems(&self, bad: &mut impl FnMut(String, String)) {
        for (key, value) in &self.tags {
            let at = format!("tags.{key}");
            if key.starts_with("wsctl:") || key.to_ascii_lowercase().starts_with("aws:") {
                bad(
                    at.clone(),
                    "keys starting with `wsctl:` or `aws:` are reserved".into(),
                );
            }
            if key.is_empty() || key.chars().count() > 128 {
                bad(at.clone(), "tag keys are 1-128 characters".into());
            }
            if value.chars().count() > 256 {
                bad(at.clone(), "tag values are at most 256 characters".into());
            }
            if let Some(c) = key.chars().chain(value.chars()).find(|&c| !is_tag_char(c)) {
                bad(
                    at,
                    format!(
                        "{c:?} is not allowed in a tag: use letters, digits, spaces and `_ . : / = + -` (DynamoDB's rule, the narrowest of the services wsctl tags: \"letters, white space, and numbers, plus the following special characters: + - = . _ : /\")"
                    ),
                );
            }
        }
        let tags = self.names().tags(&self.tags);
        // A table carries one tag more than the rest: when its TTL last changed.
        if tags.len() + TABLE_OWN_TAGS > MAX_TAGS {
            let own = tags.len() - self.tags.len() + TABLE_OWN_TAGS;
            bad(
                "tags".into(),
                format!(
                    "{} tags is too many: AWS allows {MAX_TAGS} per resource and wsctl adds {own} of its own, so at most {}",
                    self.tags.len(),
                    MAX_TAGS - own
                ),
            );
        }
    }
}
