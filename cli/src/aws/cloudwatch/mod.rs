//! The stage's CloudWatch alarms and dashboard.

pub mod alarm;
pub mod dashboard;

pub use alarm::AlarmSpec;
pub use dashboard::DashboardSpec;
