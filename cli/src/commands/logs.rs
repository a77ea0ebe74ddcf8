//! `wsctl logs`: the stack's function logs (and with `--access` the stage's access log), merged
//! in time order, from CloudWatch Logs: the same calls on AWS and on `wsctl dev`, which sends
//! its functions' lines to the emulator's CloudWatch Logs as Lambda does.
//!
//! `--follow` polls `FilterLogEvents` rather than a Live Tail session: Live Tail samples a
//! session down to 500 events a second ("StartLiveTail", CloudWatch Logs API Reference), so a
//! busy stage's lines would be skipped without a word, and it is billed per session-minute and
//! ends after three hours. Each poll reads again the last [`LATE`] of every group, as events
//! reach FilterLogEvents a moment after their timestamp, and prints only the events it has not
//! printed (by event id): no gaps for events ingested within that window, no repeats.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use serde::Serialize;
use serde_json::Value;

use crate::args::LogsArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::interrupt::CtrlC;
use crate::local::events::epoch_ms;
use crate::output::Printer;
use crate::stack::Stack;
use crate::stack::logs::{Cursor, text};

/// How far back each `--follow` poll reads again, for events ingested after their timestamp.
const LATE: Duration = Duration::from_secs(30);
/// Between polls; each poll is one FilterLogEvents call a group (the account's quota for it is
/// a few calls a second, shared).
const POLL: Duration = Duration::from_secs(2);

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &LogsArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let sources = sources(config, args)?;
    let query = Query::new(args);
    let stack = Stack::open(config, aws).await?;
    let groups: Vec<(String, String)> = sources
        .into_iter()
        .map(|s| match s {
            Source::Function(key) => (stack.names.log_group(&key), key),
            Source::Access => (stack.names.access_log_group(), "access".to_string()),
        })
        .collect();
    let now = epoch_ms() as i64;
    let start = now - args.since.as_millis() as i64;
    let logs = &stack.clients.logs;
    let pattern = query.server.as_deref();

    // The range up to now, merged across groups as each is read page by page.
    let mut cursors: Vec<Cursor> = groups
        .iter()
        .map(|(group, label)| Cursor::new(group, label, pattern, start, Some(now)))
        .collect();
    let mut seen = Seen::default();
    loop {
        let mut first: Option<((i64, i64), usize)> = None;
        for (i, c) in cursors.iter_mut().enumerate() {
            if let Some(key) = c.peek(logs).await?
                && first.is_none_or(|(k, _)| key < k)
            {
                first = Some((key, i));
            }
        }
        let Some((_, i)) = first else {
            break;
        };
        let cursor = &mut cursors[i];
        let Some(event) = cursor.next(logs).await? else {
            break;
        };
        // Only what the first poll will read again is remembered: the range itself streams.
        if args.follow && event.timestamp.unwrap_or(0) >= now - LATE.as_millis() as i64 {
            seen.add(&cursor.label, &event);
        }
        if query.keeps(text(&event)) {
            printer.line(&LogLine::from(&cursor.label, &event));
        }
    }
    if !args.follow {
        return Ok(());
    }
    eprintln!("following {} log group(s); Ctrl-C stops", groups.len());
    let mut stop = CtrlC::listen();
    // Every event up to here has been read once.
    let mut read_to = now;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.pressed() => return Ok(()),
        }
        let polled_at = epoch_ms() as i64;
        let from = (read_to - LATE.as_millis() as i64).max(start);
        let mut failed = false;
        let mut fresh: Vec<(String, FilteredLogEvent)> = Vec::new();
        for (group, label) in &groups {
            let mut cursor = Cursor::new(group, label, pattern, from, None);
            // A failed poll is said and tried again at the next: following survives a throttle.
            let read = async {
                while let Some(event) = cursor.next(logs).await? {
                    if !seen.has(label, &event) {
                        fresh.push((label.clone(), event));
                    }
                }
                Ok::<_, Error>(())
            };
            if let Err(e) = read.await {
                eprintln!("reading {group} failed, trying again: {e}");
                failed = true;
            }
        }
        fresh.sort_by_key(|(_, e)| (e.timestamp.unwrap_or(0), e.ingestion_time.unwrap_or(0)));
        for (label, event) in fresh {
            seen.add(&label, &event);
            if query.keeps(text(&event)) {
                printer.line(&LogLine::from(&label, &event));
            }
        }
        // A group that could not be read is read again from the same point.
        if !failed {
            read_to = polled_at;
        }
        seen.forget_before(read_to - 2 * LATE.as_millis() as i64);
    }
}

enum Source {
    Function(String),
    Access,
}

/// The log groups asked for, checked against the config.
fn sources(config: &Config, args: &LogsArgs) -> Result<Vec<Source>, Error> {
    let known: Vec<&String> = config.functions.keys().collect();
    let mut out = Vec::new();
    for f in &args.functions {
        if !config.functions.contains_key(f) {
            return Err(Error::Usage {
                usage: format!(
                    "{f:?} is not a function of this stack\nhint: name one of {} (the keys under `functions:` in wsctl.yaml)",
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        out.push(Source::Function(f.clone()));
    }
    if out.is_empty() {
        out.extend(known.into_iter().map(|k| Source::Function(k.clone())));
    }
    if args.access {
        if config.access_logs.is_none() {
            return Err(Error::Usage {
                usage: "--access: this stage writes no access log\nhint: add `access_logs: {}` to wsctl.yaml and run `wsctl deploy`".into(),
            });
        }
        out.push(Source::Access);
    }
    Ok(out)
}

/// What the lines must match: the pattern CloudWatch Logs applies, and what is checked here
/// as well (an emulator may apply a pattern loosely, or only part of it).
struct Query {
    server: Option<String>,
    terms: Option<Terms>,
    must: Vec<String>,
}

impl Query {
    fn new(args: &LogsArgs) -> Query {
        let must: Vec<String> = [&args.connection, &args.request_id]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let terms = args.filter.as_deref().and_then(Terms::parse);
        // A structured pattern only CloudWatch can apply; otherwise the most selective single
        // term goes to the service (a quoted id), and the rest is checked here.
        let server = match (&args.filter, must.first()) {
            (Some(f), _) if terms.is_none() => Some(f.clone()),
            (_, Some(id)) => Some(format!("\"{}\"", id.replace('"', ""))),
            (Some(f), None) => Some(f.clone()),
            (None, None) => None,
        };
        Query {
            server,
            terms,
            must,
        }
    }

    fn keeps(&self, message: &str) -> bool {
        self.must.iter().all(|m| message.contains(m.as_str()))
            && self.terms.as_ref().is_none_or(|t| t.matches(message))
    }
}

/// A CloudWatch Logs filter pattern of terms ("Filter pattern syntax for metric filters,
/// subscription filters, filter log events", CloudWatch Logs User Guide): every plain term
/// must appear, none of the `-` ones, and at least one of the `?` ones when there are any;
/// `"…"` quotes a phrase. `None` for a JSON (`{…}`) or space-delimited (`[…]`) pattern.
#[derive(Debug, PartialEq)]
struct Terms {
    all: Vec<String>,
    none: Vec<String>,
    any: Vec<String>,
}

impl Terms {
    fn parse(pattern: &str) -> Option<Terms> {
        let p = pattern.trim();
        if p.starts_with('{') || p.starts_with('[') {
            return None;
        }
        let mut t = Terms {
            all: Vec::new(),
            none: Vec::new(),
            any: Vec::new(),
        };
        let mut rest = p;
        while !rest.is_empty() {
            rest = rest.trim_start();
            let (sign, body) = match rest.chars().next() {
                Some(c @ ('-' | '?')) => (Some(c), &rest[1..]),
                _ => (None, rest),
            };
            let (term, after) = match body.strip_prefix('"') {
                Some(q) => match q.find('"') {
                    Some(end) => (&q[..end], &q[end + 1..]),
                    None => (q, ""),
                },
                None => {
                    let end = body.find(char::is_whitespace).unwrap_or(body.len());
                    (&body[..end], &body[end..])
                }
            };
            if !term.is_empty() {
                match sign {
                    Some('-') => t.none.push(term.to_string()),
                    Some(_) => t.any.push(term.to_string()),
                    None => t.all.push(term.to_string()),
                }
            }
            rest = after;
        }
        Some(t)
    }

    fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
    }
}

/// The events printed lately, by group and id, so a poll that reads them again skips them.
#[derive(Default)]
struct Seen {
    ids: HashMap<(String, String), i64>,
}

impl Seen {
    fn key(label: &str, e: &FilteredLogEvent) -> (String, String) {
        (label.to_string(), e.event_id.clone().unwrap_or_default())
    }

    fn add(&mut self, label: &str, e: &FilteredLogEvent) {
        self.ids
            .insert(Self::key(label, e), e.timestamp.unwrap_or(0));
    }

    fn has(&self, label: &str, e: &FilteredLogEvent) -> bool {
        self.ids.contains_key(&Self::key(label, e))
    }

    fn forget_before(&mut self, at: i64) {
        self.ids.retain(|_, t| *t >= at);
    }
}

/// One printed line.
#[derive(Debug, Serialize)]
pub struct LogLine {
    /// RFC 3339, UTC.
    time: String,
    /// Milliseconds since the epoch, as CloudWatch Logs stores it.
    timestamp: i64,
    /// The function's key in wsctl.yaml, or `access` for the stage's access log.
    source: String,
    stream: String,
    event_id: String,
    message: String,
}

impl LogLine {
    fn from(label: &str, e: &FilteredLogEvent) -> LogLine {
        let timestamp = e.timestamp.unwrap_or(0);
        LogLine {
            time: crate::local::events::iso8601(timestamp.max(0) as u64),
            timestamp,
            source: label.to_string(),
            stream: e.log_stream_name.clone().unwrap_or_default(),
            event_id: e.event_id.clone().unwrap_or_default(),
            message: text(e).trim_end().to_string(),
        }
    }
}

impl Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:>10} | {}",
            &self.time[11..23],
            self.source,
            readable(&self.message)
        )
    }
}

/// A function's JSON line as `LEVEL message key=value … [connection=… request=…]`, its
/// metrics document as `METRIC name=value … dimension=value`; any other line as it is.
fn readable(message: &str) -> String {
    let Ok(Value::Object(line)) = serde_json::from_str::<Value>(message) else {
        return message.to_string();
    };
    if let Some(directives) = line
        .get("_aws")
        .and_then(|a| a.get("CloudWatchMetrics"))
        .and_then(Value::as_array)
    {
        let mut names = Vec::new();
        let mut dimensions = Vec::new();
        for d in directives {
            for m in d["Metrics"].as_array().into_iter().flatten() {
                names.extend(m["Name"].as_str());
            }
            for n in d["Dimensions"][0].as_array().into_iter().flatten() {
                dimensions.extend(n.as_str().filter(|n| *n != "Function"));
            }
        }
        let mut out = "METRIC".to_string();
        for n in names.iter().chain(&dimensions) {
            if let Some(v) = line.get(*n) {
                out.push_str(&format!(
                    " {n}={}",
                    v.as_str().map_or(v.to_string(), str::to_string)
                ));
            }
        }
        return out;
    }
    let (Some(level), Some(Value::Object(fields))) = (line.get("level"), line.get("fields")) else {
        return message.to_string();
    };
    let mut out = format!(
        "{:<5} {}",
        level.as_str().unwrap_or_default(),
        fields
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
    );
    let plain = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (k, v) in fields.iter().filter(|(k, _)| *k != "message") {
        out.push_str(&format!(" {k}={}", plain(v)));
    }
    if let Some(Value::Object(span)) = line.get("span") {
        let ids: Vec<String> = span
            .iter()
            .filter(|(k, _)| *k != "name")
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        if !ids.is_empty() {
            out.push_str(&format!(" [{}]", ids.join(" ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_patterns_are_read_as_cloudwatch_reads_them() {
        let t = Terms::parse(r#"ERROR -timeout ?alpha ?"beta gamma""#).unwrap();
        assert_eq!(t.all, vec!["ERROR"]);
        assert_eq!(t.none, vec!["timeout"]);
        assert_eq!(t.any, vec!["alpha", "beta gamma"]);
        assert!(t.matches("ERROR in alpha"));
        assert!(t.matches("ERROR near beta gamma"));
        assert!(!t.matches("ERROR near beta"), "a quoted phrase is one term");
        assert!(!t.matches("ERROR alpha timeout"));
        assert!(!t.matches("error alpha"), "terms are case-sensitive");
        assert_eq!(Terms::parse(r#"{ $.level = "ERROR" }"#), None);
        assert_eq!(Terms::parse("[ip, user, status = 500]"), None);
        assert!(Terms::parse("").unwrap().matches("anything"));
    }

    #[test]
    fn an_id_goes_to_the_service_as_one_quoted_term_and_is_checked_here_too() {
        let mut args = LogsArgs {
            functions: Vec::new(),
            access: false,
            since: Duration::from_secs(600),
            follow: false,
            filter: None,
            request_id: None,
            connection: Some("Xy+z/A1=".into()),
        };
        let q = Query::new(&args);
        assert_eq!(q.server.as_deref(), Some("\"Xy+z/A1=\""));
        assert!(q.keeps(r#"{"span":{"connection":"Xy+z/A1="}}"#));
        assert!(!q.keeps("START RequestId: 1"));

        // A term pattern beside it is checked here; a JSON one only the service can apply.
        args.filter = Some("frame -ping".into());
        let q = Query::new(&args);
        assert_eq!(q.server.as_deref(), Some("\"Xy+z/A1=\""));
        assert!(q.keeps("frame subscribe Xy+z/A1="));
        assert!(!q.keeps("frame ping Xy+z/A1="));
        args.filter = Some(r#"{ $.level = "WARN" }"#.into());
        let q = Query::new(&args);
        assert_eq!(q.server.as_deref(), Some(r#"{ $.level = "WARN" }"#));
        assert!(q.keeps("Xy+z/A1= anything"));
    }

    #[test]
    fn a_function_line_reads_as_level_message_fields_and_ids() {
        let line = r#"{"level":"INFO","fields":{"message":"frame","action":"subscribe","channel":"room-1"},"span":{"connection":"abc=","request":"r-1","name":"event"}}"#;
        assert_eq!(
            readable(line),
            "INFO  frame action=subscribe channel=room-1 [connection=abc= request=r-1]"
        );
        assert_eq!(
            readable("START RequestId: r-1 Version: $LATEST"),
            "START RequestId: r-1 Version: $LATEST"
        );
        assert_eq!(readable(r#"{"requestId":"x"}"#), r#"{"requestId":"x"}"#);
        let emf = r#"{"Action":"publish","Frames":1.0,"Function":"chat-dev-message","_aws":{"CloudWatchMetrics":[{"Dimensions":[["Function","Action"]],"Metrics":[{"Name":"Frames","Unit":"Count"}],"Namespace":"wsctl"}],"Timestamp":1}}"#;
        assert_eq!(readable(emf), "METRIC Frames=1.0 Action=publish");
    }
}
