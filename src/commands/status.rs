//! `retriever status`: is the router in this cache running and working?
//! Reads the status each `watch` keeps in the cache (see
//! [`crate::watch::status`]), prints its figures and the verdict, and fails
//! (exit status 1, with the reason) when the router does not work, for a
//! monitoring system or a scheduled task to act on. A watch with several
//! destinations keeps its status under each one's name, and is shown once.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use serde_json::json;

use crate::cache::Cache;
use crate::cli::StatusArgs;
use crate::config::Settings;
use crate::dimse::Destination;
use crate::format::two_units;
use crate::watch::status::{self, MAX_BYTES, Status, Verdict, judge};

pub fn run(settings: &Settings, args: &StatusArgs) -> Result<()> {
    let root = &settings.cache_root;
    let given = settings.destination_if_given()?;
    if !root.is_dir() {
        let reason = format!(
            "no `retriever watch` has run with the cache `{}`: it does not exist; start the router, or pass \
             the --cache DIR it uses",
            root.display()
        );
        return none_found(args.json, given, reason);
    }
    let cache = Cache::open(root)?;
    let names = match given {
        Some(d) => vec![d.key()],
        // `--dest NAME`: the watch delivering to each destination chosen.
        None if !settings.dest_names.is_empty() => settings.routes()?.iter().map(|r| r.key()).collect(),
        None => cache.watch_statuses()?,
    };
    if names.is_empty() {
        let reason = format!(
            "no `retriever watch` has run with the cache `{}`; start the router, or pass the --cache DIR it uses",
            root.display()
        );
        return none_found(args.json, given, reason);
    }
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    let mut reasons = Vec::new();
    // The watches shown already: by process and start.
    let mut shown: Vec<(u32, String, SystemTime)> = Vec::new();
    for name in &names {
        let Some(bytes) = cache.read_watch_status(name, MAX_BYTES)? else {
            let reason = format!(
                "no `retriever watch` has delivered to {} from the cache `{}`; start the router, or pass the \
                 --cache DIR it uses",
                Destination::label_of_key(name),
                root.display()
            );
            if args.json {
                writeln!(out, "{}", verdict_only(&Destination::label_of_key(name), &reason))?;
            }
            reasons.push(reason);
            continue;
        };
        let status = Status::parse(&bytes, name)?;
        let watch = (status.pid, status.host.clone(), status.started_at);
        if shown.contains(&watch) {
            continue;
        }
        shown.push(watch);
        let running = cache.is_watch_running(name)?;
        let verdict = judge(&status, running, now, args.stale_after);
        if args.json {
            let mut value = serde_json::to_value(&status)?;
            value["verdict"] = serde_json::to_value(&verdict)?;
            writeln!(out, "{value}")?;
        } else {
            if shown.len() > 1 {
                writeln!(out)?;
            }
            write!(out, "{}", text(&status, &verdict, now, args.stale_after))?;
        }
        reasons.extend(verdict.reason);
    }
    match reasons.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        [first, rest @ ..] => bail!("{first}; and {} more watch(es) not working", rest.len()),
    }
}

/// No status to read: the verdict alone (as JSON with `--json`), and the error.
fn none_found(json: bool, given: Option<&Destination>, reason: String) -> Result<()> {
    if json {
        let destination = given.map(|d| d.to_string());
        println!("{}", verdict_only(destination.as_deref().unwrap_or("-"), &reason));
    }
    bail!("{reason}")
}

fn verdict_only(destination: &str, reason: &str) -> serde_json::Value {
    let verdict = Verdict {
        ok: false,
        running: false,
        reason: Some(reason.to_string()),
    };
    json!({ "destination": destination, "verdict": verdict })
}

/// A few aligned lines.
fn text(s: &Status, verdict: &Verdict, now: SystemTime, window: Option<Duration>) -> String {
    let ago = |t: SystemTime| {
        let age = now.duration_since(t).unwrap_or_default();
        format!("{} ({} ago)", status::time(t), two_units(age))
    };
    let mut lines: Vec<(&str, String)> = Vec::new();
    let state = match (&verdict.reason, verdict.running) {
        (None, _) => "running, working".to_string(),
        (Some(_), true) => "running, NOT WORKING".to_string(),
        (Some(_), false) => "NOT RUNNING".to_string(),
    };
    lines.push(("router", format!("{state} (retriever watch to {})", s.destination)));
    let mut process = format!(
        "pid {} on {}, retriever {}, started {}",
        s.pid,
        s.host,
        s.retriever,
        ago(s.started_at)
    );
    if let Some(ended) = &s.ended {
        process.push_str(&format!("; ended {} ({})", ago(ended.at), ended.how));
    }
    lines.push(("process", process));
    let window = window.unwrap_or_else(|| status::default_window(s.interval()));
    lines.push((
        "search",
        format!(
            "{}, every {} (must work within {})",
            s.query,
            crate::format::duration(s.interval()),
            two_units(window)
        ),
    ));
    let search = &s.search;
    lines.push((
        "last answer",
        match (search.last_ok_at, search.last_found) {
            (Some(t), Some(1)) => format!("{}: 1 study found", ago(t)),
            (Some(t), Some(found)) => format!("{}: {found} studies found", ago(t)),
            (Some(t), None) => ago(t),
            _ => "none yet".to_string(),
        },
    ));
    if let Some(f) = &search.last_failure {
        let streak = match search.failures_in_a_row {
            0 => String::new(),
            n => format!(" ({n} in a row)"),
        };
        lines.push(("last failure", format!("{}{streak}: {}", ago(f.at), f.error)));
    }
    let st = &s.studies;
    lines.push((
        "studies",
        format!(
            "{} queued, {} in flight, {} failing; {} delivered and {} failed on {} (UTC)",
            st.queued, st.in_flight, st.failing, st.delivered_today, st.failed_today, st.day
        ),
    ));
    for d in &s.destinations {
        let mut line = match d.down_since {
            Some(t) => format!("{}: DOWN since {}", d.shown(), ago(t)),
            None => format!("{}: up", d.shown()),
        };
        if let Some(t) = d.last_delivery_at {
            line.push_str(&format!("; last delivery {}", ago(t)));
        }
        if let Some(e) = &d.last_error {
            line.push_str(&format!("; last error {}: {}", ago(e.at), e.error));
        }
        lines.push(("destination", line));
    }
    lines.push(("heartbeat", ago(s.heartbeat_at)));
    if let Some(reason) = &verdict.reason {
        lines.push(("why", reason.clone()));
    }
    let width = lines.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}
