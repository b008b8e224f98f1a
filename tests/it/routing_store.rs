//! Delivery to several destinations: `fetch --store`, `store` and `store --dest` send each
//! study to the destinations the config file's `destinations` rules route it to, each
//! destination served on its own, and `fetch --dry-run` says where each study would go and why.
//! Two DCMTK `storescp` play the PACS (every study) and a reading workstation (current studies
//! only); assertions are on the SOP Instance UIDs each received, the lines on stdout and what
//! the user is told.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Orthanc, retriever_at, run_within, temp_cache};

tests! {
    one_destination_is_shown_in_one_line_by_the_dry_run: ["orthanc"],
}

const LIMIT: Duration = Duration::from_secs(60);

const CURRENT: &str = "ACC1001";

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect()
}

/// With a single `--to`, every study goes there: the dry run says so in one line, and each
/// JSON row names it with its reason.
fn one_destination_is_shown_in_one_line_by_the_dry_run() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let to = "PACS@127.0.0.1:11112";
    let dry_run = |json: bool| {
        let mut cmd = retriever_at(&orthanc.dicomweb_url(), cache.path());
        cmd.args(["fetch", CURRENT, "--dry-run", "--to", to]);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let (code, out, err) = dry_run(false);
    assert_eq!(code, 0, "{err}");
    let arrows: Vec<&str> = out.lines().filter(|l| l.starts_with('→')).collect();
    assert_eq!(arrows, [format!("→ {to} (every study)")], "{out}");

    let (code, out, err) = dry_run(true);
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    assert!(rows.len() > 1, "the current study and its candidate priors:\n{out}");
    for row in &rows {
        let want = json!([{ "destination": to, "to": to, "routed": true, "why": "every study" }]);
        assert_eq!(row["routes"], want, "{row}");
    }
}
