//! `retriever prune`: expire the cache (rules in [`crate::prune`]), shown as
//! it goes by [`crate::ui::PrunePrinter`] (one line per removed study on
//! stdout, what was kept and why on stderr), then the closing summary.

use std::time::SystemTime;

use anyhow::{Result, bail};

use crate::cache::Cache;
use crate::cli::PruneArgs;
use crate::config::Settings;
use crate::prune::{PruneOptions, Summary, judged_against, prune};
use crate::report::JudgedAgainst;
use crate::ui;

pub fn run(settings: &Settings, args: &PruneArgs) -> Result<()> {
    let routes = settings.routes_if_given()?;
    let judged_against = judged_against(routes.as_ref());
    let opts = PruneOptions {
        older_than: settings.retention,
        max_age: settings.max_age,
        include_undelivered: args.include_undelivered,
        routes,
        dry_run: args.dry_run,
        now: SystemTime::now(),
    };
    let cache = Cache::open(&settings.cache_root)?;
    // Two prunes at once (a slow run and the next scheduled one) would
    // only get in each other's way.
    let Some(_lock) = cache.try_lock_prune()? else {
        eprintln!(
            "another prune is running on the cache `{}`; nothing to do",
            cache.root().display()
        );
        return Ok(());
    };
    let view = ui::PruneView {
        json: args.json,
        quiet: settings.quiet,
        dry_run: opts.dry_run,
        max_age: opts.max_age,
        judged_against: judged_against.clone(),
    };
    let printer = ui::PrunePrinter::new(std::io::stdout(), view);
    let summary = prune(&cache, &opts, &printer)?;
    if let Some(e) = printer.into_write_error() {
        return Err(anyhow::Error::new(e).context("failed to write to standard output"));
    }
    let error = summary.error();
    if !settings.quiet || error.is_some() {
        eprint!("{}", describe(&summary, &opts, &judged_against));
    }
    match error {
        None => Ok(()),
        Some(e) => bail!("{e}"),
    }
}

/// The closing summary, for stderr.
fn describe(s: &Summary, opts: &PruneOptions, against: &JudgedAgainst) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut text = String::new();
    let undelivered = match s.removed_undelivered {
        0 => String::new(),
        n => format!(" ({n} not delivered)"),
    };
    let leftovers = match s.leftovers {
        0 => String::new(),
        n => format!(
            " and {}",
            plural(n, "leftover of an interrupted run", "leftovers of interrupted runs")
        ),
    };
    let freed = crate::format::bytes(s.freed);
    if opts.dry_run {
        text += &format!(
            "dry run: would remove {}{undelivered}{leftovers}, freeing {freed} ({} bytes); nothing was removed\n",
            plural(s.removed, "study", "studies"),
            s.freed
        );
    } else {
        text += &format!(
            "removed {}{undelivered}{leftovers}, freed {freed} ({} bytes)\n",
            plural(s.removed, "study", "studies"),
            s.freed
        );
    }
    if s.kept_undelivered > 0 {
        text += &format!(
            "kept {} older than {} but not delivered{} (--include-undelivered removes them; past {} they go anyway)\n",
            plural(s.kept_undelivered, "study", "studies"),
            crate::format::two_units(opts.older_than),
            match against {
                JudgedAgainst::Any => String::new(),
                against => format!(" to {}", against.describe(s.kept_undelivered > 1)),
            },
            crate::format::two_units(opts.max_age),
        );
    }
    if s.busy + s.in_use > 0 {
        text += &format!(
            "skipped {} in use; a later prune tries again\n",
            plural(s.busy + s.in_use, "study", "studies")
        );
    }
    if !s.failures.is_empty() {
        text += &format!("failed: {}\n", s.failures.len());
    }
    text
}
