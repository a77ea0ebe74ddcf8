//! Reading the stack's log groups: one group read forward from CloudWatch Logs page by page,
//! so commands merge several groups in time order without holding a range in memory.

use std::collections::VecDeque;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;

use crate::aws::CallContext;
use crate::error::Error;

/// One log group's events from `start` (to `end`, if any) matching a pattern, read forward.
pub struct Cursor {
    pub group: String,
    pub label: String,
    pattern: Option<String>,
    start: i64,
    end: Option<i64>,
    buffer: VecDeque<FilteredLogEvent>,
    token: Option<String>,
    done: bool,
}

impl Cursor {
    pub fn new(
        group: &str,
        label: &str,
        pattern: Option<&str>,
        start: i64,
        end: Option<i64>,
    ) -> Cursor {
        Cursor {
            group: group.to_string(),
            label: label.to_string(),
            pattern: pattern.map(str::to_string),
            start,
            end,
            buffer: VecDeque::new(),
            token: None,
            done: false,
        }
    }

    /// The next event's (timestamp, ingestion time), reading a page if none is buffered;
    /// `None` once the range is read.
    pub async fn peek(&mut self, logs: &Client) -> Result<Option<(i64, i64)>, Error> {
        // FilterLogEvents may answer an empty page with a token: more may follow.
        while self.buffer.is_empty() && !self.done {
            let page = logs
                .filter_log_events()
                .log_group_name(&self.group)
                .start_time(self.start)
                .set_end_time(self.end)
                .set_filter_pattern(self.pattern.clone())
                .set_next_token(self.token.take())
                .send()
                .await
                .ctx("FilterLogEvents", &self.group)?;
            self.buffer.extend(page.events.unwrap_or_default());
            self.token = page.next_token;
            self.done = self.token.is_none();
        }
        Ok(self
            .buffer
            .front()
            .map(|e| (e.timestamp.unwrap_or(0), e.ingestion_time.unwrap_or(0))))
    }

    /// The next event, reading a page if none is buffered; `None` once the range is read.
    pub async fn next(&mut self, logs: &Client) -> Result<Option<FilteredLogEvent>, Error> {
        self.peek(logs).await?;
        Ok(self.buffer.pop_front())
    }
}

/// An event's message ("" when it has none).
pub fn text(e: &FilteredLogEvent) -> &str {
    e.message.as_deref().unwrap_or_default()
}
