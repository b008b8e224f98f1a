//! `retriever store`: complete studies from the cache to the DICOM
//! destination. Also the delivery half of `fetch --store`.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cache::Cache;
use crate::cli::StoreArgs;
use crate::config::{CloudConfig, Settings};
use crate::delivery::{Asked, Store, StoreOptions, StudyResult, StudyState};
use crate::dimse::ScuOptions;
use crate::report::Reporter;
use crate::store::parse_study_line;
use crate::ui;
use crate::uid::Uid;

pub fn run(settings: &Settings, args: &StoreArgs) -> Result<()> {
    let opts = store_options(settings)?;
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
        settings.cloud().ok().cloned().map(CloudConfig::in_syntax),
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
            Some(uids) if !uids.is_empty() => {
                for uid in dedup(uids) {
                    print(&store.deliver(&uid, Asked::Named)?)?;
                }
            }
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
    finish(store, outcome, settings.quiet, input_errors)
}

/// Delivers studies a `fetch --store` made complete, printing nothing on
/// stdout (fetch printed them already).
pub fn deliver_fetched(
    settings: &Settings,
    opts: &StoreOptions,
    cache: &Cache,
    reporter: &dyn Reporter,
    studies: &[Uid],
) -> Result<()> {
    let mut store = Store::new(
        cache,
        opts,
        settings.cloud().ok().cloned().map(CloudConfig::in_syntax),
        reporter,
    );
    let outcome = (|| -> Result<()> {
        for uid in studies {
            store.deliver(uid, Asked::Named)?;
        }
        Ok(())
    })();
    finish(store, outcome, settings.quiet, 0)
}

/// Prints the summary on stderr (in a quiet run only when something went
/// wrong) and turns the run into its final error.
fn finish(store: Store<'_>, outcome: Result<()>, quiet: bool, input_errors: usize) -> Result<()> {
    let summary = store.into_summary();
    let error = summary.error();
    let failed = error.is_some() || outcome.is_err() || input_errors > 0;
    if !quiet || failed {
        eprint!("{summary}");
        if summary.studies.is_empty() && outcome.is_ok() {
            eprintln!("  nothing to deliver: no study asked for, and none complete in the cache");
        }
    }
    outcome?;
    match (error, input_errors) {
        (None, 0) => Ok(()),
        (None, n) => bail!(
            "{n} line{} of standard input named no study",
            if n == 1 { "" } else { "s" }
        ),
        (Some(e), 0) => bail!("{e}"),
        (Some(e), n) => bail!(
            "{e}; {n} line{} of standard input named no study",
            if n == 1 { "" } else { "s" }
        ),
    }
}

fn dedup(uids: Vec<Uid>) -> Vec<Uid> {
    let mut seen = HashSet::new();
    uids.into_iter().filter(|u| seen.insert(u.clone())).collect()
}

fn print_delivered(out: &mut impl Write, r: &StudyResult, destination: &str, json: bool) -> Result<()> {
    if json {
        let value = json!({
            "study_uid": r.study.as_str(),
            "accession": r.accession,
            "destination": destination,
            "instances": r.total,
            "delivered": r.delivered,
            "warnings": r.warnings,
            "skipped": r.skipped,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "{}\t{}\t{destination}\t{} instances\t{} sent\t{} with a warning\t{} already there",
            r.study,
            super::field(r.accession.as_deref()),
            r.total,
            r.sent(),
            r.warnings,
            r.skipped,
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The association settings for the destination: the DICOM flags (see
/// `cli::DimseArgs`), as merged with the environment and the config file
/// into `settings.dicom`.
pub fn scu_options(settings: &Settings) -> Result<ScuOptions> {
    let dicom = &settings.dicom;
    let mut opts = ScuOptions::new(settings.destination()?.clone());
    opts.calling_ae = settings.calling_ae.clone();
    opts.max_pdu = dicom.max_pdu;
    opts.decompress_lossy = dicom.decompress_lossy;
    opts.connect_timeout = dicom.connect_timeout;
    opts.acse_timeout = dicom.acse_timeout;
    opts.dimse_timeout = dicom.dimse_timeout;
    Ok(opts)
}

/// [`scu_options`] plus how many associations and retries.
pub fn store_options(settings: &Settings) -> Result<StoreOptions> {
    let mut opts = StoreOptions::new(scu_options(settings)?);
    opts.associations = usize::from(settings.dicom.associations);
    opts.retries = settings.dicom.store_retries;
    Ok(opts)
}
