//! End-to-end tests: the real `wsctl` binary against a moto server per test.

mod access_logs;
mod bench;
mod browser;
mod build;
mod clients;
mod config_errors;
mod demo;
mod deploy;
mod destroy;
mod dev;
mod domain;
mod endpoint;
mod function_states;
mod functions;
mod interrupt;
mod limits;
mod logs;
mod monitoring;
mod partition;
mod permissions;
mod policy;
mod quotas;
mod scale;
mod security;
mod stage;
mod tables;
