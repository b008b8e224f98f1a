//! Entry point: parse the command line, install the Ctrl-C handler, run the
//! subcommand, print the final error and choose the exit status.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;

use retriever::cli::{Cli, Command};
use retriever::commands;
use retriever::config::Settings;
use retriever::fetch::{INTERRUPTED, Interrupted};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // First Ctrl-C: stop taking new work and finish cleanly (every write to
    // the cache is atomic). Second Ctrl-C: leave at once.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again; stopping now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted; finishing what is in flight (press Ctrl-C again to stop at once)");
    });
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.is::<Interrupted>()) => {
            eprintln!("retriever: {e:#}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("retriever: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    match &cli.command {
        Command::Fetch(args) => commands::fetch::run(&settings, args),
        Command::Ls(args) => commands::ls::run(&settings, args.json),
        Command::Store(args) => commands::store::run(&settings, args),
        Command::Echo(args) => commands::echo::run(&settings, args),
    }
}
