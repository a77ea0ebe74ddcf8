//! One alarm of `alarms:`: the metrics it reads combined by metric math (`SUM` or `MAX` of
//! them), compared with its threshold each period, telling the stack's topics when it goes off
//! and when it is back to OK.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, Tag,
};
use serde::Serialize;

use crate::aws::{AwsError, CallContext, Clients, TagChange, all_pages, found, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

/// Missing data (no traffic, a function never invoked) is not an alarm.
const MISSING_DATA: &str = "notBreaching";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmSpec {
    pub name: String,
    pub description: String,
    /// What each period of each metric is reduced to: `Sum` or `Maximum`.
    pub stat: String,
    /// How the metrics' values are combined: `SUM` or `MAX` (a metric math function).
    pub combine: String,
    pub metrics: Vec<AlarmMetric>,
    pub period_seconds: i32,
    pub periods: i32,
    /// Goes off at this value or above.
    pub threshold: f64,
    /// Topics told when it goes off and when it is back to OK.
    pub actions: Vec<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AlarmMetric {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
}

impl AlarmSpec {
    /// The metric math: one query a metric, and the expression the alarm watches.
    fn queries(&self) -> Vec<MetricDataQuery> {
        let mut out: Vec<MetricDataQuery> = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let dimensions = m
                    .dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                    .collect();
                MetricDataQuery::builder()
                    .id(format!("m{i}"))
                    .return_data(false)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace(&m.namespace)
                                    .metric_name(&m.name)
                                    .set_dimensions(Some(dimensions))
                                    .build(),
                            )
                            .period(self.period_seconds)
                            .stat(&self.stat)
                            .build(),
                    )
                    .build()
            })
            .collect();
        out.push(
            MetricDataQuery::builder()
                .id("total")
                .expression(format!("{}(METRICS())", self.combine))
                .label(&self.description)
                .return_data(true)
                .build(),
        );
        out
    }

    /// The spec of an alarm as CloudWatch describes it; `None` for one of another shape (no
    /// metric math, or a different expression), which is then put again.
    fn from_alarm(alarm: &MetricAlarm, tags: Tags) -> Option<AlarmSpec> {
        let mut metrics = Vec::new();
        let mut stat = None;
        let mut period = None;
        let mut combine = None;
        for q in alarm.metrics() {
            if let Some(expression) = q.expression() {
                combine = expression.strip_suffix("(METRICS())").map(str::to_string);
                continue;
            }
            let s = q.metric_stat()?;
            let m = s.metric()?;
            stat = s.stat().map(str::to_string);
            period = s.period();
            metrics.push(AlarmMetric {
                namespace: m.namespace()?.to_string(),
                name: m.metric_name()?.to_string(),
                dimensions: m
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                    .collect(),
            });
        }
        Some(AlarmSpec {
            name: alarm.alarm_name()?.to_string(),
            description: alarm.alarm_description().unwrap_or_default().to_string(),
            stat: stat?,
            combine: combine?,
            metrics,
            period_seconds: period?,
            periods: alarm.evaluation_periods()?,
            threshold: alarm.threshold()?,
            actions: alarm.alarm_actions().to_vec(),
            tags,
        })
    }

    async fn put(&self, clients: &Clients, tags: bool) -> Result<(), AwsError> {
        // PutMetricAlarm ignores `Tags` on an alarm that exists ("PutMetricAlarm", CloudWatch
        // API Reference): an update changes them with TagResource and UntagResource.
        let tags = tags.then(|| cloudwatch_tags(&self.tags));
        clients
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&self.name)
            .alarm_description(&self.description)
            .set_metrics(Some(self.queries()))
            .evaluation_periods(self.periods)
            .threshold(self.threshold)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .treat_missing_data(MISSING_DATA)
            .actions_enabled(true)
            .set_alarm_actions(Some(self.actions.clone()))
            .set_ok_actions(Some(self.actions.clone()))
            .set_tags(tags)
            .send()
            .await
            .ctx("PutMetricAlarm", &self.name)?;
        Ok(())
    }
}

impl Resource for AlarmSpec {
    const LABEL: &'static str = "alarm";
    /// After the API: its metrics name the API's id.
    const WAVE: u8 = 8;

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        for alarm in stack_alarms(clients, names).await? {
            let (Some(name), Some(arn)) = (alarm.alarm_name(), alarm.alarm_arn()) else {
                continue;
            };
            let tags = tag_map(
                clients
                    .cloudwatch
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .ctx("ListTagsForResource", name)?
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| Some((t.key?, t.value?))),
            );
            let id = ResourceId {
                kind: Kind::Alarm,
                name: name.to_string(),
            };
            if !names.owns(&tags) {
                if expected.contains(&id.name) {
                    live.foreign.push(id);
                }
                continue;
            }
            // One of another shape is planned as a change, and put again whole.
            let spec = AlarmSpec::from_alarm(&alarm, tags.clone()).unwrap_or(AlarmSpec {
                name: name.to_string(),
                description: String::new(),
                stat: String::new(),
                combine: String::new(),
                metrics: Vec::new(),
                period_seconds: 0,
                periods: 0,
                threshold: f64::NAN,
                actions: Vec::new(),
                tags,
            });
            live.resources.insert(
                id,
                Live {
                    spec: Spec::Alarm(spec),
                    physical_id: Some(arn.to_string()),
                },
            );
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx.clients, true).await?;
        Ok(None)
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let settings = |s: &AlarmSpec| AlarmSpec {
            tags: Tags::new(),
            ..s.clone()
        };
        if settings(self) != settings(current) {
            self.put(clients, false).await?;
        }
        let arn = physical_id
            .map(str::to_string)
            .unwrap_or_else(|| cx.target.arn("cloudwatch", &format!("alarm:{}", self.name)));
        if let Some(change) = TagChange::between(Some(&current.tags), &self.tags) {
            change
                .apply(
                    async |keys| {
                        clients
                            .cloudwatch
                            .untag_resource()
                            .resource_arn(&arn)
                            .set_tag_keys(Some(keys))
                            .send()
                            .await
                            .ctx("UntagResource", &self.name)?;
                        Ok(())
                    },
                    async |tags| {
                        clients
                            .cloudwatch
                            .tag_resource()
                            .resource_arn(&arn)
                            .set_tags(Some(cloudwatch_tags(tags)))
                            .send()
                            .await
                            .ctx("TagResource", &self.name)?;
                        Ok(())
                    },
                )
                .await?;
        }
        Ok(None)
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        found(
            cx.clients
                .cloudwatch
                .delete_alarms()
                .alarm_names(name)
                .send()
                .await,
        )
        .ctx("DeleteAlarms", name)?;
        Ok(())
    }
}

fn cloudwatch_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Every alarm named with the stack's prefix, the stack's or not.
async fn stack_alarms(clients: &Clients, names: &Names) -> Result<Vec<MetricAlarm>, AwsError> {
    let prefix = names.alarm("");
    all_pages(async |token| {
        let page = clients
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix(&prefix)
            .set_next_token(token)
            .send()
            .await
            .ctx("DescribeAlarms", format!("{prefix}*"))?;
        Ok((page.metric_alarms.unwrap_or_default(), page.next_token))
    })
    .await
}

/// An alarm's state as CloudWatch last set it, for `wsctl status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmState {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// CloudWatch's sentence on why it is in that state.
    pub reason: String,
    /// Since when, as CloudWatch gives it (ISO 8601).
    pub since: Option<String>,
}

/// The states of the alarms named with the stack's prefix (`DescribeAlarms`), by name.
pub async fn states(clients: &Clients, names: &Names) -> Result<Vec<AlarmState>, AwsError> {
    let mut out: Vec<AlarmState> = stack_alarms(clients, names)
        .await?
        .into_iter()
        .filter_map(|a| {
            Some(AlarmState {
                name: a.alarm_name?,
                state: a.state_value.map(|s| s.as_str().to_string())?,
                reason: a.state_reason.unwrap_or_default(),
                since: a
                    .state_updated_timestamp
                    .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
