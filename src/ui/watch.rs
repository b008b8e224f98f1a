//! The view of `watch`: on a terminal, one line per study in flight
//! (fetched / sent / total, rate) under one overall line (studies done,
//! queue, failures, last search, and the destination or the login when they
//! fail); without one, or into `--log-file`, a log line per event that
//! matters (see [`super::log`]).
//!
//! The watch fetches and sends at the same time, and both sides report in
//! the words of [`Reporter`]; the view hears each side through a face of
//! its own ([`WatchReporters`]), so that an instance done counts as fetched
//! or as sent according to who said it. With several destinations, each
//! deliverer has a face of its own, and what it says names its destination.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use anyhow::Result;

use super::log::{Level, LogOut, format_line};
use crate::format::whole_seconds as short;
use crate::report::{Reporter, WatchEvent, WatchReporters, WatchStatus};
use crate::uid::Uid;

/// The view for this run: lines on a terminal unless quiet, else a log on
/// stderr; with `log_file`, a log there as well (every note, even when quiet).
/// `destinations`: the names of the destinations, in the order of the
/// routes, each deliverer's lines naming its own when there are several.
pub fn watch_reporter(quiet: bool, log_file: Option<&Path>, destinations: &[String]) -> Result<WatchReporters> {
    let names = if destinations.len() > 1 {
        destinations.to_vec()
    } else {
        Vec::new()
    };
    let file = log_file
        .map(|path| LogOut::file(path).map(|out| Log::new(false, out).named(&names)))
        .transpose()?;
    let lines = || Lines::new(ProgressDrawTarget::stderr_with_hz(8)).named(&names);
    let n = names.len();
    Ok(match (shows_lines(quiet), file) {
        (true, None) => faces_for(Arc::new(lines()), n),
        (true, Some(file)) => faces_for(Arc::new(Both(lines(), file)), n),
        (false, None) => faces_for(Arc::new(Log::new(quiet, LogOut::Stderr).named(&names)), n),
        // No terminal: the file is the log; stderr keeps what goes wrong.
        (false, Some(file)) => faces_for(Arc::new(Both(Log::new(true, LogOut::Stderr).named(&names), file)), n),
    })
}

/// True when [`watch_reporter`] draws on the terminal (stderr), where
/// anything else printed there would tear the lines.
pub fn shows_lines(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Which side of the watch told the view something: the fetches, or the
/// deliverer of the `n`-th destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Fetching,
    Sending(usize),
}

/// The names of the destinations when there are several (none with one,
/// whose lines say what they always said).
#[derive(Default)]
struct Names(Vec<String>);

impl Names {
    /// The destination `side` speaks for, when there are several.
    fn of(&self, side: Side) -> Option<&str> {
        match side {
            Side::Sending(at) => self.0.get(at).map(String::as_str),
            Side::Fetching => None,
        }
    }

    fn several(&self) -> bool {
        !self.0.is_empty()
    }
}

/// `text`, after `name: ` when it speaks for one of several destinations.
fn from(name: Option<&str>, text: &str) -> String {
    match name {
        Some(name) => format!("{name}: {text}"),
        None => text.to_string(),
    }
}

/// What a view does with what either side tells it.
trait View: Send + Sync {
    /// Work on a study begins on `side`: `total` instances, `done` of them
    /// in the cache already (fetching) or at the destination (sending).
    fn study_started(&self, side: Side, study: &Uid, label: &str, total: u64, done: u64);
    fn study_total(&self, study: &Uid, total: u64);
    fn instance_done(&self, side: Side, study: &Uid, bytes: u64);
    /// The fetch of a study failed; `summary` says how.
    fn fetch_failed(&self, study: &Uid, summary: &str);
    fn warn(&self, message: &str);
    /// A progress note from `side`.
    fn info(&self, side: Side, message: &str);
    fn watch(&self, side: Side, event: &WatchEvent);
}

/// One side's way in to a view.
struct Face<V> {
    view: Arc<V>,
    side: Side,
}

impl<V: View> Reporter for Face<V> {
    fn study_started(&self, study: &Uid, label: &str, total: u64, done: u64) {
        self.view.study_started(self.side, study, label, total, done);
    }

    fn study_total(&self, study: &Uid, total: u64) {
        self.view.study_total(study, total);
    }

    fn instance_done(&self, study: &Uid, bytes: u64) {
        self.view.instance_done(self.side, study, bytes);
    }

    fn study_finished(&self, study: &Uid, ok: bool, summary: &str) {
        // A failed fetch is news at once. How the rest ends, the fetch and
        // the delivery together, the deliverer says once the closing pass
        // is over ([`WatchEvent::StudyDone`]), in the words of the group.
        if self.side == Side::Fetching && !ok {
            self.view.fetch_failed(study, summary);
        }
    }

    fn warn(&self, message: &str) {
        self.view.warn(message);
    }

    fn info(&self, message: &str) {
        self.view.info(self.side, message);
    }

    fn watch(&self, event: &WatchEvent) {
        self.view.watch(self.side, event);
    }
}

/// Two views told the same: the terminal's and the log file's.
struct Both<A, B>(A, B);

impl<A: View, B: View> View for Both<A, B> {
    fn study_started(&self, side: Side, study: &Uid, label: &str, total: u64, done: u64) {
        self.0.study_started(side, study, label, total, done);
        self.1.study_started(side, study, label, total, done);
    }

    fn study_total(&self, study: &Uid, total: u64) {
        self.0.study_total(study, total);
        self.1.study_total(study, total);
    }

    fn instance_done(&self, side: Side, study: &Uid, bytes: u64) {
        self.0.instance_done(side, study, bytes);
        self.1.instance_done(side, study, bytes);
    }

    fn fetch_failed(&self, study: &Uid, summary: &str) {
        self.0.fetch_failed(study, summary);
        self.1.fetch_failed(study, summary);
    }

    fn warn(&self, message: &str) {
        self.0.warn(message);
        self.1.warn(message);
    }

    fn info(&self, side: Side, message: &str) {
        self.0.info(side, message);
        self.1.info(side, message);
    }

    fn watch(&self, side: Side, event: &WatchEvent) {
        self.0.watch(side, event);
        self.1.watch(side, event);
    }
}

#[cfg(test)]
fn faces<V: View + 'static>(view: Arc<V>) -> WatchReporters {
    faces_for(view, 0)
}

/// The faces of `view`: with `several` destinations, one for each.
fn faces_for<V: View + 'static>(view: Arc<V>, several: usize) -> WatchReporters {
    let face = |side| -> Arc<dyn Reporter> {
        Arc::new(Face {
            view: Arc::clone(&view),
            side,
        })
    };
    WatchReporters {
        fetching: face(Side::Fetching),
        sending: face(Side::Sending(0)),
        destinations: (0..several).map(|at| face(Side::Sending(at))).collect(),
    }
}

/// What the fetch and the deliverer's closing pass know at the start of a
/// study: instances in the cache, and at the destination. The closing pass
/// sends only studies complete in the cache.
fn counts_at_start(side: Side, total: u64, done: u64) -> (u64, u64) {
    match side {
        Side::Fetching => (done, 0),
        Side::Sending(_) => (total, done),
    }
}

/// What both views say when the watch begins.
fn started(query: &str, interval: Duration, once: bool, destination: &str) -> String {
    let every = if once {
        "once".to_string()
    } else {
        format!("every {}", short(interval))
    };
    format!("searching the cloud for {query} {every}; delivering to {destination}")
}

/// What both views say when a group is all at the destination.
fn delivered(label: &str, studies: usize, instances: usize) -> String {
    format!(
        "delivered {label} with {} prior{}: {instances} instances",
        studies.saturating_sub(1),
        if studies == 2 { "" } else { "s" }
    )
}

/// What both views say when a group is at the destination and this run
/// sent none of it: the last run did, and stopped before recording it.
fn delivered_before(label: &str, studies: usize, instances: usize) -> String {
    let priors = studies.saturating_sub(1);
    format!(
        "{label} with {priors} prior{} was at the destination already: {instances} instances, none sent again",
        if priors == 1 { "" } else { "s" }
    )
}

/// What both views say when the watch takes up what the last run left undone.
fn resuming(studies: usize, instances: u64) -> String {
    format!(
        "resuming: {studies} stud{} in flight, {instances} instance{} to send",
        if studies == 1 { "y" } else { "ies" },
        if instances == 1 { "" } else { "s" }
    )
}

/// What both views say when the destination (one of several: `name`) answers again.
fn destination_up(after: Duration, name: Option<&str>) -> String {
    format!(
        "the destination{} answers again: back after {}",
        named(name),
        short(after)
    )
}

/// ` NAME`, to follow "the destination" when there are several.
fn named(name: Option<&str>) -> String {
    name.map(|n| format!(" {n}")).unwrap_or_default()
}

/// What both views say when a group failed (the terminal's with `error: `
/// before it). `error` never names the study: `label` does.
fn failed(label: &str, error: &str, retry_in: Option<Duration>) -> String {
    let again = retry_in
        .map(|d| format!("; trying again in {}", short(d)))
        .unwrap_or_default();
    format!("{label}: not delivered: {}{again}", crate::text::escape(error))
}

/// What both views say when the destination (one of several: `name`)
/// cannot be reached (the terminal's with `error: ` before it).
fn destination_down(error: &str, retry_in: Duration, name: Option<&str>) -> String {
    format!(
        "the destination{} is down: {}; trying again in {}",
        named(name),
        crate::text::escape(error),
        short(retry_in)
    )
}

/// The destination a side speaks for (the first, for the fetching side).
fn side_index(side: Side) -> usize {
    match side {
        Side::Sending(at) => at,
        Side::Fetching => 0,
    }
}

/// `22:35:21Z`: the time of day in UTC (the one time zone known here).
fn clock(t: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    stamp.get(11..).unwrap_or(&stamp).to_string()
}

fn rate(bytes: u64, since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64();
    if secs < 0.5 || bytes == 0 {
        String::new()
    } else {
        format!(", {}/s", crate::format::bytes((bytes as f64 / secs) as u64))
    }
}

struct Line {
    bar: ProgressBar,
    label: String,
    total: u64,
    fetched: u64,
    sent: u64,
    /// With several destinations: sent to each working on the study, by
    /// its index and name (`sent` is not used then).
    sent_to: BTreeMap<usize, (String, u64)>,
    bytes: u64,
    started: Instant,
}

impl Line {
    fn show(&self) {
        self.bar.set_length(self.total);
        let total = self.total;
        let sent = if self.sent_to.is_empty() {
            self.bar.set_position(self.sent.min(total));
            format!("{}/{total}", self.sent)
        } else {
            let slowest = self.sent_to.values().map(|(_, n)| *n).min().unwrap_or(0);
            self.bar.set_position(slowest.min(total));
            let each: Vec<String> = self
                .sent_to
                .values()
                .map(|(name, n)| format!("{n}/{total} {name}"))
                .collect();
            each.join(", ")
        };
        self.bar.set_message(format!(
            "fetched {}/{total}, sent {sent}{}",
            self.fetched,
            rate(self.bytes, self.started)
        ));
    }

    /// `side` has `sent` of the study at its destination, or one more.
    fn count_sent(&mut self, names: &Names, side: Side, sent: Option<u64>) {
        let count = match (names.of(side), side) {
            (Some(name), Side::Sending(at)) => &mut self.sent_to.entry(at).or_insert_with(|| (name.to_string(), 0)).1,
            _ => &mut self.sent,
        };
        *count = match sent {
            Some(n) => (*count).max(n),
            None => *count + 1,
        };
    }
}

#[derive(Default)]
struct Overall {
    destination: String,
    status: WatchStatus,
    /// Why each destination that is down is, by index.
    down: BTreeMap<usize, String>,
    auth: Option<(u32, String)>,
}

/// Lines on a terminal.
struct Lines {
    multi: MultiProgress,
    overall: ProgressBar,
    calm: ProgressStyle,
    alarm: ProgressStyle,
    study: ProgressStyle,
    lines: Mutex<HashMap<Uid, Line>>,
    state: Mutex<Overall>,
    names: Names,
}

impl Lines {
    fn named(mut self, names: &[String]) -> Lines {
        self.names = Names(names.to_vec());
        self
    }

    fn new(target: ProgressDrawTarget) -> Lines {
        let multi = MultiProgress::with_draw_target(target);
        // Each line fits the terminal (a wrapped line is not redrawn in
        // place): the overall line is cut at its end, a study's label is
        // cut and its bar narrowed, never its counts.
        let calm = ProgressStyle::with_template("{spinner:.green} {wide_msg}").expect("valid progress template");
        let alarm =
            ProgressStyle::with_template("{spinner:.red} {wide_msg:.red.bold}").expect("valid progress template");
        let study = ProgressStyle::with_template("  {prefix:20!.bold} [{wide_bar:.cyan/blue}] {msg} ({elapsed})")
            .expect("valid progress template")
            .progress_chars("=> ");
        let overall = multi.add(ProgressBar::new_spinner());
        overall.set_style(calm.clone());
        overall.enable_steady_tick(Duration::from_millis(250));
        Lines {
            multi,
            overall,
            calm,
            alarm,
            study,
            lines: Mutex::new(HashMap::new()),
            state: Mutex::new(Overall::default()),
            names: Names::default(),
        }
    }

    fn print(&self, text: String) {
        let _ = self.multi.println(text);
    }

    fn redraw(&self, state: &Overall) {
        let s = &state.status;
        let mut text = format!(
            "watch → {}: {} delivered, {} queued, {} in flight",
            state.destination, s.delivered, s.queued, s.in_flight
        );
        if s.failing > 0 {
            text.push_str(&format!(", {} failing", s.failing));
        }
        match s.last_poll {
            Some((at, found)) => text.push_str(&format!("; last search {} ({found} found)", clock(at))),
            None => text.push_str("; searching"),
        }
        let alarm = if let Some((failures, error)) = &state.auth {
            text = format!("THE CLOUD REFUSES THE LOGIN ({failures} searches in a row): {error} | {text}");
            true
        } else if !state.down.is_empty() {
            let why: Vec<String> = state
                .down
                .iter()
                .map(|(at, why)| from(self.names.of(Side::Sending(*at)), why))
                .collect();
            text = format!("DESTINATION DOWN: {} | {text}", why.join("; "));
            true
        } else {
            false
        };
        self.overall
            .set_style(if alarm { self.alarm.clone() } else { self.calm.clone() });
        self.overall.set_message(text);
    }

    fn with_line(&self, study: &Uid, f: impl FnOnce(&mut Line)) {
        if let Some(line) = self.lines.lock().unwrap().get_mut(study) {
            f(line);
            line.show();
        }
    }

    /// The study's line ends (with several destinations, once each that
    /// worked on it is done): `label` said, or the one it started with.
    fn done(&self, side: Side, study: &Uid, label: Option<&str>, ok: bool, summary: &str) {
        let mut lines = self.lines.lock().unwrap();
        if let (Some(line), Side::Sending(at)) = (lines.get_mut(study), side) {
            line.sent_to.remove(&at);
        }
        let line = match lines.get(study) {
            Some(l) if !l.sent_to.is_empty() => {
                l.show();
                None
            }
            _ => lines.remove(study),
        };
        drop(lines);
        let label = match (label, &line) {
            (Some(label), _) => label.to_string(),
            (None, Some(l)) => l.label.clone(),
            (None, None) => study.to_string(),
        };
        if let Some(line) = line {
            line.bar.finish_and_clear();
            self.multi.remove(&line.bar);
        }
        let mark = if ok { "done" } else { "not done" };
        let label = match self.names.of(side) {
            Some(name) => format!("{label} to {name}"),
            None => label,
        };
        self.print(format!("  {label}: {mark}: {summary}"));
    }
}

impl View for Lines {
    fn study_started(&self, side: Side, study: &Uid, label: &str, total: u64, done: u64) {
        let (fetched, sent) = counts_at_start(side, total, done);
        let mut lines = self.lines.lock().unwrap();
        if let Some(line) = lines.get_mut(study) {
            line.total = total;
            line.fetched = line.fetched.max(fetched);
            if side != Side::Fetching {
                line.count_sent(&self.names, side, Some(sent));
            }
            line.show();
            return;
        }
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(self.study.clone());
        bar.set_prefix(label.to_string());
        let mut line = Line {
            bar,
            label: label.to_string(),
            total,
            fetched,
            sent: 0,
            sent_to: BTreeMap::new(),
            bytes: 0,
            started: Instant::now(),
        };
        if side != Side::Fetching {
            line.count_sent(&self.names, side, Some(sent));
        }
        line.show();
        lines.insert(study.clone(), line);
    }

    fn study_total(&self, study: &Uid, total: u64) {
        self.with_line(study, |l| l.total = total);
    }

    fn instance_done(&self, side: Side, study: &Uid, bytes: u64) {
        self.with_line(study, |l| match side {
            Side::Fetching => {
                l.fetched += 1;
                l.bytes += bytes;
            }
            Side::Sending(_) => l.count_sent(&self.names, side, None),
        });
    }

    fn fetch_failed(&self, study: &Uid, summary: &str) {
        self.done(Side::Fetching, study, None, false, &format!("fetch {summary}"));
    }

    fn warn(&self, message: &str) {
        self.print(format!("warning: {message}"));
    }

    fn info(&self, side: Side, message: &str) {
        self.print(from(self.names.of(side), message));
    }

    fn watch(&self, side: Side, event: &WatchEvent) {
        match event {
            WatchEvent::Started {
                destination,
                query,
                interval,
                once,
            } => {
                let mut state = self.state.lock().unwrap();
                state.destination = destination.clone();
                self.redraw(&state);
                self.print(started(query, *interval, *once, destination));
            }
            WatchEvent::Resuming { studies, instances } => self.print(resuming(*studies, *instances)),
            WatchEvent::Polled { back_after, .. } => {
                let mut state = self.state.lock().unwrap();
                if state.auth.take().is_some() {
                    self.print("the cloud accepts the login again".into());
                } else if let Some(after) = back_after {
                    self.print(format!(
                        "the search works again: the cloud is back after {}",
                        short(*after)
                    ));
                }
                self.redraw(&state);
            }
            WatchEvent::PollFailed {
                error,
                auth,
                failures,
                retry_in,
            } => {
                let mut state = self.state.lock().unwrap();
                if *auth {
                    state.auth = Some((*failures, error.clone()));
                    self.redraw(&state);
                }
                if *failures == 1 || failures.is_power_of_two() || *auth {
                    self.print(format!(
                        "error: the search failed ({failures} in a row), next in {}: {error}",
                        short(*retry_in)
                    ));
                }
            }
            WatchEvent::DeliveredBefore { study, sent } => {
                self.with_line(study, |l| l.count_sent(&self.names, side, Some(*sent)))
            }
            WatchEvent::StudyDone {
                study,
                label,
                ok,
                summary,
            } => self.done(
                side,
                study,
                Some(label.as_str()).filter(|l| !l.is_empty()),
                *ok,
                summary,
            ),
            WatchEvent::Delivered {
                label,
                studies,
                instances,
                sent: 0,
            } => self.print(delivered_before(label, *studies, *instances)),
            WatchEvent::Delivered {
                label,
                studies,
                instances,
                ..
            } => self.print(delivered(label, *studies, *instances)),
            WatchEvent::Failed {
                label, error, retry_in, ..
            } => self.print(format!("error: {}", failed(label, error, *retry_in))),
            WatchEvent::DestinationDown { error, retry_in } => {
                let mut state = self.state.lock().unwrap();
                let at = side_index(side);
                if !state.down.contains_key(&at) {
                    self.print(format!(
                        "error: {}",
                        destination_down(error, *retry_in, self.names.of(side))
                    ));
                }
                state.down.insert(at, error.clone());
                self.redraw(&state);
            }
            WatchEvent::DestinationUp { after } => {
                let mut state = self.state.lock().unwrap();
                state.down.remove(&side_index(side));
                self.redraw(&state);
                self.print(destination_up(*after, self.names.of(side)));
            }
            WatchEvent::Status(status) => {
                let mut state = self.state.lock().unwrap();
                state.status = status.clone();
                self.redraw(&state);
            }
        }
    }
}

/// One timestamped line per event with its level, for a log (no terminal,
/// or `--log-file`) or `--quiet` (warnings and errors only). Each study's
/// failure is said once per cause, and while the destination is down the
/// sending side's notes (each retry of the association) are not repeated:
/// the line that says it is down names the cause, and one says when it is back.
struct Log {
    quiet: bool,
    out: LogOut,
    labels: Mutex<HashMap<Uid, String>>,
    search_failing: Mutex<bool>,
    /// Per study, and per group by its current study (`true`): what its
    /// last failure said, not said again until it changes.
    said: Mutex<HashMap<(Uid, bool), String>>,
    /// Why each destination that is down is (by index), since it was said.
    down: Mutex<HashMap<usize, String>>,
    names: Names,
}

impl Log {
    fn new(quiet: bool, out: LogOut) -> Log {
        Log {
            quiet,
            out,
            labels: Mutex::new(HashMap::new()),
            search_failing: Mutex::new(false),
            said: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            names: Names::default(),
        }
    }

    fn named(mut self, names: &[String]) -> Log {
        self.names = Names(names.to_vec());
        self
    }

    fn line(&self, level: Level, text: String) {
        self.out.write(&format_line(SystemTime::now(), level, &text));
    }

    fn note(&self, text: String) {
        if !self.quiet {
            self.line(Level::Info, text);
        }
    }

    /// True the first time `study` fails with `what`, until it changes or
    /// the study is done.
    fn news(&self, study: &Uid, group: bool, what: &str) -> bool {
        let mut said = self.said.lock().unwrap();
        let key = (study.clone(), group);
        if said.get(&key).is_some_and(|s| s == what) {
            return false;
        }
        said.insert(key, what.to_string());
        true
    }

    /// The study is done with (at one destination of several, if `side`
    /// is its): `label` said, or the one it started with.
    fn done(&self, side: Side, study: &Uid, label: Option<&str>, ok: bool, summary: &str) {
        let known = self.labels.lock().unwrap().remove(study);
        let label = match label {
            Some(label) => label.to_string(),
            None => known.unwrap_or_else(|| study.to_string()),
        };
        let label = match self.names.of(side) {
            Some(name) => format!("{label} to {name}"),
            None => label,
        };
        let summary = crate::text::escape(summary);
        // With several destinations, each one's failure is news of its own.
        let what = match self.names.several() {
            true => format!("{label}: {summary}"),
            false => summary.clone(),
        };
        if ok {
            let mut said = self.said.lock().unwrap();
            said.remove(&(study.clone(), false));
            said.remove(&(study.clone(), true));
            drop(said);
            self.note(format!("{label}: {summary}"));
        } else if self.news(study, false, &what) {
            self.line(Level::Warn, format!("{label}: {summary}"));
        }
    }
}

impl View for Log {
    fn study_started(&self, side: Side, study: &Uid, label: &str, total: u64, done: u64) {
        let (present, _) = counts_at_start(side, total, done);
        let mut labels = self.labels.lock().unwrap();
        if labels.insert(study.clone(), label.to_string()).is_none() && (present < total || total == 0) {
            drop(labels);
            if present == 0 {
                self.note(format!("fetching {label}"));
            } else {
                self.note(format!(
                    "fetching {label}: {present} of {total} instances in the cache already"
                ));
            }
        }
    }

    fn study_total(&self, _study: &Uid, _total: u64) {}

    fn instance_done(&self, _side: Side, _study: &Uid, _bytes: u64) {}

    fn fetch_failed(&self, study: &Uid, summary: &str) {
        self.done(Side::Fetching, study, None, false, &format!("fetch {summary}"));
    }

    fn warn(&self, message: &str) {
        self.line(Level::Warn, crate::text::escape(message));
    }

    fn info(&self, side: Side, message: &str) {
        if side != Side::Fetching && self.down.lock().unwrap().contains_key(&side_index(side)) {
            return;
        }
        self.note(crate::text::escape(&from(self.names.of(side), message)));
    }

    fn watch(&self, side: Side, event: &WatchEvent) {
        match event {
            WatchEvent::Started {
                destination,
                query,
                interval,
                once,
            } => {
                self.note(started(query, *interval, *once, destination));
            }
            WatchEvent::Resuming { studies, instances } => self.note(resuming(*studies, *instances)),
            WatchEvent::Polled {
                found,
                queued,
                back_after,
            } => {
                let recovered = std::mem::take(&mut *self.search_failing.lock().unwrap());
                if recovered {
                    let back = back_after
                        .map(|d| format!(", the cloud is back after {}", short(d)))
                        .unwrap_or_default();
                    self.line(
                        Level::Info,
                        format!("the search works again{back}: {found} studies match, {queued} to do"),
                    );
                } else if *queued > 0 {
                    self.note(format!("search: {found} studies match, {queued} to do"));
                }
            }
            WatchEvent::PollFailed {
                error,
                auth,
                failures,
                retry_in,
            } => {
                *self.search_failing.lock().unwrap() = true;
                let what = if *auth {
                    "LOGIN ERROR: the cloud refuses the login"
                } else {
                    "cloud error: the search failed"
                };
                self.line(
                    Level::Error,
                    format!(
                        "{what} ({failures} in a row), next in {}: {}",
                        short(*retry_in),
                        crate::text::escape(error)
                    ),
                );
            }
            WatchEvent::DeliveredBefore { .. } => {}
            WatchEvent::StudyDone {
                study,
                label,
                ok,
                summary,
            } => self.done(
                side,
                study,
                Some(label.as_str()).filter(|l| !l.is_empty()),
                *ok,
                summary,
            ),
            WatchEvent::Delivered {
                label,
                studies,
                instances,
                sent: 0,
            } => self.note(delivered_before(label, *studies, *instances)),
            WatchEvent::Delivered {
                label,
                studies,
                instances,
                ..
            } => self.note(delivered(label, *studies, *instances)),
            WatchEvent::Failed {
                study,
                label,
                error,
                retry_in,
            } => {
                // The retry time changes with each attempt; the cause is what is news.
                if self.news(study, true, error) {
                    self.line(Level::Error, failed(label, error, *retry_in));
                }
            }
            WatchEvent::DestinationDown { error, retry_in } => {
                let mut down = self.down.lock().unwrap();
                let at = side_index(side);
                if down.get(&at) != Some(error) {
                    self.line(Level::Error, destination_down(error, *retry_in, self.names.of(side)));
                    down.insert(at, error.clone());
                }
            }
            WatchEvent::DestinationUp { after } => {
                self.down.lock().unwrap().remove(&side_index(side));
                self.line(Level::Info, destination_up(*after, self.names.of(side)));
            }
            WatchEvent::Status(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    /// (fetched, sent, total) of the study's line.
    fn counts(view: &Lines, study: &Uid) -> (u64, u64, u64) {
        let lines = view.lines.lock().unwrap();
        let line = &lines[study];
        (line.fetched, line.sent, line.total)
    }

    #[test]
    fn an_instance_counts_as_fetched_or_sent_by_the_side_that_says_it() {
        let view = Arc::new(Lines::new(ProgressDrawTarget::hidden()));
        let r = faces(Arc::clone(&view));
        let study = uid("1.2.3");
        r.fetching.study_started(&study, "ACC1 (current)", 3, 1);
        r.fetching.instance_done(&study, 10);
        r.sending.instance_done(&study, 10);
        r.fetching.study_total(&study, 4);
        assert_eq!(counts(&view, &study), (2, 1, 4));
        // The closing pass sends a study complete in the cache, 3 of it there before.
        r.sending.study_started(&study, "ACC1", 4, 3);
        assert_eq!(counts(&view, &study), (4, 3, 4));
        r.sending.instance_done(&study, 10);
        assert_eq!(counts(&view, &study), (4, 4, 4));
    }

    #[test]
    fn a_study_the_closing_pass_takes_up_again_starts_complete_in_the_cache() {
        let view = Arc::new(Lines::new(ProgressDrawTarget::hidden()));
        let r = faces(Arc::clone(&view));
        let study = uid("1.2.3");
        r.sending.study_started(&study, "ACC1", 5, 2);
        assert_eq!(counts(&view, &study), (5, 2, 5));
    }

    fn log() -> (Arc<Mutex<Vec<String>>>, WatchReporters) {
        let said = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&said);
        let out = Box::new(move |line: &str| {
            // Without the time stamp.
            let text = line.split_once(' ').map_or(line, |(_, text)| text);
            sink.lock().unwrap().push(text.to_string());
        });
        (said, faces(Arc::new(Log::new(false, LogOut::Collect(out)))))
    }

    #[test]
    fn the_log_says_a_fetch_begins_and_fails_under_the_fetchs_label() {
        let (said, r) = log();
        let study = uid("1.2.3");
        r.fetching.study_started(&study, "ACC1 (current)", 3, 1);
        r.fetching.instance_done(&study, 10);
        r.fetching.study_finished(&study, false, "failed");
        assert_eq!(
            *said.lock().unwrap(),
            [
                "INFO fetching ACC1 (current): 1 of 3 instances in the cache already",
                "WARN ACC1 (current): fetch failed",
            ]
        );
    }

    #[test]
    fn the_log_leaves_the_end_of_a_study_to_the_deliverer() {
        let (said, r) = log();
        let study = uid("1.2.3");
        r.fetching.study_started(&study, "ACC1 (current)", 2, 0);
        r.fetching.study_finished(&study, true, "2 instances");
        // A closing pass of a study complete in the cache is not a fetch.
        r.sending.study_started(&study, "ACC1", 2, 0);
        r.sending.instance_done(&study, 10);
        r.sending.study_finished(&study, false, "1 delivered, 1 failed");
        r.sending.watch(&WatchEvent::StudyDone {
            study: study.clone(),
            label: "ACC1".into(),
            ok: false,
            summary: "1 of 2 instances not delivered".into(),
        });
        assert_eq!(
            *said.lock().unwrap(),
            [
                "INFO fetching ACC1 (current)",
                "WARN ACC1: 1 of 2 instances not delivered"
            ]
        );
    }

    #[test]
    fn the_log_says_each_failure_once_and_the_down_destination_once() {
        let (said, r) = log();
        let (current, prior) = (uid("1.2.3"), uid("1.2.4"));
        let down = "could not connect to PACS@127.0.0.1:9 (connection refused)";
        for _ in 0..3 {
            r.sending.watch(&WatchEvent::DestinationDown {
                error: down.into(),
                retry_in: Duration::from_secs(1),
            });
            r.sending.info(&format!("trying again in 500ms: {down}"));
            for (study, label) in [(&current, "ACC1"), (&prior, "ACC0")] {
                r.sending.watch(&WatchEvent::StudyDone {
                    study: study.clone(),
                    label: label.into(),
                    ok: false,
                    summary: "2 of 2 instances not delivered".into(),
                });
            }
            r.fetching.watch(&WatchEvent::Failed {
                study: current.clone(),
                label: "ACC1".into(),
                error: format!("delivery to PACS@127.0.0.1:9 stopped: {down}"),
                retry_in: Some(Duration::from_secs(30)),
            });
        }
        assert_eq!(
            *said.lock().unwrap(),
            [
                format!("ERROR the destination is down: {down}; trying again in 1s"),
                "WARN ACC1: 2 of 2 instances not delivered".into(),
                "WARN ACC0: 2 of 2 instances not delivered".into(),
                format!("ERROR ACC1: not delivered: delivery to PACS@127.0.0.1:9 stopped: {down}; trying again in 30s"),
            ]
        );
    }

    /// With several destinations, what each deliverer says names its destination, and one
    /// that is down silences its own notes only.
    #[test]
    fn with_several_destinations_each_deliverers_lines_name_it() {
        let said = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&said);
        let out = Box::new(move |line: &str| {
            let text = line.split_once(' ').map_or(line, |(_, text)| text);
            sink.lock().unwrap().push(text.to_string());
        });
        let names = ["pacs".to_string(), "ws".to_string()];
        let r = faces_for(Arc::new(Log::new(false, LogOut::Collect(out)).named(&names)), 2);
        let (pacs, ws) = (&r.destinations[0], &r.destinations[1]);
        let study = uid("1.2.3");
        ws.watch(&WatchEvent::DestinationDown {
            error: "connection refused".into(),
            retry_in: Duration::from_secs(1),
        });
        ws.info("trying again");
        pacs.info("association opened");
        for (face, ok, summary) in [
            (pacs, true, "2 instances at the destination"),
            (ws, false, "not delivered"),
        ] {
            face.watch(&WatchEvent::StudyDone {
                study: study.clone(),
                label: "ACC1".into(),
                ok,
                summary: summary.into(),
            });
        }
        ws.watch(&WatchEvent::DestinationUp {
            after: Duration::from_secs(60),
        });
        assert_eq!(
            *said.lock().unwrap(),
            [
                "ERROR the destination ws is down: connection refused; trying again in 1s",
                "INFO pacs: association opened",
                "INFO ACC1 to pacs: 2 instances at the destination",
                "WARN ACC1 to ws: not delivered",
                "INFO the destination ws answers again: back after 1m",
            ]
        );
    }

    /// On the terminal, a study's line counts what each destination has, and ends once
    /// each destination that worked on it is done.
    #[test]
    fn with_several_destinations_a_line_counts_each_and_ends_with_the_last() {
        let names = ["pacs".to_string(), "ws".to_string()];
        let view = Arc::new(Lines::new(ProgressDrawTarget::hidden()).named(&names));
        let r = faces_for(Arc::clone(&view), 2);
        let study = uid("1.2.3");
        r.fetching.study_started(&study, "ACC1 (current)", 3, 0);
        r.destinations[0].instance_done(&study, 10);
        r.destinations[0].instance_done(&study, 10);
        r.destinations[1].instance_done(&study, 10);
        {
            let lines = view.lines.lock().unwrap();
            let sent: Vec<u64> = lines[&study].sent_to.values().map(|(_, n)| *n).collect();
            assert_eq!(sent, [2, 1]);
        }
        let done = |at: usize| {
            r.destinations[at].watch(&WatchEvent::StudyDone {
                study: study.clone(),
                label: "ACC1".into(),
                ok: true,
                summary: "3 instances at the destination".into(),
            })
        };
        done(0);
        assert!(view.lines.lock().unwrap().contains_key(&study), "ws is not done yet");
        done(1);
        assert!(!view.lines.lock().unwrap().contains_key(&study));
    }

    #[test]
    fn the_log_says_an_outage_once_and_its_end_once_with_how_long() {
        let (said, r) = log();
        r.fetching.watch(&WatchEvent::Resuming {
            studies: 3,
            instances: 12,
        });
        r.fetching.watch(&WatchEvent::PollFailed {
            error: "HTTP 503".into(),
            auth: false,
            failures: 1,
            retry_in: Duration::from_secs(2),
        });
        r.fetching.watch(&WatchEvent::Polled {
            found: 4,
            queued: 1,
            back_after: Some(Duration::from_secs(61)),
        });
        r.sending.watch(&WatchEvent::DestinationDown {
            error: "connection refused".into(),
            retry_in: Duration::from_secs(1),
        });
        r.sending.watch(&WatchEvent::DestinationUp {
            after: Duration::from_secs(60),
        });
        for sent in [0, 2] {
            r.fetching.watch(&WatchEvent::Delivered {
                label: "ACC1".into(),
                studies: 2,
                instances: 5,
                sent,
            });
        }
        assert_eq!(
            *said.lock().unwrap(),
            [
                "INFO resuming: 3 studies in flight, 12 instances to send",
                "ERROR cloud error: the search failed (1 in a row), next in 2s: HTTP 503",
                "INFO the search works again, the cloud is back after 1m 1s: 4 studies match, 1 to do",
                "ERROR the destination is down: connection refused; trying again in 1s",
                "INFO the destination answers again: back after 1m",
                "INFO ACC1 with 1 prior was at the destination already: 5 instances, none sent again",
                "INFO delivered ACC1 with 1 prior: 5 instances",
            ]
        );
    }
}
