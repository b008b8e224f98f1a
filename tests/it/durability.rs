//! Group commit in the cache, as far as a test can cut the power: a fetch is killed with
//! SIGKILL at many points, and after each kill every instance the manifest marks durable
//! must be whole. The files it does not mark are what a power cut could have left empty or
//! torn, so they are torn on purpose; the resumed fetch must find them, download them
//! again and complete the study byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::proxy::{Fault, Proxy, Rule};
use crate::common::{Orthanc, cached_instances, retriever_at, run_within, temp_cache, testdata};

tests! {
    killed_anywhere_no_marked_instance_is_torn_and_torn_unmarked_ones_are_fetched_again: ["orthanc"],
}

const LIMIT: Duration = Duration::from_secs(120);

/// The instances the study's manifest marks durable: `None` when it marks none (no manifest
/// yet, or a complete study, whose every file is durable).
fn durable_marks(cache: &Path, study: &str) -> Option<BTreeSet<String>> {
    let path = cache.join("studies").join(study).join("manifest.json");
    let text = std::fs::read(&path).ok()?;
    let manifest: serde_json::Value = serde_json::from_slice(&text).expect("the manifest is whole JSON");
    let marks = manifest.get("durable")?.as_array()?;
    Some(marks.iter().map(|m| m.as_str().unwrap().to_string()).collect())
}

fn instance_paths(cache: &Path, study: &str) -> BTreeMap<String, std::path::PathBuf> {
    let dir = cache.join("studies").join(study).join("series");
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".dcm")
                .map(|sop| (sop.to_string(), e.path().to_path_buf()))
        })
        .collect()
}

fn killed_anywhere_no_marked_instance_is_torn_and_torn_unmarked_ones_are_fetched_again() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let big = testdata().large();
    let want: BTreeMap<String, Vec<u8>> = big.instances().map(|i| (i.sop_uid.clone(), i.bytes())).collect();
    let mut torn_points = 0;
    let mut marked_points = 0;
    // Each point: one series' download is held after part of it, the others pass (the
    // series downloaded before it are whole and marked durable by then, with --jobs 1), and
    // the fetch is killed once the instances before that part of the series are in place.
    let points = big
        .series
        .iter()
        .flat_map(|series| [(series, 1, 4), (series, 3, 4)])
        .enumerate();
    for (k, (series, num, den)) in points {
        let size: u64 = series.instances.iter().map(|i| i.size).sum();
        let after = (size * num / den) as usize;
        let before_stall = (series.instances.len() as u64 * num / den).saturating_sub(1) as usize;
        let series_dir = |cache: &Path| {
            cache
                .join("studies")
                .join(&big.study_uid)
                .join("series")
                .join(&series.series_uid)
        };
        let in_series = |cache: &Path| std::fs::read_dir(series_dir(cache)).map_or(0, |d| d.count());
        let cache = temp_cache();
        let held =
            proxy.add(Rule::new(Fault::stall(after, LIMIT)).path_contains(&format!("/series/{}", series.series_uid)));
        let mut child = retriever_at(&proxy.dicomweb_url(), cache.path())
            .args(["fetch", &big.accession, "--priors", "0", "--jobs", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + LIMIT;
        while proxy.hits(held) == 0 || in_series(cache.path()) < before_stall {
            assert!(
                child.try_wait().unwrap().is_none(),
                "point {k}: the fetch ended before it was killed"
            );
            assert!(
                Instant::now() < deadline,
                "point {k}: the fetch never reached the point"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        proxy.clear();

        let present = instance_paths(cache.path(), &big.study_uid);
        let marks = durable_marks(cache.path(), &big.study_uid);
        assert!(
            present.len() < want.len(),
            "point {k}: the study was complete when the fetch was killed"
        );
        for (sop, path) in &present {
            // A kill cannot tear a file: each is renamed into place whole.
            assert_eq!(
                &std::fs::read(path).unwrap(),
                &want[sop],
                "point {k}: {sop} in place but not whole"
            );
        }
        let Some(marks) = marks else {
            assert!(present.is_empty(), "point {k}: instance files but no durable marks");
            continue;
        };
        for sop in &marks {
            assert!(
                present.contains_key(sop),
                "point {k}: {sop} is marked durable but not in place"
            );
        }
        marked_points += usize::from(!marks.is_empty());
        // What a power cut may leave of the files not yet synced: cut each in half.
        for (sop, path) in present.iter().filter(|(sop, _)| !marks.contains(*sop)) {
            let half = want[sop].len() as u64 / 2;
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(half)
                .unwrap();
            torn_points += 1;
        }

        let (code, out, err) = run_within(
            retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", &big.accession, "--priors", "0"]),
            LIMIT,
        );
        assert_eq!(code, 0, "point {k}: {err}");
        assert_eq!(out.lines().count(), 1, "point {k}");
        assert_eq!(
            cached_instances(cache.path(), &big.study_uid),
            want,
            "point {k}: the resumed fetch left instances that are not the cloud's"
        );
        assert_eq!(
            durable_marks(cache.path(), &big.study_uid),
            None,
            "point {k}: a complete study keeps no marks"
        );
    }
    // The points must have cut batches: some instances in place but not yet marked, and
    // some marked already.
    assert!(torn_points > 0, "no kill landed between a rename and its batch's sync");
    assert!(marked_points > 0, "no kill landed after a batch was marked durable");
}
