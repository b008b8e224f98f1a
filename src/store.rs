//! `store`: delivering studies from the cache to their DICOM destinations
//! now. What to deliver comes from the command line or from `fetch`'s output
//! on stdin; where each study goes is the routes' ([`crate::routing`]); how
//! it is delivered is the delivery engine's ([`crate::delivery`]).

use std::sync::mpsc;

use anyhow::{Context, Result};

use crate::cache::Cache;
use crate::delivery::{Asked, Store, StudyResult, Summary};
use crate::dicomweb::ClientOptions;
use crate::interrupt;
use crate::report::Reporter;
use crate::routing::{Decision, Route, Routes};
use crate::uid::Uid;

/// Parses one line of `store -` input: a JSON object with "study_uid" (as
/// `fetch --json` prints), or text whose first whitespace-separated field
/// is the Study Instance UID (as `fetch` prints). Blank lines and `#`
/// comments give `None`.
pub fn parse_study_line(line: &str) -> Result<Option<Uid>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let raw = if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("the line `{}` is not valid JSON", crate::text::escape(line)))?;
        value
            .get("study_uid")
            .and_then(|v| v.as_str())
            .with_context(|| {
                format!(
                    "the JSON line `{}` has no \"study_uid\" string",
                    crate::text::escape(line)
                )
            })?
            .to_string()
    } else {
        line.split_whitespace().next().unwrap_or_default().to_string()
    };
    let uid =
        Uid::parse(&raw).with_context(|| format!("`{}` is not a Study Instance UID", crate::text::escape(&raw)))?;
    Ok(Some(uid))
}

/// Where a study is to be delivered from: named (on the command line, on
/// stdin, or made complete by `fetch --store`), or found in the cache by a
/// run that names none.
pub type Wanted = (Uid, Asked);

/// What a delivery to every routed destination did: each destination's
/// summary (in the order the routes were given), and the studies named
/// that the rules keep from a destination chosen by name.
pub struct Routed {
    pub summaries: Vec<Summary>,
    /// Studies named that a destination chosen with `--dest` is not for.
    pub withheld: usize,
    /// `Err` for Ctrl-C, or when the results could not be printed.
    pub outcome: Result<()>,
}

/// How [`deliver_routed`] runs.
pub struct Fanout<'a> {
    pub cache: &'a Cache,
    pub routes: &'a Routes,
    /// The destinations were chosen by name (`--dest`): a study named that
    /// a chosen destination's rules do not take is a failure of the run,
    /// not merely a study that goes elsewhere.
    pub chosen: bool,
    /// Asked again for instances a destination takes only in another syntax.
    pub cloud: Option<ClientOptions>,
    pub reporter: &'a dyn Reporter,
}

/// Delivers each study to every destination its rules route it to, one
/// [`Store`] per destination, each in its own thread fed from its own
/// queue, so that a destination down or refusing does not hold up the
/// others. `studies` is read as it comes (`store -` overlaps `fetch`);
/// `each` is told of every (destination, study) result.
pub fn deliver_routed(
    fanout: &Fanout<'_>,
    studies: &mut dyn Iterator<Item = Wanted>,
    each: &(dyn Fn(&Route, &StudyResult) -> Result<()> + Sync),
) -> Routed {
    let routes: Vec<&Route> = fanout.routes.iter().collect();
    let mut withheld = 0;
    let finished = std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(routes.len());
        let mut workers = Vec::with_capacity(routes.len());
        for &route in &routes {
            let (tx, rx) = mpsc::channel::<Wanted>();
            queues.push(tx);
            workers.push(scope.spawn(move || deliver_queue(fanout, route, rx, each)));
        }
        for (uid, asked) in studies {
            if interrupt::requested() {
                break;
            }
            let routed = match fanout.cache.read_manifest(&uid) {
                Ok(Some(manifest)) => {
                    let decisions = fanout.routes.for_study(&manifest.study, &manifest.roles);
                    withheld += withhold(fanout, &uid, asked, &decisions);
                    decisions.iter().map(|(_, d)| d.routed).collect()
                }
                // Not (yet) in the cache, or unreadable: every destination
                // says so in its summary, as a run to one always did.
                Ok(None) if asked == Asked::Found => continue,
                Ok(None) | Err(_) => vec![true; routes.len()],
            };
            for (queue, go) in queues.iter().zip(routed) {
                // A queue whose destination stopped (Ctrl-C, stdout gone)
                // takes nothing more; its outcome says why.
                if go {
                    let _ = queue.send((uid.clone(), asked));
                }
            }
        }
        drop(queues);
        workers
            .into_iter()
            .map(|w| w.join().expect("a delivery thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut summaries = Vec::with_capacity(finished.len());
    let mut outcome = Ok(());
    for (summary, result) in finished {
        summaries.push(summary);
        outcome = match (outcome, result) {
            // Ctrl-C says more than any other error, and is said once.
            (Err(e), _) if interrupt::is_interrupted(&e) => Err(e),
            (_, Err(e)) if interrupt::is_interrupted(&e) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), r) => r,
        };
    }
    Routed {
        summaries,
        withheld,
        outcome,
    }
}

/// One destination's thread: delivers what its queue brings until the
/// queue closes, Ctrl-C, or `each` fails.
fn deliver_queue(
    fanout: &Fanout<'_>,
    route: &Route,
    queue: mpsc::Receiver<Wanted>,
    each: &(dyn Fn(&Route, &StudyResult) -> Result<()> + Sync),
) -> (Summary, Result<()>) {
    let cloud = fanout.cloud.clone().map(ClientOptions::in_syntax);
    let mut store = Store::new(fanout.cache, &route.store, cloud, fanout.reporter);
    let outcome = queue
        .iter()
        .try_for_each(|(uid, asked)| each(route, &store.deliver(&uid, asked)?));
    let mut summary = store.into_summary();
    summary.destination = route.to_string();
    (summary, outcome)
}

/// Says which chosen destinations a named study is kept from, and why;
/// returns 1 when it is kept from any. A study routed nowhere at all is
/// said too, without failing the run: it is the site's rules at work.
fn withhold(fanout: &Fanout<'_>, uid: &Uid, asked: Asked, decisions: &[(&Route, Decision)]) -> usize {
    if asked != Asked::Named {
        return 0;
    }
    let kept: Vec<String> = decisions
        .iter()
        .filter(|(_, d)| !d.routed)
        .map(|(route, d)| format!("{route}: {}", d.why))
        .collect();
    if kept.is_empty() {
        return 0;
    }
    if fanout.chosen {
        fanout.reporter.warn(&format!(
            "study {uid} was not sent to the destination chosen, its rules do not take it ({}); \
             send it elsewhere or change the destination's `when`",
            kept.join("; ")
        ));
        1
    } else {
        if kept.len() == decisions.len() {
            fanout
                .reporter
                .warn(&format!("study {uid} goes to no destination ({})", kept.join("; ")));
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    /// Keeps the warnings a run gives.
    #[derive(Default)]
    struct Warnings(std::sync::Mutex<Vec<String>>);

    impl Reporter for Warnings {
        fn warn(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    #[test]
    fn a_named_study_kept_from_a_chosen_destination_fails_the_run_and_says_why() {
        use crate::delivery::StoreOptions;
        use crate::dimse::{Destination, ScuOptions};
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut ws = Route::single(StoreOptions::new(ScuOptions::new(
            Destination::parse("WS@127.0.0.1:105").unwrap(),
        )));
        ws.name = "ws".into();
        let routes = Routes::new(vec![ws.clone()]);
        let warnings = Warnings::default();
        let fanout = |chosen| Fanout {
            cache: &cache,
            routes: &routes,
            chosen,
            cloud: None,
            reporter: &warnings,
        };
        let not = Decision {
            routed: false,
            why: "not: role prior is not current".into(),
        };
        let study = uid("1.2.3");
        let decisions = [(&ws, not.clone())];
        assert_eq!(withhold(&fanout(true), &study, Asked::Named, &decisions), 1);
        let said = warnings.0.lock().unwrap().pop().unwrap();
        assert!(
            said.contains("study 1.2.3 was not sent") && said.contains("ws (WS@127.0.0.1:105): not: role prior"),
            "{said}"
        );
        // Found in the cache, not named: the rules merely pass it over.
        assert_eq!(withhold(&fanout(true), &study, Asked::Found, &decisions), 0);
        // No destination chosen: the study goes nowhere, which is said, and is no failure.
        assert_eq!(withhold(&fanout(false), &study, Asked::Named, &decisions), 0);
        assert!(
            warnings
                .0
                .lock()
                .unwrap()
                .pop()
                .unwrap()
                .contains("goes to no destination")
        );
        let routed = Decision {
            routed: true,
            why: "every study".into(),
        };
        assert_eq!(withhold(&fanout(true), &study, Asked::Named, &[(&ws, routed)]), 0);
        assert!(warnings.0.lock().unwrap().is_empty());
    }

    #[test]
    fn study_lines_text_json_and_noise() {
        assert_eq!(parse_study_line("1.2.3\tACC1\tcurrent").unwrap(), Some(uid("1.2.3")));
        assert_eq!(parse_study_line("  1.2.4  ").unwrap(), Some(uid("1.2.4")));
        assert_eq!(
            parse_study_line(r#"{"study_uid":"1.2.5","accession":"A"}"#).unwrap(),
            Some(uid("1.2.5"))
        );
        assert_eq!(parse_study_line("").unwrap(), None);
        assert_eq!(parse_study_line("# comment").unwrap(), None);
        assert!(parse_study_line("ACC123").is_err());
        assert!(parse_study_line("../../etc").is_err());
        assert!(parse_study_line(r#"{"accession":"A"}"#).is_err());
        assert!(parse_study_line("{not json").is_err());
    }
}
