//! End-to-end tests: the real `wsctl` binary against a moto server per test.

mod build;
mod config_errors;
mod deploy;
mod demo;
mod destroy;
mod dev;
mod functions;
mod interrupt;
mod security;
