//! `wsctl`: parse, run, map the outcome to an exit code.

mod args;
mod aws;
mod bench;
mod book;
mod build;
mod commands;
mod config;
mod engine;
mod error;
mod glibc;
mod interrupt;
mod local;
mod names;
mod output;
#[cfg(test)]
mod reference;
mod stack;

fn main() {
    let cli = args::parse();
    let printer = output::Printer::new(cli.output, cli.verbose, cli.quiet, cli.no_progress);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(error::exit::INTERNAL);
        }
    };
    let code = match runtime.block_on(commands::run(cli, printer)) {
        Ok(()) => error::exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
