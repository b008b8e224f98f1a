//! The watch's search of the cloud: the studies of its worklist, handed on
//! in batches of at most [`BATCH`] as the pages are read, each with what the
//! record needs of it (its identity and instance count), never all at once.
//! A watch searches its whole window (days of studies) at every interval,
//! and the record already knows nearly all of them: so what a search holds
//! at once is a batch, not every study of the window with all its
//! attributes.

use anyhow::Result;

use super::record::Found;
use crate::dicomweb::Client;
use crate::fetch::{self, FoundStudy};
use crate::uid::Uid;

/// The most studies handed on at once: a QIDO-RS page's worth.
pub const BATCH: usize = 200;

/// How one search ended.
#[derive(Debug, Default)]
pub struct Polled {
    /// Studies found (each handed on once).
    pub found: usize,
    /// What the search left out, one line each.
    pub warnings: Vec<String>,
}

/// One search with the matching keys `params`: each study found goes to
/// `on_batch`, in batches of at most [`BATCH`], the next read only once
/// `on_batch` returned; an error from it ends the search.
pub fn search(
    client: &Client,
    params: &[(String, String)],
    on_batch: &mut dyn FnMut(Vec<(Uid, Found)>) -> Result<()>,
) -> Result<Polled> {
    let query: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    in_batches(|each| fetch::search_studies_each(client, &query, &[], each), on_batch)
}

/// Runs `search`, which hands each study it finds to its argument and
/// returns its warnings, and hands what the record needs of each study on
/// in batches.
fn in_batches(
    search: impl FnOnce(&mut dyn FnMut(FoundStudy) -> Result<()>) -> Result<Vec<String>>,
    on_batch: &mut dyn FnMut(Vec<(Uid, Found)>) -> Result<()>,
) -> Result<Polled> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut found = 0;
    let warnings = search(&mut |s| {
        found += 1;
        batch.push((
            s.uid,
            Found {
                accession: s.info.accession,
                patient_id: s.info.patient_id,
                issuer_of_patient_id: s.info.issuer_of_patient_id,
                instances: s.instances,
            },
        ));
        if batch.len() == BATCH {
            on_batch(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))?;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        on_batch(batch)?;
    }
    Ok(Polled { found, warnings })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::cache::{Cache, StudyInfo};
    use crate::dicomweb::testserver::{Step, TestServer, response};
    use crate::dicomweb::{Auth, ClientOptions};
    use crate::watch::record::Records;

    const MIN: Duration = Duration::from_secs(60);

    fn uid(i: usize) -> Uid {
        Uid::parse(&format!("1.2.826.0.1.3680043.10.543.{}", 100_000 + i)).unwrap()
    }

    /// The `i`-th study as the study search makes it of a result.
    fn study(i: usize) -> FoundStudy {
        let some = |s: &str| Some(s.to_string());
        FoundStudy {
            uid: uid(i),
            info: StudyInfo {
                study_uid: uid(i),
                accession: Some(format!("ACC{i:06}")),
                patient_id: Some(format!("PAT{i:06}")),
                issuer_of_patient_id: some("HOSP_A"),
                patient_name: some("DOE^JANE"),
                study_date: some("20261203"),
                study_description: some("CT HEAD"),
                modalities: vec!["CT".into()],
                attributes: [("00081030".to_string(), vec!["CT HEAD".to_string()])].into(),
            },
            instances: Some(42),
        }
    }

    fn records() -> (tempfile::TempDir, Records) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let records = Records::load(&cache, &[("PACS@h_104".into(), "PACS@h:104".into())]).unwrap();
        (dir, records)
    }

    /// Records `n` studies as delivered at 42 instances an hour ago: settled.
    fn known(records: &mut Records, n: usize) {
        let then = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..n {
            let s = study(i);
            let found = Found {
                accession: s.info.accession,
                patient_id: s.info.patient_id,
                issuer_of_patient_id: s.info.issuer_of_patient_id,
                instances: s.instances,
            };
            records.found(&s.uid, &found, then, MIN);
            records.at(0).taken_up(&s.uid, Some(42), then);
            records.at(0).delivered(&s.uid, Some(42), then);
        }
    }

    /// What a search of a window of `n` studies the record knows holds at
    /// once, each study handed to the record as the search found it.
    fn held_by_a_search_of(n: usize) -> usize {
        let (_dir, mut records) = records();
        known(&mut records, n);
        let now = SystemTime::now();
        let mut to_do = 0;
        let (polled, held) = crate::testalloc::measure(|| {
            in_batches(
                |each| {
                    for i in 0..n {
                        each(study(i))?;
                    }
                    Ok(Vec::new())
                },
                &mut |batch| {
                    for (uid, found) in batch {
                        to_do += usize::from(records.found(&uid, &found, now, MIN));
                    }
                    Ok(())
                },
            )
        });
        assert_eq!(polled.unwrap().found, n);
        assert_eq!(to_do, 0, "all settled");
        held.peak
    }

    /// A search of a window the record knows (delivered and settled) holds
    /// a batch at a time, whatever the size of the window: collecting every
    /// study found before handling them held 700 kB more for 4000 studies
    /// than for 400.
    #[test]
    fn a_search_of_known_studies_holds_a_batch_not_the_window() {
        let small = held_by_a_search_of(2 * BATCH);
        let large = held_by_a_search_of(20 * BATCH);
        assert!(
            large <= small + 1024,
            "a search of {} known studies held {large} bytes at once, of {} studies {small}",
            20 * BATCH,
            2 * BATCH
        );
    }

    /// Against a cloud that answers in pages: every study is handed on once,
    /// in batches no larger than [`BATCH`].
    #[test]
    fn a_search_hands_each_study_on_once_in_batches() {
        const N: usize = 450;
        let server = TestServer::start(move |_, req| {
            let offset: usize = req.param("offset").unwrap().parse().unwrap();
            let limit: usize = req.param("limit").unwrap().parse().unwrap();
            let results: Vec<String> = (offset.min(N)..(offset + limit).min(N))
                .map(|i| {
                    format!(
                        r#"{{"00080050":{{"vr":"SH","Value":["ACC{i}"]}},"00100020":{{"vr":"LO","Value":["PAT{i}"]}},
                        "0020000D":{{"vr":"UI","Value":["{}"]}},"00201208":{{"vr":"IS","Value":[42]}}}}"#,
                        uid(i)
                    )
                })
                .collect();
            let body = format!("[{}]", results.join(","));
            let headers = [("Content-Type", "application/dicom+json")];
            vec![Step::Send(response("200 OK", &headers, body.as_bytes()))]
        });
        let auth = Auth::Basic {
            user: "u".into(),
            password: "p".into(),
        };
        let client = Client::new(&ClientOptions::new(server.url("/dicom-web"), auth)).unwrap();
        let (_dir, mut records) = records();
        let now = SystemTime::now();
        let mut batches = Vec::new();
        let polled = search(&client, &[("StudyDate".into(), "20261203".into())], &mut |batch| {
            batches.push(batch.len());
            for (uid, found) in batch {
                assert_eq!(found.instances, Some(42));
                assert!(records.found(&uid, &found, now, MIN), "new");
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(polled.found, N);
        assert_eq!(batches, [BATCH, BATCH, N - 2 * BATCH]);
        let seen = records.seen(&uid(N - 1)).unwrap();
        assert_eq!(seen.accession.as_deref(), Some(&*format!("ACC{}", N - 1)));
        // An error from the batch's receiver ends the search.
        let e = search(&client, &[], &mut |_| anyhow::bail!("stopped")).unwrap_err();
        assert_eq!(format!("{e}"), "stopped");
    }
}
