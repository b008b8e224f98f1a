//! `retriever echo`: C-ECHO the destinations, to check that each is there,
//! answers to its AE title and accepts ours. One `--to` gets one line, as
//! it always has; the config file's destinations (or those of `--dest`) are
//! echoed at the same time, one line each, and the exit status says whether
//! every one answered.

use anyhow::{Result, anyhow, bail};

use crate::config::Settings;
use crate::dimse::{self, EchoReport, ScuOptions};
use crate::interrupt;
use crate::routing::Routes;

/// `echo`'s DICOM flags are in `settings.dicom` (merged with the
/// environment and the config file).
pub fn run(settings: &Settings) -> Result<()> {
    let routes = settings.routes()?;
    if !routes.is_configured() {
        return echo_one(settings.scu_options()?);
    }
    echo_all(&routes)
}

/// The one destination of `--to`: its answer, or the error.
fn echo_one(opts: ScuOptions) -> Result<()> {
    // On a thread of its own so that Ctrl-C ends the wait for a destination
    // that never answers at once; the association is ours alone, and ends
    // with the process.
    let report = {
        let opts = opts.clone();
        interrupt::outwait(move || echo(&opts))??
    };
    println!(
        "{} answered C-ECHO in {:.1} ms (connect, associate, echo and release: {:.1} ms; max PDU {} bytes)",
        opts.destination,
        report.round_trip.as_secs_f64() * 1000.0,
        report.total.as_secs_f64() * 1000.0,
        report.max_pdu
    );
    Ok(())
}

/// Every destination at once (one that does not answer waits out its own
/// timeouts without holding up the others' lines), one line each, in the
/// order of the config file.
fn echo_all(routes: &Routes) -> Result<()> {
    let options: Vec<ScuOptions> = routes.iter().map(|r| r.store.scu.clone()).collect();
    // One thread for each destination, all waited for on a thread of
    // their own so that Ctrl-C ends the wait at once.
    let answers = interrupt::outwait(move || {
        std::thread::scope(|scope| {
            let echoes: Vec<_> = options
                .into_iter()
                .map(|opts| scope.spawn(move || echo(&opts)))
                .collect();
            echoes
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("the C-ECHO ended unexpectedly")))
                })
                .collect::<Vec<_>>()
        })
    })?;
    let mut failed = Vec::new();
    for (route, answer) in routes.iter().zip(answers) {
        match answer {
            Ok(report) => println!(
                "{route}: ok in {:.1} ms (max PDU {} bytes)",
                report.total.as_secs_f64() * 1000.0,
                report.max_pdu
            ),
            Err(e) => {
                println!("{route}: failed: {e:#}");
                failed.push(route.name.as_str());
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        n => bail!(
            "{n} of {} destinations did not answer the C-ECHO ({}); see the lines above, fix them or leave them \
             out with --dest",
            routes.len(),
            failed.join(", ")
        ),
    }
}

/// One C-ECHO: its report when the destination answered success.
fn echo(opts: &ScuOptions) -> Result<EchoReport> {
    let report = dimse::echo(opts).map_err(|e| anyhow!("C-ECHO failed: {e}"))?;
    if report.status.code != 0 {
        bail!("{} answered the C-ECHO with {}", opts.destination, report.status);
    }
    Ok(report)
}
