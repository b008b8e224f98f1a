//! `retriever ls`: what is in the cache, and its state.

use std::io::Write;
use std::time::SystemTime;

use anyhow::Result;
use serde_json::json;

use crate::cache::{Cache, Role};
use crate::config::Settings;

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
            "{:<44} {:<12} {:<12} {:<8} {:<5} {:<8} {:<16} {:>10} {:>9}",
            "STUDY", "ACCESSION", "PATIENT", "DATE", "MOD", "ROLE", "STATE", "SIZE", "AGE"
        )?;
    }
    for uid in studies {
        let Some(manifest) = cache.read_manifest(&uid)? else { continue };
        let present = cache.present(&uid)?;
        let have = manifest.expected.keys().filter(|sop| present.contains_key(*sop)).count();
        let total = manifest.expected.len();
        let bytes: u64 = present.values().map(|i| i.bytes).sum();
        let busy = cache.is_busy(&uid)?;
        let state = match (manifest.is_complete() && have == total, busy) {
            (true, _) => "complete".to_string(),
            (false, true) => format!("fetching {have}/{total}"),
            (false, false) => format!("partial {have}/{total}"),
        };
        let age = age_of(&manifest.fetched_at);
        let role = if manifest.roles.iter().any(|r| matches!(r, Role::Current { .. })) { "current" } else { "prior" };
        let info = &manifest.study;
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
            });
            writeln!(out, "{value}")?;
        } else {
            writeln!(
                out,
                "{:<44} {:<12} {:<12} {:<8} {:<5} {:<8} {:<16} {:>10} {:>9}",
                uid.as_str(),
                info.accession.as_deref().unwrap_or("-"),
                info.patient_id.as_deref().unwrap_or("-"),
                info.study_date.as_deref().unwrap_or("-"),
                info.modalities.join("/"),
                role,
                state,
                super::human_bytes(bytes),
                age.map(|a| humantime::format_duration(a).to_string().split(' ').take(2).collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|| "-".into()),
            )?;
        }
    }
    Ok(())
}

fn age_of(rfc3339: &str) -> Option<std::time::Duration> {
    let then = humantime::parse_rfc3339(rfc3339).ok()?;
    let age = SystemTime::now().duration_since(then).ok()?;
    Some(std::time::Duration::from_secs(age.as_secs()))
}
