//! `watch` as a Windows service: what is registered with the Service Control
//! Manager (name, command line, start type, recovery actions, account), as
//! plain data built by [`ServicePlan::new`] so that it can be checked on any
//! platform, and the status a service run reports when it ends. The calls to
//! Windows are a thin layer over this data, in `windows.rs`; on other
//! platforms the `service` subcommand ends with [`NotOnThisPlatform`].

#[cfg(windows)]
pub mod windows;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service name when `--name` is not given.
pub const DEFAULT_NAME: &str = "retriever";

/// How long the Service Control Manager is told a stop may take: `watch`
/// finishes or abandons what is in flight (an association waits at most its
/// ACSE timeout) before it reports that it stopped.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(30);

/// After this long without a failure the count of failures starts again, so
/// that a service that failed once a week is always restarted quickly.
pub const RECOVERY_RESET_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Restart after the first, second and every later failure, waiting longer
/// each time so that a cloud or a disk that stays broken is not hammered.
pub const RECOVERY_DELAYS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// The `service` subcommand on a platform without Windows services: a usage
/// error (exit status 2), with the way to run the router there instead.
#[derive(Debug)]
pub struct NotOnThisPlatform;

impl std::fmt::Display for NotOnThisPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "`retriever service` installs and runs a Windows service, and this is not Windows; \
             on Linux run the router with the systemd unit `scripts/systemd/retriever-watch.service` \
             (see \"Install\" in the README)",
        )
    }
}

impl std::error::Error for NotOnThisPlatform {}

/// The account the service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// `NT AUTHORITY\LocalService`: few rights on the machine, anonymous on
    /// the network, which is all the router needs (it only connects out).
    LocalService,
    /// `NT AUTHORITY\NetworkService`: as LocalService, but the computer's
    /// identity on the network.
    NetworkService,
    /// `LocalSystem`: every right on the machine; not advised.
    LocalSystem,
    /// Any other account: a virtual account (`NT SERVICE\retriever`), a
    /// group managed service account (`DOMAIN\name$`), or a user (`.\retriever`,
    /// `DOMAIN\user`), whose password comes from the environment.
    Named(String),
}

impl Account {
    /// Reads `--account`: the built-in accounts by their short or full
    /// names, in any case; anything else names an account.
    pub fn parse(raw: &str) -> Result<Account, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the account cannot be empty; give e.g. LocalService or `NT SERVICE\\retriever`".into());
        }
        let lower = raw.to_ascii_lowercase();
        let short = lower.strip_prefix("nt authority\\").unwrap_or(&lower);
        Ok(match short {
            "localservice" | "local service" => Account::LocalService,
            "networkservice" | "network service" => Account::NetworkService,
            "localsystem" | "system" | "local system" => Account::LocalSystem,
            _ => Account::Named(raw.to_string()),
        })
    }

    /// The name given to the Service Control Manager; `None` is LocalSystem.
    pub fn service_account_name(&self) -> Option<String> {
        match self {
            Account::LocalService => Some("NT AUTHORITY\\LocalService".into()),
            Account::NetworkService => Some("NT AUTHORITY\\NetworkService".into()),
            Account::LocalSystem => None,
            Account::Named(name) => Some(name.clone()),
        }
    }

    /// The account as `icacls /grant` takes it: the built-in service
    /// accounts by their SIDs, which are the same in every language of
    /// Windows (their names are not); `None` for LocalSystem, which may
    /// write everywhere already.
    pub fn acl_name(&self) -> Option<String> {
        match self {
            Account::LocalService => Some("*S-1-5-19".into()),
            Account::NetworkService => Some("*S-1-5-20".into()),
            Account::LocalSystem => None,
            Account::Named(name) => Some(name.clone()),
        }
    }

    /// The arguments of `icacls` that let the account create and change
    /// files in `dir` and below it.
    pub fn grant_args(&self, dir: &Path) -> Option<Vec<OsString>> {
        let who = self.acl_name()?;
        Some(vec![
            dir.as_os_str().to_owned(),
            "/grant".into(),
            format!("{who}:(OI)(CI)M").into(),
        ])
    }

    /// True for the accounts Windows keeps the password of itself: the
    /// built-in ones, virtual accounts and managed service accounts.
    pub fn needs_password(&self) -> bool {
        match self {
            Account::Named(name) => !(name.to_ascii_lowercase().starts_with("nt service\\") || name.ends_with('$')),
            _ => false,
        }
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.service_account_name().as_deref().unwrap_or("LocalSystem"))
    }
}

/// When the service starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartType {
    /// With Windows, shortly after the other automatic services, so that the
    /// network is up before the router first searches the cloud.
    AutomaticDelayed,
}

/// What the Service Control Manager does when the service fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Restart after this delay, for the first, second and every later failure.
    pub restart_delays: Vec<Duration>,
    /// The count of failures starts again after this long without one.
    pub reset_period: Duration,
    /// Also when the service stops with an error it reported (not only when
    /// the process dies): `watch` ends with an error on a fault it cannot
    /// ride out, and should be started again.
    pub on_error_exit: bool,
}

/// The paths `service install` was given, or their defaults.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    pub name: Option<String>,
    pub config: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub account: Option<Account>,
}

/// Everything registered for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// retriever.exe, by its full path: the Service Control Manager runs
    /// the command line as it is, from `C:\Windows\System32`.
    pub executable: PathBuf,
    /// The arguments after the executable: `service run` and the paths.
    pub arguments: Vec<OsString>,
    pub config: PathBuf,
    pub cache: PathBuf,
    pub log_file: PathBuf,
    pub start: StartType,
    pub recovery: Recovery,
    pub account: Account,
}

impl ServicePlan {
    /// The service for `request`: the paths not given go under
    /// `program_data` (`%ProgramData%\retriever\...`), which every account
    /// can reach, unlike a user's profile; relative paths are made full
    /// against `cwd`.
    pub fn new(request: &InstallRequest, executable: &Path, program_data: &Path, cwd: &Path) -> ServicePlan {
        let name = request.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_string());
        let home = program_data.join("retriever");
        let full = |given: &Option<PathBuf>, default: PathBuf| match given {
            Some(p) if is_full(p) => p.clone(),
            Some(p) => cwd.join(p),
            None => default,
        };
        let config = full(&request.config, home.join("config.json"));
        let cache = full(&request.cache, home.join("cache"));
        let log_file = full(&request.log_file, home.join("log").join(format!("{name}.log")));
        let arguments = [
            "service".into(),
            "run".into(),
            "--name".into(),
            OsString::from(&name),
            "--config".into(),
            config.clone().into_os_string(),
            "--cache".into(),
            cache.clone().into_os_string(),
            "--log-file".into(),
            log_file.clone().into_os_string(),
        ]
        .into();
        ServicePlan {
            display_name: if name == DEFAULT_NAME {
                "retriever study router".to_string()
            } else {
                format!("retriever study router ({name})")
            },
            description: "Pulls new imaging studies and their priors from the cloud archive and \
                          delivers them to the PACS (retriever watch)."
                .to_string(),
            name,
            executable: executable.to_path_buf(),
            arguments,
            config,
            cache,
            log_file,
            start: StartType::AutomaticDelayed,
            recovery: Recovery {
                restart_delays: RECOVERY_DELAYS.to_vec(),
                reset_period: RECOVERY_RESET_PERIOD,
                on_error_exit: true,
            },
            account: request.account.clone().unwrap_or(Account::LocalService),
        }
    }

    /// The command line the Service Control Manager keeps and runs, each
    /// part quoted as Windows programs read their arguments back.
    pub fn command_line(&self) -> String {
        std::iter::once(self.executable.as_os_str())
            .chain(self.arguments.iter().map(|a| a.as_os_str()))
            .map(|part| quote_arg(&part.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// True for a full path, also a Windows one (`D:\x`, `\\server\share`) checked
/// on another platform, where the plan is tested.
fn is_full(path: &Path) -> bool {
    let text = path.to_string_lossy();
    let bytes = text.as_bytes();
    path.is_absolute()
        || text.starts_with("\\\\")
        || (bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' && matches!(bytes[2], b'\\' | b'/'))
}

/// Quotes one argument of a Windows command line the way the C runtime
/// (and Rust's `std::env::args`) splits it again: in double quotes when it
/// holds a space, a tab or a quote, or is empty; a quote inside escaped
/// with a backslash, and the backslashes before a quote doubled. A path
/// with spaces left unquoted would be split, and one that ends in `\` would
/// swallow its closing quote.
pub fn quote_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\x0b', '"']) {
        return arg.to_string();
    }
    let mut quoted = String::with_capacity(arg.len() + 2);
    quoted.push('"');
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                quoted.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                quoted.push('"');
                backslashes = 0;
            }
            c => {
                quoted.extend(std::iter::repeat_n('\\', backslashes));
                quoted.push(c);
                backslashes = 0;
            }
        }
    }
    quoted.extend(std::iter::repeat_n('\\', backslashes * 2));
    quoted.push('"');
    quoted
}

/// The exit code a service run reports to the Service Control Manager:
/// 0 when `watch` ended cleanly, also after a stop request (the one way a
/// service is meant to end); 1 when it failed, which starts the recovery
/// actions.
pub fn exit_code(outcome: &anyhow::Result<()>) -> u32 {
    match outcome {
        Ok(()) => 0,
        Err(e) if crate::interrupt::is_interrupted(e) => 0,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(request: InstallRequest) -> ServicePlan {
        ServicePlan::new(
            &request,
            Path::new(r"C:\Program Files\retriever\retriever.exe"),
            Path::new(r"C:\ProgramData"),
            Path::new(r"C:\Users\admin"),
        )
    }

    #[test]
    fn paths_with_spaces_are_quoted_and_others_left_alone() {
        assert_eq!(quote_arg(r"C:\ProgramData\retriever"), r"C:\ProgramData\retriever");
        assert_eq!(quote_arg(r"C:\Program Files\r.exe"), r#""C:\Program Files\r.exe""#);
        // A trailing backslash doubled, or it would escape the closing quote.
        assert_eq!(quote_arg(r"D:\my cache\"), r#""D:\my cache\\""#);
        // Backslashes not before a quote stay single.
        assert_eq!(quote_arg(r"a\\b c"), r#""a\\b c""#);
        assert_eq!(quote_arg(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote_arg(""), r#""""#);
    }

    #[test]
    fn the_command_line_runs_the_service_entry_with_config_cache_and_log() {
        let p = plan(InstallRequest {
            config: Some(r"D:\retriever conf\router.json".into()),
            cache: Some(r"E:\study cache".into()),
            log_file: Some(r"C:\ProgramData\retriever\retriever.log".into()),
            ..InstallRequest::default()
        });
        assert_eq!(
            p.command_line(),
            r#""C:\Program Files\retriever\retriever.exe" service run --name retriever --config "D:\retriever conf\router.json" --cache "E:\study cache" --log-file C:\ProgramData\retriever\retriever.log"#
        );
    }

    #[test]
    fn paths_not_given_go_under_program_data_and_relative_ones_are_made_full() {
        let p = plan(InstallRequest {
            cache: Some("cache".into()),
            ..InstallRequest::default()
        });
        let home = Path::new(r"C:\ProgramData").join("retriever");
        assert_eq!(p.config, home.join("config.json"));
        assert_eq!(p.log_file, home.join("log").join("retriever.log"));
        assert_eq!(p.cache, Path::new(r"C:\Users\admin").join("cache"));
        assert!(p.arguments.contains(&p.cache.clone().into_os_string()));
    }

    #[test]
    fn it_starts_delayed_restarts_after_failures_and_runs_as_local_service() {
        let p = plan(InstallRequest::default());
        assert_eq!(p.name, "retriever");
        assert_eq!(p.start, StartType::AutomaticDelayed);
        assert_eq!(
            p.recovery,
            Recovery {
                restart_delays: vec![
                    Duration::from_secs(10),
                    Duration::from_secs(60),
                    Duration::from_secs(300)
                ],
                reset_period: Duration::from_secs(86400),
                on_error_exit: true,
            }
        );
        assert_eq!(p.account, Account::LocalService);
        assert_eq!(
            p.account.service_account_name().as_deref(),
            Some(r"NT AUTHORITY\LocalService")
        );
    }

    #[test]
    fn a_second_service_has_its_own_name_display_name_and_log() {
        let p = plan(InstallRequest {
            name: Some("retriever-ct".into()),
            ..InstallRequest::default()
        });
        assert_eq!(p.display_name, "retriever study router (retriever-ct)");
        assert!(p.log_file.ends_with("retriever-ct.log"));
        assert!(p.command_line().contains(" --name retriever-ct "));
    }

    #[test]
    fn accounts_are_read_by_short_or_full_name_and_say_whether_a_password_is_needed() {
        assert_eq!(Account::parse("localservice"), Ok(Account::LocalService));
        assert_eq!(
            Account::parse(r"NT AUTHORITY\NetworkService"),
            Ok(Account::NetworkService)
        );
        assert_eq!(Account::parse("LocalSystem"), Ok(Account::LocalSystem));
        assert_eq!(Account::LocalSystem.service_account_name(), None);
        let virtual_account = Account::parse(r"NT SERVICE\retriever").unwrap();
        assert!(!virtual_account.needs_password());
        assert!(!Account::parse(r"HOSPITAL\router$").unwrap().needs_password());
        assert!(Account::parse(r".\retriever").unwrap().needs_password());
        assert!(Account::parse(" ").is_err());
    }

    #[test]
    fn the_account_is_given_the_right_to_modify_a_folder_by_a_name_any_windows_knows() {
        let dir = Path::new(r"D:\study cache");
        let args = |a: Account| {
            a.grant_args(dir)
                .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect::<Vec<_>>())
        };
        assert_eq!(
            args(Account::LocalService),
            Some(vec![
                r"D:\study cache".to_string(),
                "/grant".into(),
                "*S-1-5-19:(OI)(CI)M".into()
            ])
        );
        assert_eq!(args(Account::NetworkService).unwrap()[2], "*S-1-5-20:(OI)(CI)M");
        assert_eq!(
            args(Account::parse(r"NT SERVICE\retriever").unwrap()).unwrap()[2],
            r"NT SERVICE\retriever:(OI)(CI)M"
        );
        assert_eq!(args(Account::LocalSystem), None);
    }

    #[test]
    fn a_stop_request_is_a_clean_end_and_a_failure_is_not() {
        assert_eq!(exit_code(&Ok(())), 0);
        assert_eq!(exit_code(&Err(crate::interrupt::Interrupted.into())), 0);
        assert_eq!(exit_code(&Err(anyhow::anyhow!("the cloud refused the login"))), 1);
    }
}
