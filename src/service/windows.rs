//! The calls to the Windows Service Control Manager, a thin layer over the
//! plain data of [`super::ServicePlan`]: register, remove, start and stop
//! the service, and the service's own entry (`service run`), whose Stop or
//! Shutdown request sets the one cancel token, as Ctrl-C does in a console.

use std::ffi::{OsStr, OsString};
use std::os::windows::io::IntoRawHandle;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use windows_service::service::{
    Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo,
    ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{STOP_WAIT_HINT, ServicePlan, StartType};

const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;
const ERROR_SERVICE_EXISTS: i32 = 1073;
const ERROR_INVALID_SERVICE_ACCOUNT: i32 = 1057;

/// How long `start` waits for the service to say it runs (it reports
/// Running at once, before its first search of the cloud).
const START_WAIT: Duration = Duration::from_secs(30);

fn os_error(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

/// An error of the Service Control Manager, said with what to do about it.
fn explain(e: windows_service::Error, what: &str, name: &str) -> anyhow::Error {
    let why = match os_error(&e) {
        Some(ERROR_ACCESS_DENIED) => {
            "access is denied; run from an elevated prompt (right-click the terminal, \"Run as administrator\")"
                .to_string()
        }
        Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            format!("there is no such service; install it with `retriever service install --name {name}`")
        }
        Some(ERROR_SERVICE_EXISTS) => format!(
            "a service of that name exists already; remove it first with `retriever service uninstall --name {name}`, \
             or choose another --name"
        ),
        Some(ERROR_SERVICE_MARKED_FOR_DELETE) => "it is being removed; close the Services console (services.msc) \
                                                  and Event Viewer, then try again"
            .to_string(),
        Some(ERROR_INVALID_SERVICE_ACCOUNT) => "Windows does not know the account given with --account; give it \
                                               as DOMAIN\\user or .\\user, or use LocalService"
            .to_string(),
        _ => match &e {
            windows_service::Error::Winapi(io) => io.to_string(),
            other => other.to_string(),
        },
    };
    anyhow!("failed to {what} the service `{name}`: {why}")
}

fn manager(access: ServiceManagerAccess, what: &str, name: &str) -> Result<ServiceManager> {
    ServiceManager::local_computer(None::<&str>, access).map_err(|e| explain(e, what, name))
}

fn open(name: &str, access: ServiceAccess, what: &str) -> Result<Service> {
    manager(ServiceManagerAccess::CONNECT, what, name)?
        .open_service(name, access)
        .map_err(|e| explain(e, what, name))
}

/// Registers the service as `plan` says. A service that cannot be fully
/// configured (description, delayed start, recovery) is removed again, so
/// that no half-installed service is left behind.
pub fn install(plan: &ServicePlan, password: Option<OsString>) -> Result<()> {
    let manager = manager(
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        "install",
        &plan.name,
    )?;
    let info = ServiceInfo {
        name: plan.name.clone().into(),
        display_name: plan.display_name.clone().into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: match plan.start {
            StartType::AutomaticDelayed => ServiceStartType::AutoStart,
        },
        error_control: ServiceErrorControl::Normal,
        executable_path: plan.executable.clone(),
        launch_arguments: plan.arguments.clone(),
        dependencies: Vec::new(),
        account_name: plan.account.service_account_name().map(OsString::from),
        account_password: password,
    };
    let service = manager
        .create_service(
            &info,
            ServiceAccess::QUERY_CONFIG | ServiceAccess::CHANGE_CONFIG | ServiceAccess::DELETE,
        )
        .map_err(|e| explain(e, "install", &plan.name))?;
    let configured = (|| -> windows_service::Result<OsString> {
        service.set_description(&plan.description)?;
        service.set_delayed_auto_start(matches!(plan.start, StartType::AutomaticDelayed))?;
        service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(plan.recovery.reset_period),
            reboot_msg: None,
            command: None,
            // Windows repeats the last action for every later failure.
            actions: Some(
                plan.recovery
                    .restart_delays
                    .iter()
                    .map(|&delay| ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay,
                    })
                    .collect(),
            ),
        })?;
        service.set_failure_actions_on_non_crash_failures(plan.recovery.on_error_exit)?;
        Ok(service.query_config()?.executable_path.into_os_string())
    })();
    match configured {
        Ok(registered) => {
            if registered != OsStr::new(&plan.command_line()) {
                eprintln!(
                    "warning: the service `{}` was registered with the command line `{}`, not `{}` as expected; \
                     check it with `sc qc {}`",
                    plan.name,
                    registered.to_string_lossy(),
                    plan.command_line(),
                    plan.name
                );
            }
            Ok(())
        }
        Err(e) => {
            let _ = service.delete();
            Err(explain(e, "configure", &plan.name).context("the service was removed again"))
        }
    }
}

/// Stops the service if it runs, and removes it.
pub fn uninstall(name: &str) -> Result<()> {
    let service = open(
        name,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        "uninstall",
    )?;
    let state = service
        .query_status()
        .map_err(|e| explain(e, "uninstall", name))?
        .current_state;
    if state != ServiceState::Stopped {
        stop_and_wait(&service, name)?;
    }
    service.delete().map_err(|e| explain(e, "uninstall", name))
}

/// Starts the service and waits until it runs, or says that it stopped.
pub fn start(name: &str) -> Result<()> {
    let service = open(name, ServiceAccess::START | ServiceAccess::QUERY_STATUS, "start")?;
    match service.start::<&OsStr>(&[]) {
        Ok(()) => {}
        Err(e) if os_error(&e) == Some(ERROR_SERVICE_ALREADY_RUNNING) => return Ok(()),
        Err(e) => return Err(explain(e, "start", name)),
    }
    let status = wait_while(&service, name, ServiceState::StartPending, START_WAIT)?;
    match status.current_state {
        ServiceState::Running => Ok(()),
        ServiceState::StartPending => bail!(
            "the service `{name}` did not report that it runs within {}s; see `sc query {name}` and its log file",
            START_WAIT.as_secs()
        ),
        other => bail!(
            "the service `{name}` stopped as it started ({other:?}, exit code {}); see its log file \
             (`--log-file` of the install, by default %ProgramData%\\retriever\\log\\{name}.log)",
            exit_code_text(&status.exit_code)
        ),
    }
}

/// Stops the service and waits until it has.
pub fn stop(name: &str) -> Result<()> {
    let service = open(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS, "stop")?;
    stop_and_wait(&service, name)
}

fn stop_and_wait(service: &Service, name: &str) -> Result<()> {
    match service.stop() {
        Ok(_) => {}
        Err(e) if os_error(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => return Ok(()),
        Err(e) => return Err(explain(e, "stop", name)),
    }
    let limit = STOP_WAIT_HINT + Duration::from_secs(30);
    let status = wait_while(service, name, ServiceState::StopPending, limit)?;
    if status.current_state != ServiceState::Stopped {
        bail!(
            "the service `{name}` did not stop within {}s; see `sc query {name}`, or end it with `taskkill /F /FI \"SERVICES eq {name}\"`",
            limit.as_secs()
        );
    }
    Ok(())
}

/// Asks the Service Control Manager for the state until it is no longer
/// `pending` or `limit` has passed: Windows offers no simpler wait.
fn wait_while(service: &Service, name: &str, pending: ServiceState, limit: Duration) -> Result<ServiceStatus> {
    let until = Instant::now() + limit;
    loop {
        let status = service
            .query_status()
            .map_err(|e| explain(e, "query the state of", name))?;
        if status.current_state != pending || Instant::now() >= until {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn exit_code_text(code: &ServiceExitCode) -> String {
    match code {
        ServiceExitCode::Win32(c) => c.to_string(),
        ServiceExitCode::ServiceSpecific(c) => format!("{c} (the router's)"),
    }
}

type Work = Box<dyn FnOnce() -> Result<()> + Send>;

/// What the service's entry runs, and what it returned: the entry is a
/// plain function the dispatcher calls on a thread of its own.
static WORK: Mutex<Option<Work>> = Mutex::new(None);
static OUTCOME: Mutex<Option<Result<()>>> = Mutex::new(None);
static NAME: OnceLock<String> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

define_windows_service!(ffi_service_main, service_main);

/// The service: hands `work` (the router) to the Service Control Manager's
/// dispatcher, which runs it as the service `name`, and returns what it
/// returned once the service has stopped. The output goes to `log_file`,
/// since a service has no console.
pub fn run(name: &str, log_file: Option<&Path>, work: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    if let Some(path) = log_file {
        redirect_output(path)?;
    }
    let _ = NAME.set(name.to_string());
    *lock(&WORK) = Some(Box::new(work));
    service_dispatcher::start(name, ffi_service_main).map_err(|e| {
        if os_error(&e) == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
            anyhow!(
                "`retriever service run` is what Windows starts as the service `{name}`, not a command to type; \
                 start the service with `retriever service start`, or run the router in this console with `retriever watch`"
            )
        } else {
            explain(e, "run", name)
        }
    })?;
    lock(&OUTCOME).take().unwrap_or_else(|| {
        Err(anyhow!(
            "the service `{name}` ended before the router ran; see the Windows event log (System)"
        ))
    })
}

fn service_main(_arguments: Vec<OsString>) {
    let name = NAME.get().map(String::as_str).unwrap_or(super::DEFAULT_NAME);
    let outcome = serve(name);
    *lock(&OUTCOME) = Some(outcome);
}

fn status(state: ServiceState, exit_code: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: match state {
            ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            _ => ServiceControlAccept::empty(),
        },
        exit_code: match exit_code {
            0 => ServiceExitCode::Win32(0),
            code => ServiceExitCode::ServiceSpecific(code),
        },
        checkpoint: u32::from(state == ServiceState::StopPending),
        wait_hint: if state == ServiceState::StopPending {
            STOP_WAIT_HINT
        } else {
            Duration::ZERO
        },
        process_id: None,
    }
}

fn serve(name: &str) -> Result<()> {
    let handle: Arc<OnceLock<service_control_handler::ServiceStatusHandle>> = Arc::new(OnceLock::new());
    let in_handler = Arc::clone(&handle);
    let status_handle = service_control_handler::register(name, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            // Stop pending is said before the token is set, so that it can
            // never come after the Stopped the router's end reports.
            if let Some(h) = in_handler.get() {
                let _ = h.set_service_status(status(ServiceState::StopPending, 0));
            }
            crate::interrupt::cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .map_err(|e| explain(e, "register the stop handler of", name))?;
    let _ = handle.set(status_handle);
    status_handle
        .set_service_status(status(ServiceState::Running, 0))
        .map_err(|e| explain(e, "report the state of", name))?;
    let work = lock(&WORK).take();
    let outcome = match work {
        Some(work) => work(),
        None => Err(anyhow!("the service `{name}` was started twice in one process")),
    };
    let _ = status_handle.set_service_status(status(ServiceState::Stopped, super::exit_code(&outcome)));
    outcome
}

/// Sends this process's standard output and error to `path` (appended),
/// for all that `watch` prints.
fn redirect_output(path: &Path) -> Result<()> {
    use windows_sys::Win32::System::Console::{STD_ERROR_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create the folder `{}`", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| {
            format!(
                "failed to open the service's log file `{}`; the service account needs the right to modify it",
                path.display()
            )
        })?;
    // The handle stays open for the life of the process: it is the output.
    let handle = file.into_raw_handle();
    // SAFETY: `handle` is an open file handle this process owns and never closes.
    let ok = unsafe { SetStdHandle(STD_OUTPUT_HANDLE, handle) != 0 && SetStdHandle(STD_ERROR_HANDLE, handle) != 0 };
    if !ok {
        bail!(
            "failed to send the output to the log file `{}`: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
