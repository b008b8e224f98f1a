//! `retriever ls`: what is in the cache, and its state. The table fits a
//! 100-column console (long UIDs shortened in the middle, other long cells
//! at the end), `--wide` shows every cell in full, `--json` everything.
//! With named destinations, each study's delivery is shown per destination
//! its rules route it to, and a journal of one they no longer route it to
//! is shown as such.

use std::io::Write;
use std::time::SystemTime;

use anyhow::Result;
use serde_json::json;

use crate::cache::{Cache, DeliveryCounts, Role, StudyStatus};
use crate::cli::LsArgs;
use crate::config::Settings;
use crate::dimse::Destination;
use crate::prune::{JudgedAgainst, judged_against};
use crate::routing::Routes;

/// The width the table fits without `--wide`.
pub const WIDTH: usize = 100;

const HEADERS: [&str; 10] = [
    "STUDY",
    "ACCESSION",
    "PATIENT",
    "DATE",
    "MOD",
    "ROLE",
    "STATE",
    "SIZE",
    "AGE",
    "DELIVERED",
];
/// Right-aligned columns (numbers).
const RIGHT: [usize; 2] = [7, 8];
/// How narrow each column may become when the table is cut to [`WIDTH`];
/// a cell is never cut below its header. The study's UID goes first, down
/// to its end and its root: `ls --json` and `--wide` have it in full.
const MIN: [usize; 10] = [11, 9, 7, 8, 3, 7, 8, 4, 3, 12];

pub fn run(settings: &Settings, args: &LsArgs) -> Result<()> {
    let json = args.json;
    let cache = Cache::open(&settings.cache_root)?;
    // `ls` needs no destination: one that cannot be used (a TLS file
    // missing) does not hide the cache, only the routing.
    let routes = settings.routes_if_given().unwrap_or_else(|e| {
        eprintln!(
            "warning: the destinations cannot be used ({e:#}); `ls` shows the delivery journals only, \
             fix the destination settings (`retriever config` shows them) to see the routing"
        );
        None
    });
    let per_route = judged_against(routes.as_ref()) == JudgedAgainst::Routed;
    let mut out = std::io::stdout().lock();
    let studies = cache.studies()?;
    if !json && studies.is_empty() {
        eprintln!("the cache `{}` holds no studies", cache.root().display());
        return Ok(());
    }
    let mut rows: Vec<[String; 10]> = Vec::new();
    for uid in studies {
        let Some(status) = cache.study_status(&uid)? else {
            continue;
        };
        let (have, total, bytes) = (status.have(), status.total(), status.bytes());
        let busy = cache.is_busy(&uid)?;
        let state = match (status.is_complete(), busy) {
            (true, _) => "complete".to_string(),
            (false, true) => format!("fetching {have}/{total}"),
            (false, false) => format!("partial {have}/{total}"),
        };
        let manifest = &status.manifest;
        let age = age_of(&manifest.fetched_at);
        let role = if manifest.roles.iter().any(|r| matches!(r, Role::Current { .. })) {
            "current"
        } else {
            "prior"
        };
        let info = &manifest.study;
        let deliveries: Vec<_> = status
            .destinations()
            .map(|(key, counts)| (Destination::label_of_key(key), counts))
            .collect();
        let routed = routes.as_ref().map(|routes| routing(&status, routes));
        if json {
            let mut value = json!({
                "study_uid": uid.as_str(),
                "accession": info.accession,
                "patient_id": info.patient_id,
                "issuer_of_patient_id": info.issuer_of_patient_id,
                "study_date": info.study_date,
                "modalities": info.modalities,
                "roles": manifest.roles,
                "state": if state == "complete" { "complete" } else if busy { "fetching" } else { "partial" },
                "instances": have,
                "expected_instances": total,
                "bytes": bytes,
                "fetched_at": manifest.fetched_at,
                "completed_at": manifest.completed_at,
                "path": cache.study_path(&uid),
                "deliveries": deliveries.iter().map(|(destination, d)| json!({
                    "destination": destination,
                    "delivered": d.delivered,
                    "warnings": d.warnings,
                    "failed": d.failed,
                    "total": d.total,
                })).collect::<Vec<_>>(),
            });
            if let Some(routed) = &routed {
                value["destinations"] = routed
                    .iter()
                    .map(|d| {
                        json!({
                            "destination": d.name,
                            "to": d.to,
                            "routed": d.routed,
                            "why": d.why,
                            "delivered": d.counts.delivered,
                            "warnings": d.counts.warnings,
                            "failed": d.counts.failed,
                            "pending": d.counts.pending,
                            "total": d.counts.total,
                        })
                    })
                    .collect();
            }
            writeln!(out, "{value}")?;
        } else {
            rows.push([
                uid.to_string(),
                super::field(info.accession.as_deref()),
                super::field(info.patient_id.as_deref()),
                super::field(info.study_date.as_deref()),
                crate::text::escape(&info.modalities.join("/")),
                role.to_string(),
                state,
                crate::format::bytes(bytes),
                age.map(crate::format::two_units).unwrap_or_else(|| "-".into()),
                match (&routed, per_route) {
                    (Some(routed), true) => routed_column(routed),
                    _ => delivered_column(&deliveries),
                },
            ]);
        }
    }
    if !json {
        for line in table(&rows, (!args.wide).then_some(WIDTH)) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// The table's lines, header first: each column as wide as its widest
/// cell, and with `fit`, the widest columns narrowed until a line fits.
fn table(rows: &[[String; 10]], fit: Option<usize>) -> Vec<String> {
    let len = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = (0..10)
        .map(|c| {
            rows.iter()
                .map(|r| len(&r[c]))
                .chain([len(HEADERS[c])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    if let Some(fit) = fit {
        let floor = |c: usize| MIN[c].max(len(HEADERS[c]));
        // One space between columns.
        while widths.iter().sum::<usize>() + widths.len() - 1 > fit {
            let widest = if widths[0] > floor(0) {
                Some(0)
            } else {
                (1..10)
                    .filter(|&c| widths[c] > floor(c))
                    .max_by_key(|&c| (widths[c] - floor(c), c))
            };
            let Some(c) = widest else { break };
            widths[c] -= 1;
        }
    }
    let line = |cells: [&str; 10]| {
        let shown: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let cell = if c == 0 {
                    middle(cell, widths[c])
                } else {
                    end(cell, widths[c])
                };
                match (RIGHT.contains(&c), c == 9) {
                    (true, _) => format!("{cell:>w$}", w = widths[c]),
                    (false, true) => cell,
                    (false, false) => format!("{cell:<w$}", w = widths[c]),
                }
            })
            .collect();
        shown.join(" ")
    };
    std::iter::once(line(HEADERS))
        .chain(rows.iter().map(|r| line(std::array::from_fn(|c| r[c].as_str()))))
        .collect()
}

/// `text` in at most `width` characters, cut in the middle: the root and
/// the end of a UID tell studies apart, `1.2.826.0…4.99`.
fn middle(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width || width < 3 {
        return text.to_string();
    }
    // The end tells studies of one root apart: it gets the odd character.
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// `text` in at most `width` characters, cut at the end with `…`.
fn end(text: &str, width: usize) -> String {
    if text.chars().count() <= width || width < 2 {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// E.g. `12/12 PACS@10.0.0.5:104`, `10/12 (2 failed) PACS@10.0.0.5:104`, or
/// `not delivered`. The counts come first: when the table is cut to fit,
/// the end of the destination goes, never how much of the study arrived.
fn delivered_column(deliveries: &[(String, DeliveryCounts)]) -> String {
    if deliveries.is_empty() {
        return "not delivered".into();
    }
    deliveries
        .iter()
        .map(|(destination, d)| {
            let mut s = format!("{}/{}", d.delivered, d.total);
            match (d.warnings, d.failed) {
                (0, 0) => {}
                (w, 0) => s.push_str(&format!(" ({w} with a warning)")),
                (0, f) => s.push_str(&format!(" ({f} failed)")),
                (w, f) => s.push_str(&format!(" ({w} with a warning, {f} failed)")),
            }
            s.push(' ');
            s.push_str(destination);
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a study stands with one destination, routed there or not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteState {
    /// The destination's name; for a journal of no configured destination
    /// its `AE@HOST:PORT`.
    name: String,
    /// `AE@HOST:PORT`.
    to: String,
    /// The rules send the study there.
    routed: bool,
    /// Why, or why not, in a short clause.
    why: String,
    counts: DeliveryCounts,
}

/// Each destination the study is routed to, then each it has a journal of
/// without being routed there (the rules changed, or the destination is
/// no longer configured).
fn routing(status: &StudyStatus, routes: &Routes) -> Vec<RouteState> {
    let manifest = &status.manifest;
    let mut states: Vec<RouteState> = routes
        .for_study(&manifest.study, &manifest.roles)
        .into_iter()
        .filter(|(route, decision)| decision.routed || status.journals.contains_key(&route.key()))
        .map(|(route, decision)| RouteState {
            name: route.name.clone(),
            to: route.store.scu.destination.to_string(),
            routed: decision.routed,
            why: decision.why,
            counts: status.counts(&route.key()),
        })
        .collect();
    states.sort_by_key(|s| !s.routed);
    for (key, counts) in status.destinations() {
        if routes.iter().all(|r| r.key() != key) {
            let label = Destination::label_of_key(key);
            states.push(RouteState {
                name: label.clone(),
                to: label,
                routed: false,
                why: "not a configured destination".to_string(),
                counts,
            });
        }
    }
    states
}

/// E.g. `pacs 12/12, ws 3/12 (2 failed, 7 pending), mammo 5/12 not routed`,
/// or `routed nowhere`.
fn routed_column(states: &[RouteState]) -> String {
    if states.is_empty() {
        return "routed nowhere".into();
    }
    states
        .iter()
        .map(|state| {
            let d = &state.counts;
            let mut s = format!("{} {}/{}", state.name, d.delivered, d.total);
            let notes: Vec<String> = [
                (d.warnings, "with a warning"),
                (d.failed, "failed"),
                (if state.routed { d.pending } else { 0 }, "pending"),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            if !notes.is_empty() {
                s.push_str(&format!(" ({})", notes.join(", ")));
            }
            if !state.routed {
                s.push_str(" not routed");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn age_of(rfc3339: &str) -> Option<std::time::Duration> {
    let then = humantime::parse_rfc3339(rfc3339).ok()?;
    let age = SystemTime::now().duration_since(then).ok()?;
    Some(std::time::Duration::from_secs(age.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(uid: &str, delivered: &str) -> [String; 10] {
        [
            uid, "ACC1001", "PAT001", "20261203", "CT", "current", "complete", "1.2 MiB", "3m 2s", delivered,
        ]
        .map(String::from)
    }

    #[test]
    fn the_table_fits_and_long_uids_are_cut_in_the_middle() {
        let uid = "1.2.826.0.1.3680043.10.543.1.4.99999999999999999999.12345";
        let long = "12/12 PACS@10.0.0.5:104, 10/12 (2 failed) ARCHIVE@archive.hospital.example.org:11112";
        let rows = [row(uid, long), row("1.2.3", "not delivered")];
        let lines = table(&rows, Some(WIDTH));
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{lines:#?}");
        assert_eq!(lines[1].split(' ').next().unwrap(), "1.2.8…12345", "{lines:#?}");
        assert!(lines[2].starts_with("1.2.3 "), "{lines:#?}");
        let wide = table(&rows, None);
        assert!(wide[1].starts_with(uid) && wide[1].ends_with(long), "{wide:#?}");
    }

    /// How much of a study arrived is what the column is for: cutting the
    /// table to fit takes the end of the destination, never the count.
    #[test]
    fn a_cut_delivery_column_keeps_its_count() {
        let counts = DeliveryCounts {
            total: 120,
            delivered: 120,
            ..DeliveryCounts::default()
        };
        let cell = delivered_column(&[("DEMOPACS@127.0.0.1:51261".to_string(), counts)]);
        let uid = "1.2.826.0.1.3680043.10.543.1.4.99999999999999999999.12345";
        let lines = table(&[row(uid, &cell)], Some(WIDTH));
        assert!(lines[1].chars().count() <= WIDTH, "{lines:#?}");
        assert!(lines[1].contains(" 120/120 DEMOPACS"), "{lines:#?}");
    }

    /// A state of `name` (`AE@h:104`) holding `delivered` of 12 instances, `failed` failed.
    fn state(name: &str, routed: bool, delivered: usize, failed: usize) -> RouteState {
        RouteState {
            name: name.into(),
            to: format!("{}@h:104", name.to_uppercase()),
            routed,
            why: String::new(),
            counts: DeliveryCounts {
                delivered,
                failed,
                pending: 12 - delivered - failed,
                total: 12,
                ..DeliveryCounts::default()
            },
        }
    }

    #[test]
    fn each_destination_gets_its_state_and_one_not_routed_there_says_so() {
        let cell = routed_column(&[
            state("pacs", true, 12, 0),
            state("ws", true, 3, 2),
            state("mammo", false, 5, 0),
        ]);
        assert_eq!(cell, "pacs 12/12, ws 3/12 (2 failed, 7 pending), mammo 5/12 not routed");
        assert_eq!(routed_column(&[]), "routed nowhere");
    }

    #[test]
    fn routing_lists_the_routed_destinations_then_journals_of_others() {
        use crate::cache::{Delivery, DeliveryState, LockMode, Manifest, StudyInfo};
        use crate::delivery::StoreOptions;
        use crate::dimse::ScuOptions;
        use crate::routing::Route;
        use crate::uid::Uid;
        let uid = |s: &str| Uid::parse(s).unwrap();
        let named = |name: &str, to: &str| {
            let mut route = Route::single(StoreOptions::new(ScuOptions::new(Destination::parse(to).unwrap())));
            route.name = name.into();
            route
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let entry = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        entry
            .write_manifest(&Manifest {
                version: Manifest::VERSION,
                study: StudyInfo::new(uid("1.2.3")),
                roles: vec![],
                fetched_at: "2026-11-27T00:00:00Z".into(),
                completed_at: Some("2026-11-27T00:00:01Z".into()),
                expected: [(uid("1.2.3.1"), uid("1.2.3.9"))].into_iter().collect(),
            })
            .unwrap();
        // A journal of a destination no longer configured.
        let old = Destination::parse("OLD@h:11112").unwrap();
        entry
            .journal(&old.key())
            .unwrap()
            .record(&Delivery {
                sop: uid("1.2.3.1"),
                state: DeliveryState::Delivered,
                status: Some(0),
                detail: None,
                at: "2026-11-27T00:00:02Z".into(),
                coerced: None,
            })
            .unwrap();
        let status = entry.status().unwrap().unwrap();
        let routes = Routes::new(vec![named("pacs", "PACS@h:104"), named("ws", "WS@h:105")]);
        let states = routing(&status, &routes);
        let shown: Vec<(&str, &str, bool, usize, usize)> = states
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.to.as_str(),
                    s.routed,
                    s.counts.delivered,
                    s.counts.pending,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("pacs", "PACS@h:104", true, 0, 1),
                ("ws", "WS@h:105", true, 0, 1),
                ("OLD@h:11112", "OLD@h:11112", false, 1, 0),
            ]
        );
        assert_eq!(
            routed_column(&states),
            "pacs 0/1 (1 pending), ws 0/1 (1 pending), OLD@h:11112 1/1 not routed"
        );
    }

    #[test]
    fn cutting_keeps_the_ends() {
        assert_eq!(middle("1.2.826.0.1.3680043.4.99", 14), "1.2.82…43.4.99");
        assert_eq!(middle("abcdefghij", 5), "ab…ij");
        assert_eq!(middle("abc", 5), "abc");
        assert_eq!(end("abcdefghij", 5), "abcd…");
    }
}
