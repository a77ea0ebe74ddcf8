//! Reading the stack's log groups: one group read forward from CloudWatch Logs page by page,
//! so commands merge several groups in time order without holding a range in memory.

use std::collections::VecDeque;

use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;

use crate::aws::CallContext;
use crate::error::Error;

/// One log group read forward page by page.
pub struct Cursor {
    pub group: String,
    pub label: String,
    pub buffer: VecDeque<FilteredLogEvent>,
    token: Option<String>,
    done: bool,
}

impl Cursor {
    pub fn new(group: &str, label: &str) -> Cursor {
        Cursor {
            group: group.to_string(),
            label: label.to_string(),
            buffer: VecDeque::new(),
            token: None,
            done: false,
        }
    }

    /// Reads pages from `start` (to `end`, if any) until one has events or there are no more.
    pub async fn fill(
        &mut self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        pattern: Option<&str>,
        start: i64,
        end: Option<i64>,
    ) -> Result<(), Error> {
        // FilterLogEvents may answer an empty page with a token: more may follow.
        while self.buffer.is_empty() && !self.done {
            let page = logs
                .filter_log_events()
                .log_group_name(&self.group)
                .start_time(start)
                .set_end_time(end)
                .set_filter_pattern(pattern.map(str::to_string))
                .set_next_token(self.token.take())
                .send()
                .await
                .ctx("FilterLogEvents", &self.group)?;
            self.buffer.extend(page.events.unwrap_or_default());
            self.token = page.next_token;
            self.done = self.token.is_none();
        }
        Ok(())
    }

    pub fn head_key(&self) -> (i64, i64) {
        let e = &self.buffer[0];
        (e.timestamp.unwrap_or(0), e.ingestion_time.unwrap_or(0))
    }

    pub fn pop(&mut self) -> (String, FilteredLogEvent) {
        let e = self.buffer.pop_front().expect("a buffered event");
        (self.label.clone(), e)
    }
}

/// An event's message ("" when it has none).
pub fn text(e: &FilteredLogEvent) -> &str {
    e.message.as_deref().unwrap_or_default()
}
