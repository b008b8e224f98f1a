//! `retriever ls`: what is in the cache, and its state. The table fits a
//! 100-column console (long UIDs shortened in the middle, other long cells
//! at the end), `--wide` shows every cell in full, `--json` everything.

use std::io::Write;
use std::time::SystemTime;

use anyhow::Result;
use serde_json::json;

use crate::cache::{Cache, DeliveryCounts, Role};
use crate::cli::LsArgs;
use crate::config::Settings;
use crate::dimse::Destination;

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
        if json {
            let value = json!({
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
                delivered_column(&deliveries),
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

    #[test]
    fn cutting_keeps_the_ends() {
        assert_eq!(middle("1.2.826.0.1.3680043.4.99", 14), "1.2.82…43.4.99");
        assert_eq!(middle("abcdefghij", 5), "ab…ij");
        assert_eq!(middle("abc", 5), "abc");
        assert_eq!(end("abcdefghij", 5), "abcd…");
    }
}
