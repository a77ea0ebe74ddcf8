//! End-to-end tests: the real `wsctl` binary against a moto server per test.

mod build;
mod config_errors;
mod deploy;
mod destroy;
mod functions;
mod interrupt;
