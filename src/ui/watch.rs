//! The view of `watch`: on a terminal, one line per study in flight
//! (fetched / sent / total, rate) under one overall line (studies done,
//! queue, failures, last search, and the destination or the login when they
//! fail); without one, a timestamped log line per event that matters.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::format::whole_seconds as short;
use crate::report::{Reporter, WatchEvent, WatchStatus};
use crate::uid::Uid;

/// The view for this run: lines on a terminal unless quiet, else a log.
pub fn watch_reporter(quiet: bool) -> Box<dyn Reporter> {
    if shows_lines(quiet) {
        Box::new(Lines::new())
    } else {
        Box::new(Log {
            quiet,
            labels: Mutex::new(HashMap::new()),
            search_failing: Mutex::new(false),
        })
    }
}

/// True when [`watch_reporter`] draws on the terminal (stderr), where
/// anything else printed there would tear the lines.
pub fn shows_lines(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
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

/// What both views say when a group failed.
fn failed(label: &str, error: &str, retry_in: Option<Duration>) -> String {
    let again = retry_in
        .map(|d| format!("; trying again in {}", short(d)))
        .unwrap_or_default();
    format!("error: {label}: {error}{again}")
}

/// What both views say when the destination cannot be reached.
fn destination_down(error: &str, retry_in: Duration) -> String {
    format!(
        "error: the destination is down: {error}; trying again in {}",
        short(retry_in)
    )
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
    bytes: u64,
    started: Instant,
}

impl Line {
    fn show(&self) {
        self.bar.set_length(self.total);
        self.bar.set_position(self.sent.min(self.total));
        self.bar.set_message(format!(
            "fetched {}/{}, sent {}/{}{}",
            self.fetched,
            self.total,
            self.sent,
            self.total,
            rate(self.bytes, self.started)
        ));
    }
}

#[derive(Default)]
struct Overall {
    destination: String,
    status: WatchStatus,
    down: Option<String>,
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
}

impl Lines {
    fn new() -> Lines {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let calm = ProgressStyle::with_template("{spinner:.green} {msg}").expect("valid progress template");
        let alarm = ProgressStyle::with_template("{spinner:.red} {msg:.red.bold}").expect("valid progress template");
        let study = ProgressStyle::with_template("  {prefix:20.bold} [{bar:24.cyan/blue}] {msg} ({elapsed})")
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
        } else if let Some(why) = &state.down {
            text = format!("DESTINATION DOWN: {why} | {text}");
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
}

impl Reporter for Lines {
    fn warn(&self, message: &str) {
        self.print(format!("warning: {message}"));
    }

    fn info(&self, message: &str) {
        self.print(message.to_string());
    }

    fn watch(&self, event: &WatchEvent) {
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
            WatchEvent::Polled { .. } => {
                let mut state = self.state.lock().unwrap();
                if state.auth.take().is_some() {
                    self.print("the cloud accepts the login again".into());
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
            WatchEvent::StudyStarted {
                study,
                label,
                total,
                present,
            } => {
                let mut lines = self.lines.lock().unwrap();
                if let Some(line) = lines.get_mut(study) {
                    line.total = *total;
                    line.fetched = line.fetched.max(*present);
                    line.show();
                    return;
                }
                let bar = self.multi.add(ProgressBar::new(*total));
                bar.set_style(self.study.clone());
                bar.set_prefix(label.clone());
                let line = Line {
                    bar,
                    label: label.clone(),
                    total: *total,
                    fetched: *present,
                    sent: 0,
                    bytes: 0,
                    started: Instant::now(),
                };
                line.show();
                lines.insert(study.clone(), line);
            }
            WatchEvent::StudyTotal { study, total } => self.with_line(study, |l| l.total = *total),
            WatchEvent::DeliveredBefore { study, sent } => self.with_line(study, |l| l.sent = l.sent.max(*sent)),
            WatchEvent::Fetched { study, bytes } => self.with_line(study, |l| {
                l.fetched += 1;
                l.bytes += bytes;
            }),
            WatchEvent::Sent { study, .. } => self.with_line(study, |l| l.sent += 1),
            WatchEvent::StudyDone {
                study,
                label,
                ok,
                summary,
            } => {
                let line = self.lines.lock().unwrap().remove(study);
                let label = match &line {
                    Some(l) if label.is_empty() => l.label.clone(),
                    _ if label.is_empty() => study.to_string(),
                    _ => label.clone(),
                };
                if let Some(line) = line {
                    line.bar.finish_and_clear();
                    self.multi.remove(&line.bar);
                }
                let mark = if *ok { "done" } else { "not done" };
                self.print(format!("  {label}: {mark}: {summary}"));
            }
            WatchEvent::Delivered {
                label,
                studies,
                instances,
            } => self.print(delivered(label, *studies, *instances)),
            WatchEvent::Failed { label, error, retry_in } => self.print(failed(label, error, *retry_in)),
            WatchEvent::DestinationDown { error, retry_in } => {
                let mut state = self.state.lock().unwrap();
                if state.down.is_none() {
                    self.print(destination_down(error, *retry_in));
                }
                state.down = Some(error.clone());
                self.redraw(&state);
            }
            WatchEvent::DestinationUp => {
                let mut state = self.state.lock().unwrap();
                state.down = None;
                self.redraw(&state);
                self.print("the destination answers again".into());
            }
            WatchEvent::Status(status) => {
                let mut state = self.state.lock().unwrap();
                state.status = status.clone();
                self.redraw(&state);
            }
        }
    }
}

/// One timestamped line per event, for a log (no terminal) or `--quiet`
/// (errors only).
struct Log {
    quiet: bool,
    labels: Mutex<HashMap<Uid, String>>,
    search_failing: Mutex<bool>,
}

impl Log {
    fn line(&self, text: String) {
        eprintln!("{} {text}", humantime::format_rfc3339_seconds(SystemTime::now()));
    }

    fn note(&self, text: String) {
        if !self.quiet {
            self.line(text);
        }
    }
}

impl Reporter for Log {
    fn warn(&self, message: &str) {
        self.line(format!("warning: {message}"));
    }

    fn info(&self, message: &str) {
        self.note(message.to_string());
    }

    fn watch(&self, event: &WatchEvent) {
        match event {
            WatchEvent::Started {
                destination,
                query,
                interval,
                once,
            } => {
                self.note(started(query, *interval, *once, destination));
            }
            WatchEvent::Polled { found, queued } => {
                let recovered = std::mem::take(&mut *self.search_failing.lock().unwrap());
                if recovered {
                    self.line(format!("the search works again: {found} studies match, {queued} to do"));
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
                    "ERROR: the cloud refuses the login"
                } else {
                    "error: the search failed"
                };
                self.line(format!(
                    "{what} ({failures} in a row), next in {}: {error}",
                    short(*retry_in)
                ));
            }
            WatchEvent::StudyStarted {
                study,
                label,
                total,
                present,
            } => {
                let mut labels = self.labels.lock().unwrap();
                if labels.insert(study.clone(), label.clone()).is_none() && (present < total || *total == 0) {
                    drop(labels);
                    if *present == 0 {
                        self.note(format!("fetching {label}"));
                    } else {
                        self.note(format!(
                            "fetching {label}: {present} of {total} instances in the cache already"
                        ));
                    }
                }
            }
            WatchEvent::StudyTotal { .. }
            | WatchEvent::DeliveredBefore { .. }
            | WatchEvent::Fetched { .. }
            | WatchEvent::Sent { .. } => {}
            WatchEvent::StudyDone {
                study,
                label,
                ok,
                summary,
            } => {
                let known = self.labels.lock().unwrap().remove(study);
                let label = if label.is_empty() {
                    known.unwrap_or_else(|| study.to_string())
                } else {
                    label.clone()
                };
                if *ok {
                    self.note(format!("{label}: {summary}"));
                } else {
                    self.line(format!("warning: {label}: {summary}"));
                }
            }
            WatchEvent::Delivered {
                label,
                studies,
                instances,
            } => self.note(delivered(label, *studies, *instances)),
            WatchEvent::Failed { label, error, retry_in } => self.line(failed(label, error, *retry_in)),
            WatchEvent::DestinationDown { error, retry_in } => self.line(destination_down(error, *retry_in)),
            WatchEvent::DestinationUp => self.line("the destination answers again".into()),
            WatchEvent::Status(_) => {}
        }
    }
}
