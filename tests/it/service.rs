//! `retriever service` away from Windows: the subcommand exists everywhere, so the command
//! line is the same on every platform, but here it only says that it is for Windows, points
//! to the systemd unit, and exits with status 2, having done nothing. (What it registers on
//! Windows is checked by the unit tests of `src/service/`.)

use std::time::Duration;

use crate::common::{retriever, run_within, temp_cache};

tests! {
    service_elsewhere_than_windows_says_so_and_points_to_systemd,
    a_service_name_that_windows_cannot_take_is_a_usage_error,
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn service_elsewhere_than_windows_says_so_and_points_to_systemd() {
    let cache = temp_cache();
    let dir = cache.path().join("service-cache");
    for action in ["install", "uninstall", "start", "stop", "run"] {
        let (code, stdout, stderr) = run_within(retriever().args(["service", action, "--cache"]).arg(&dir), TIMEOUT);
        assert_eq!(code, 2, "service {action}: {stderr}");
        assert_eq!(stdout, "", "service {action}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("retriever: ")
                && last.contains("is not Windows")
                && last.contains("`scripts/systemd/retriever-watch.service`"),
            "service {action}: {stderr}"
        );
        assert!(!dir.exists(), "service {action} created the cache");
    }
}

fn a_service_name_that_windows_cannot_take_is_a_usage_error() {
    let (code, _, stderr) = run_within(retriever().args(["service", "install", "--name", "my router"]), TIMEOUT);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`my router` is not a usable service name"), "{stderr}");
}
