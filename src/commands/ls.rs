//! `retriever ls`: what is in the cache, and its state.

use std::io::Write;
use std::time::SystemTime;

use anyhow::Result;
use serde_json::json;

use crate::cache::{Cache, DeliveryCounts, Role};
use crate::config::Settings;
use crate::dimse::Destination;

pub fn run(settings: &Settings, json: bool) -> Result<()> {
    let cache = Cache::open(&settings.cache_root)?;
    let mut out = std::io::stdout().lock();
    let studies = cache.studies()?;
    if !json && studies.is_empty() {
        eprintln!("the cache `{}` holds no studies", cache.root().display());
        return Ok(());
    }
    if !json {
        writeln!(
            out,
            "{:<44} {:<12} {:<12} {:<8} {:<5} {:<8} {:<16} {:>10} {:>9}  DELIVERED",
            "STUDY", "ACCESSION", "PATIENT", "DATE", "MOD", "ROLE", "STATE", "SIZE", "AGE"
        )?;
    }
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
            writeln!(
                out,
                "{:<44} {:<12} {:<12} {:<8} {:<5} {:<8} {:<16} {:>10} {:>9}  {}",
                uid.as_str(),
                super::field(info.accession.as_deref()),
                super::field(info.patient_id.as_deref()),
                super::field(info.study_date.as_deref()),
                crate::text::escape(&info.modalities.join("/")),
                role,
                state,
                crate::format::bytes(bytes),
                age.map(crate::format::two_units).unwrap_or_else(|| "-".into()),
                delivered_column(&deliveries),
            )?;
        }
    }
    Ok(())
}

/// E.g. `PACS@10.0.0.5:104 12/12`, `PACS@10.0.0.5:104 10/12 (2 failed)`, or `not delivered`.
fn delivered_column(deliveries: &[(String, DeliveryCounts)]) -> String {
    if deliveries.is_empty() {
        return "not delivered".into();
    }
    deliveries
        .iter()
        .map(|(destination, d)| {
            let mut s = format!("{destination} {}/{}", d.delivered, d.total);
            match (d.warnings, d.failed) {
                (0, 0) => {}
                (w, 0) => s.push_str(&format!(" ({w} with a warning)")),
                (0, f) => s.push_str(&format!(" ({f} failed)")),
                (w, f) => s.push_str(&format!(" ({w} with a warning, {f} failed)")),
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
