//! `retriever store`: complete studies from the cache to the DICOM
//! destination: the ones named, read from stdin, or all not yet delivered.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};

use super::study_line::StudyLine;
use crate::cache::Cache;
use crate::cli::StoreArgs;
use crate::config::Settings;
use crate::delivery::{Asked, Store, StudyResult, StudyState, deliver_named};
use crate::dicomweb::ClientOptions;
use crate::store::parse_study_line;
use crate::ui;
use crate::uid::Uid;

pub fn run(settings: &Settings, args: &StoreArgs) -> Result<()> {
    let opts = settings.store_options()?;
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
    let mut store = Store::new(
        &cache,
        &opts,
        settings.cloud().ok().cloned().map(ClientOptions::in_syntax),
        &*reporter,
    );
    let mut out = std::io::stdout().lock();
    let mut input_errors = 0usize;
    let destination = opts.scu.destination.to_string();
    let mut print = |r: &StudyResult| -> Result<()> {
        let fully = r.state == StudyState::Delivered && (r.asked == Asked::Named || r.sent() > 0);
        let mut printed = Ok(());
        if fully {
            reporter.suspend(&mut || printed = print_delivered(&mut out, r, &destination, args.json));
        }
        printed.context("failed to write to standard output")
    };
    let outcome = (|| -> Result<()> {
        match named {
            None => {
                for uid in cache.studies()? {
                    print(&store.deliver(&uid, Asked::Found)?)?;
                }
            }
            Some(uids) if !uids.is_empty() => deliver_named(&mut store, &dedup(uids), &mut print)?,
            Some(_) => {
                // Streamed: a study is delivered as soon as its line arrives,
                // so `fetch | store -` overlaps the two.
                let mut seen = HashSet::new();
                for (n, line) in std::io::stdin().lock().lines().enumerate() {
                    let line = line.context("failed to read study UIDs from standard input")?;
                    match parse_study_line(&line) {
                        Ok(Some(uid)) if seen.insert(uid.clone()) => print(&store.deliver(&uid, Asked::Named)?)?,
                        Ok(_) => {}
                        Err(e) => {
                            input_errors += 1;
                            reporter.warn(&format!("line {} of standard input: {e:#}", n + 1));
                        }
                    }
                }
            }
        }
        Ok(())
    })();
    super::finish_delivery(store, outcome, settings.quiet, input_errors)
}

fn dedup(uids: Vec<Uid>) -> Vec<Uid> {
    let mut seen = HashSet::new();
    uids.into_iter().filter(|u| seen.insert(u.clone())).collect()
}

fn print_delivered(out: &mut impl Write, r: &StudyResult, destination: &str, json: bool) -> Result<()> {
    StudyLine::new(&r.study)
        .cloud("accession", r.accession.as_deref())
        .with("destination", destination, destination)
        .with("instances", r.total, format!("{} instances", r.total))
        .json_only("delivered", r.delivered)
        .text_only(format!("{} sent", r.sent()))
        .with("warnings", r.warnings, format!("{} with a warning", r.warnings))
        .with("skipped", r.skipped, format!("{} already there", r.skipped))
        .write(out, json)?;
    Ok(())
}
