//! `retriever echo`: C-ECHO the destination, to check that it is there, answers
//! to its AE title and accepts ours.

use anyhow::{Result, anyhow, bail};

use crate::config::Settings;
use crate::dimse;
use crate::interrupt;

/// `echo`'s DICOM flags are in `settings.dicom` (merged with the
/// environment and the config file).
pub fn run(settings: &Settings) -> Result<()> {
    let opts = settings.scu_options()?;
    // The association runs on a thread of its own so that Ctrl-C ends the
    // wait for a destination that never answers at once; the association
    // is ours alone, and ends with the process.
    let echoed = {
        let opts = opts.clone();
        interrupt::outwait(move || dimse::echo(&opts))?
    };
    let report = echoed.map_err(|e| anyhow!("C-ECHO failed: {e}"))?;
    if report.status.code != 0 {
        bail!("{} answered the C-ECHO with {}", opts.destination, report.status);
    }
    println!(
        "{} answered C-ECHO in {:.1} ms (connect, associate, echo and release: {:.1} ms; max PDU {} bytes)",
        opts.destination,
        report.round_trip.as_secs_f64() * 1000.0,
        report.total.as_secs_f64() * 1000.0,
        report.max_pdu
    );
    Ok(())
}
