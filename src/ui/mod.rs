//! Everything that prints progress: bars on a terminal, with indicatif (the
//! only module that knows about it), plain lines otherwise. One bar per
//! study in flight; `watch` has its own view (`watch`), `prune` its printer
//! (`prune`); without a terminal, [`Plain`].

mod log;
mod plain;
mod prune;
mod watch;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::Reporter;
use crate::uid::Uid;

pub use plain::Plain;
pub use prune::{PrunePrinter, PruneView};
pub use watch::{shows_lines, watch_reporter};

/// The reporter for this run: bars when stderr is a terminal and the run is
/// not quiet, plain warnings otherwise.
pub fn reporter(quiet: bool) -> Box<dyn Reporter> {
    if quiet || !std::io::stderr().is_terminal() {
        Box::new(Plain { quiet })
    } else {
        Box::new(Bars::new())
    }
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Uid, Shared>>,
    style: ProgressStyle,
}

/// One study's bar, shared by the destinations delivering it at the same
/// time: it counts their instances together and finishes with the last.
struct Shared {
    bar: ProgressBar,
    users: usize,
    failed: bool,
    summaries: Vec<String>,
}

impl Bars {
    fn new() -> Bars {
        // The label is cut and the bar narrowed, never the counts, so that
        // a line fits the terminal and is redrawn in place, not wrapped.
        let style =
            ProgressStyle::with_template("{prefix:24!.bold} [{wide_bar:.cyan/blue}] {pos}/{len} {msg} ({elapsed})")
                .expect("valid progress template")
                .progress_chars("=> ");
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            bars: Mutex::new(HashMap::new()),
            style,
        }
    }

    fn bar(&self, study: &Uid) -> Option<ProgressBar> {
        self.bars.lock().unwrap().get(study).map(|s| s.bar.clone())
    }
}

impl Reporter for Bars {
    fn study_started(&self, study: &Uid, label: &str, total: u64, done: u64) {
        let mut bars = self.bars.lock().unwrap();
        if let Some(shared) = bars.get_mut(study) {
            shared.bar.inc_length(total);
            shared.bar.inc(done);
            shared.users += 1;
            return;
        }
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(self.style.clone());
        bar.set_prefix(label.to_string());
        bar.set_position(done);
        bar.set_message("instances");
        bar.enable_steady_tick(Duration::from_millis(200));
        let shared = Shared {
            bar,
            users: 1,
            failed: false,
            summaries: Vec::new(),
        };
        bars.insert(study.clone(), shared);
    }

    fn study_total(&self, study: &Uid, total: u64) {
        if let Some(bar) = self.bar(study) {
            bar.set_length(total);
        }
    }

    fn instance_done(&self, study: &Uid, _bytes: u64) {
        if let Some(bar) = self.bar(study) {
            bar.inc(1);
        }
    }

    fn study_finished(&self, study: &Uid, ok: bool, summary: &str) {
        let mut bars = self.bars.lock().unwrap();
        let Some(shared) = bars.get_mut(study) else { return };
        shared.users -= 1;
        shared.failed |= !ok;
        shared.summaries.push(summary.to_string());
        if shared.users == 0
            && let Some(shared) = bars.remove(study)
        {
            let mark = if shared.failed { "FAILED" } else { "done" };
            let summary = shared.summaries.join("; ");
            shared.bar.finish_with_message(format!("{mark}: {summary}"));
        }
    }

    fn warn(&self, message: &str) {
        let _ = self.multi.println(format!("warning: {message}"));
    }

    fn suspend(&self, print: &mut dyn FnMut()) {
        self.multi.suspend(print)
    }

    fn info(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}
