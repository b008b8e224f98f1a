//! Entry point: parse the command line, install the Ctrl-C handler, run the
//! subcommand, print the final error and choose the exit status.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use retriever::cli::{Cli, Command};
use retriever::commands;
use retriever::config::Settings;
use retriever::interrupt;

fn main() -> ExitCode {
    // The matches are kept besides the parsed `Cli`: they tell a flag from
    // its environment variable from clap's default, which the settings need.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // First Ctrl-C: stop taking new work and finish cleanly (every write to
    // the cache is atomic). Second Ctrl-C: leave at once.
    let _ = ctrlc::set_handler(|| {
        if interrupt::cancel() {
            eprintln!("\ninterrupted again; stopping now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted; finishing what is in flight (press Ctrl-C again to stop at once)");
    });
    match run(&cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.is::<retriever::config::UsageError>()) => {
            eprintln!("retriever: {e:#}");
            ExitCode::from(2)
        }
        Err(e) if e.is::<retriever::service::NotOnThisPlatform>() => {
            eprintln!("retriever: {e:#}");
            ExitCode::from(2)
        }
        Err(e) if interrupt::is_interrupted(&e) => {
            eprintln!("retriever: {e:#}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("retriever: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let settings = Settings::resolve(matches)?;
    for warning in &settings.warnings {
        eprintln!("warning: {warning}");
    }
    match &cli.command {
        Command::Fetch(args) => commands::fetch::run(&settings, args),
        Command::Ls(args) => commands::ls::run(&settings, args),
        Command::Store(args) => commands::store::run(&settings, args),
        Command::Prune(args) => commands::prune::run(&settings, args),
        Command::Watch(args) => commands::watch::run(&settings, args),
        Command::Echo(_) => commands::echo::run(&settings),
        Command::Config(args) => commands::config::run(&settings, args),
        Command::Status(args) => commands::status::run(&settings, args),
        Command::Service(args) => commands::service::run(&settings, &cli.global, args),
    }
}
