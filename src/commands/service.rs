//! `retriever service`: the router as a Windows service. Turns the flags
//! into the [`crate::service::ServicePlan`] and hands it to the Windows layer
//! ([`crate::service`]); `service run` runs the same code as `watch`. On
//! other platforms every action ends with [`NotOnThisPlatform`].

use anyhow::Result;

use crate::cli::{GlobalArgs, ServiceArgs};
use crate::config::Settings;
#[cfg(not(windows))]
use crate::service::NotOnThisPlatform;

/// Where a password for a service account that needs one is read from:
/// never the command line, which other users can read.
pub const PASSWORD_VARIABLE: &str = "RETRIEVER_SERVICE_PASSWORD";

#[cfg(not(windows))]
pub fn run(_settings: &Settings, _global: &GlobalArgs, _args: &ServiceArgs) -> Result<()> {
    Err(NotOnThisPlatform.into())
}

#[cfg(windows)]
pub fn run(settings: &Settings, global: &GlobalArgs, args: &ServiceArgs) -> Result<()> {
    use crate::cli::ServiceAction;
    use crate::service::windows;
    match &args.action {
        ServiceAction::Install(a) => install(settings, global, a),
        ServiceAction::Uninstall(a) => {
            windows::uninstall(&a.name)?;
            eprintln!(
                "removed the service `{}`; its cache, config and log files are left as they are",
                a.name
            );
            Ok(())
        }
        ServiceAction::Start(a) => {
            windows::start(&a.name)?;
            eprintln!(
                "the service `{}` runs; see `retriever status` and `sc query {}`",
                a.name, a.name
            );
            Ok(())
        }
        ServiceAction::Stop(a) => {
            windows::stop(&a.name)?;
            eprintln!("the service `{}` has stopped", a.name);
            Ok(())
        }
        ServiceAction::Run(a) => {
            let settings = settings.clone();
            // `watch` writes its own log (one line per event, rotated) to the
            // log file registered at install; what else reaches the console
            // (the final error, a crash) goes to a file beside it, since a
            // service has no console.
            let console = settings.log_file.as_ref().map(|log| log.with_extension("console.log"));
            windows::run(&a.name.name, console.as_deref(), move || {
                super::watch::run(&settings, &service_watch_args())
            })
        }
    }
}

/// `watch` as the service runs it: its settings all come from the config
/// file and the command line registered at install.
#[cfg(any(windows, test))]
fn service_watch_args() -> crate::cli::WatchArgs {
    use clap::{Args, FromArgMatches};
    // Parsed from an empty command line, so that every option has the value
    // `retriever watch` gives it when not set: none can be forgotten here.
    let matches = crate::cli::WatchArgs::augment_args(clap::Command::new("watch")).get_matches_from(["watch"]);
    crate::cli::WatchArgs::from_arg_matches(&matches).expect("watch takes an empty command line")
}

#[cfg(windows)]
fn install(settings: &Settings, global: &GlobalArgs, args: &crate::cli::ServiceInstallArgs) -> Result<()> {
    use anyhow::Context;
    use std::path::PathBuf;

    use crate::config::Source;
    use crate::service::{InstallRequest, ServicePlan, windows};

    let program_data = std::env::var_os("ProgramData")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .context("the environment variable `ProgramData` is not set; run from a normal Windows prompt")?;
    let executable = std::env::current_exe().context("failed to find the path of retriever.exe")?;
    let cwd = std::env::current_dir().context("failed to read the current folder")?;
    // A cache named in the config file stays the service's cache; only
    // without one does the service get its own under %ProgramData%.
    let cache_in_file = settings
        .entries()
        .iter()
        .any(|e| e.key == "cache" && e.source == Source::ConfigFile);
    let request = InstallRequest {
        name: Some(args.name.name.clone()),
        config: global.config.clone(),
        cache: global
            .cache
            .clone()
            .or_else(|| cache_in_file.then(|| settings.cache_root.clone())),
        log_file: global.log_file.clone(),
        account: args.account.clone(),
    };
    let plan = ServicePlan::new(&request, &executable, &program_data, &cwd);
    let password = match std::env::var_os(PASSWORD_VARIABLE).filter(|p| !p.is_empty()) {
        Some(p) => Some(p),
        None if plan.account.needs_password() => anyhow::bail!(
            "the account `{}` needs its password: set {PASSWORD_VARIABLE} (it is never taken from the command line), \
             or use an account Windows keeps the password of, e.g. --account \"NT SERVICE\\{}\"",
            plan.account,
            plan.name
        ),
        None => None,
    };
    windows::install(&plan, password)?;
    eprintln!(
        "installed the service `{}` ({}), as {}",
        plan.name, plan.display_name, plan.account
    );
    eprintln!("  runs:   {}", plan.command_line());
    eprintln!("  starts: with Windows (delayed); restarted 10s, 1m, then 5m after a failure");
    // The account must be able to write the cache and the log; Windows
    // gives a new folder under %ProgramData% only read rights to most accounts.
    for dir in [Some(plan.cache.as_path()), plan.log_file.parent()]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create the folder `{}`", dir.display()))?;
        let Some(args) = plan.account.grant_args(dir) else {
            continue;
        };
        let granted = std::process::Command::new("icacls")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let shown = args
            .iter()
            .map(|a| crate::service::quote_arg(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        if granted {
            eprintln!("  rights: {} may modify `{}`", plan.account, dir.display());
        } else {
            eprintln!(
                "warning: could not give {} the right to modify `{}`; run: icacls {shown}",
                plan.account,
                dir.display()
            );
        }
    }
    if !plan.config.is_file() {
        eprintln!(
            "  next:   write the config file `{}` (see the README), then",
            plan.config.display()
        );
    }
    eprintln!("  then:   retriever service start --name {}", plan.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_service_runs_watch_with_its_defaults() {
        let args = super::service_watch_args();
        assert!(!args.once && !args.json);
        assert!(args.interval.is_none() && args.filters.is_empty() && args.metrics_file.is_none());
    }
}
