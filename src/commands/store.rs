//! `retriever store`: complete studies from the cache to the DICOM
//! destinations they are routed to: the ones named, read from stdin, or all
//! not yet delivered to each destination.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};

use super::study_line::StudyLine;
use crate::cache::Cache;
use crate::cli::StoreArgs;
use crate::config::Settings;
use crate::delivery::{Asked, StudyResult, StudyState};
use crate::routing::Route;
use crate::store::{Fanout, deliver_routed, parse_study_line};
use crate::ui;
use crate::uid::Uid;

pub fn run(settings: &Settings, args: &StoreArgs) -> Result<()> {
    let routes = settings.routes()?;
    let named = match args.studies.as_slice() {
        [] => None,
        [dash] if dash == "-" => Some(Vec::new()),
        ids if ids.iter().any(|s| s == "-") => {
            bail!("`-` (read study UIDs from stdin) cannot be combined with study UIDs on the command line")
        }
        ids => Some(
            ids.iter()
                .map(|id| Uid::parse(id).with_context(|| format!("`{id}` is not a Study Instance UID")))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let cache = Cache::open(&settings.cache_root)?.with_limits(settings.cache_limits);
    let reporter = ui::reporter(settings.quiet);
    let fanout = Fanout {
        cache: &cache,
        routes: &routes,
        chosen: !settings.dest_names.is_empty(),
        cloud: settings.cloud().ok().cloned(),
        reporter: &*reporter,
    };
    let print = |route: &Route, r: &StudyResult| -> Result<()> {
        let fully = r.state == StudyState::Delivered && (r.asked == Asked::Named || r.sent() > 0);
        let mut printed = Ok(());
        if fully {
            reporter.suspend(&mut || printed = print_delivered(&mut std::io::stdout().lock(), r, route, args.json));
        }
        printed.context("failed to write to standard output")
    };
    let mut input_errors = 0usize;
    let routed = match named {
        None => {
            let found = cache.studies()?;
            deliver_routed(&fanout, &mut found.into_iter().map(|uid| (uid, Asked::Found)), &print)
        }
        Some(uids) if !uids.is_empty() => deliver_routed(
            &fanout,
            &mut dedup(uids).into_iter().map(|uid| (uid, Asked::Named)),
            &print,
        ),
        Some(_) => {
            // Streamed: a study is delivered as soon as its line arrives,
            // so `fetch | store -` overlaps the two.
            let mut seen = HashSet::new();
            let mut read_error = None;
            let mut lines = std::io::stdin()
                .lock()
                .lines()
                .enumerate()
                .map_while(|(n, line)| match line {
                    Ok(line) => Some((n, line)),
                    Err(e) => {
                        read_error = Some(e);
                        None
                    }
                });
            let mut wanted = std::iter::from_fn(|| {
                for (n, line) in lines.by_ref() {
                    match parse_study_line(&line) {
                        Ok(Some(uid)) if seen.insert(uid.clone()) => return Some((uid, Asked::Named)),
                        Ok(_) => {}
                        Err(e) => {
                            input_errors += 1;
                            reporter.warn(&format!("line {} of standard input: {e:#}", n + 1));
                        }
                    }
                }
                None
            });
            let mut routed = deliver_routed(&fanout, &mut wanted, &print);
            drop(lines);
            if let Some(e) = read_error {
                let e = Err(e).context("failed to read study UIDs from standard input");
                routed.outcome = routed.outcome.and(e);
            }
            routed
        }
    };
    super::finish_delivery(routed, settings.quiet, input_errors)
}

fn dedup(uids: Vec<Uid>) -> Vec<Uid> {
    let mut seen = HashSet::new();
    uids.into_iter().filter(|u| seen.insert(u.clone())).collect()
}

/// One line per study and destination: the route's name (for `--to`, its
/// `AE@HOST:PORT`), and in JSON its address too when it has a name.
fn print_delivered(out: &mut impl Write, r: &StudyResult, route: &Route, json: bool) -> Result<()> {
    let to = route.store.scu.destination.to_string();
    StudyLine::new(&r.study)
        .cloud("accession", r.accession.as_deref())
        .with("destination", route.name.as_str(), route.name.as_str())
        .json_only_if("to", (route.name != to).then_some(to))
        .with("instances", r.total, format!("{} instances", r.total))
        .json_only("delivered", r.delivered)
        .text_only(format!("{} sent", r.sent()))
        .with("warnings", r.warnings, format!("{} with a warning", r.warnings))
        .with("skipped", r.skipped, format!("{} already there", r.skipped))
        .write(out, json)?;
    Ok(())
}
