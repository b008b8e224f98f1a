//! `retriever store`, `fetch --store`, `echo` and the delivery columns of `ls`, against real
//! destinations on loopback: DCMTK `storescp` (with its fault flags) and the pynetdicom SCP of
//! `scripts/test_scp.py` (chosen statuses and transfer syntaxes, AE title checks, stalls). The
//! cache is filled with `retriever fetch` from the shared Orthanc. Assertions are on what
//! arrived, byte for byte where the instance went as it was, on the delivery journal, and on
//! what the user sees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use serde_json::Value;

use retriever::dimse::{DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE, IMPLICIT_VR_LE};

use crate::common::testscp::{TestScp, make_instances};
use crate::common::{
    Orthanc, Storescp, dest_key, fetch_ok, free_port, journal_lines, retriever, retriever_at, run_within, split_part10,
    temp_cache, testdata, uid_of,
};

tests! {
    orthanc_as_the_destination_stores_every_instance: ["orthanc"],
    store_delivers_byte_for_byte_and_a_second_run_sends_nothing: ["orthanc", "storescp"],
    fetch_pipes_into_store_and_fetch_store_delivers: ["orthanc", "storescp"],
    echo_reports_round_trip_or_a_clear_error: ["storescp"],
    refusals_and_wrong_ae_titles_stop_with_a_clear_error: ["orthanc", "storescp", "python"],
    warnings_are_delivered_and_shown: ["orthanc", "python"],
    failures_are_journaled_and_a_rerun_resends_only_them: ["orthanc", "python"],
    implicit_only_destination_gets_converted_instances: ["orthanc", "python"],
    unconvertible_instances_are_fetched_again_from_the_cloud: ["orthanc", "python", "pillow"],
    no_answer_is_never_delivered: ["orthanc", "storescp"],
    incomplete_and_unknown_studies_are_not_sent: ["orthanc", "storescp"],
    killed_mid_study_a_rerun_finishes_the_job: ["orthanc", "python"],
    streamed_and_stored_instances_share_one_journal: ["orthanc", "python"],
}

const LIMIT: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// `retriever store ARGS... --to DEST` with the cloud configured.
fn store(orthanc: &Orthanc, cache: &Path, dest: &str, args: &[&str]) -> (i32, String, String) {
    run(retriever_at(&orthanc.dicomweb_url(), cache)
        .arg("store")
        .args(args)
        .args(["--to", dest]))
}

/// The last journal record of each instance of a study for a destination.
fn journal(cache: &Path, study: &str, dest: &str) -> BTreeMap<String, Value> {
    journal_lines(cache, study, dest)
        .into_iter()
        .map(|v| (v["sop"].as_str().unwrap().to_owned(), v))
        .collect()
}

/// The number on the summary line that starts with `label`, e.g. `failed:`.
fn count(summary: &str, label: &str) -> usize {
    summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` line in the summary:\n{summary}"))
}

fn state(record: &Value) -> &str {
    record["state"].as_str().unwrap_or_default()
}

/// The SOP Instance UIDs the journal holds as delivered (with or without a warning).
fn delivered_in_journal(cache: &Path, study: &str, dest: &str) -> BTreeSet<String> {
    journal(cache, study, dest)
        .into_iter()
        .filter(|(_, r)| matches!(state(r), "delivered" | "warning"))
        .map(|(sop, _)| sop)
        .collect()
}

fn cached_file(cache: &Path, sop: &str) -> PathBuf {
    walkdir::WalkDir::new(cache.join("studies"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("{sop}.dcm"))
        })
        .unwrap_or_else(|| panic!("{sop} is not in the cache"))
}

fn dicom(path: &Path) -> dicom_object::DefaultDicomObject {
    dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pixels(path: &Path) -> Vec<u8> {
    dicom(path)
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned()
}

fn transfer_syntax(path: &Path) -> String {
    dicom(path).meta().transfer_syntax().trim_end_matches('\0').to_owned()
}

/// Orthanc's DICOM port as the PACS: the study and its priors are all stored there, each data
/// set as it was in the cloud, or, where Orthanc does not take its transfer syntax (deflated),
/// converted losslessly to one it takes.
fn orthanc_as_the_destination_stores_every_instance() {
    let cloud = Orthanc::shared();
    let pacs = Orthanc::empty();
    let cache = temp_cache();
    fetch_ok(cloud, cache.path(), &["ACC1001", "--priors", "3"]);
    let (code, out, err) = store(cloud, cache.path(), &pacs.dicom_address(), &[]);
    assert_eq!(code, 0, "store failed:\n{err}");
    assert_eq!(out.lines().count(), 4, "one line per delivered study:\n{out}");
    let stored_dir = tempfile::tempdir().unwrap();
    for accession in ["ACC1001", "ACC1002", "ACC1003", "ACC1004"] {
        let study = testdata().study(accession);
        assert_eq!(pacs.study_sop_uids(&study.study_uid), study.sop_uids(), "{accession}");
        for instance in study.instances() {
            let stored = stored_dir.path().join(format!("{}.dcm", instance.sop_uid));
            std::fs::write(&stored, pacs.instance_file(&instance.sop_uid)).unwrap();
            let (stored_as, own) = (transfer_syntax(&stored), transfer_syntax(&instance.path));
            if stored_as == own && own != DEFLATED_EXPLICIT_VR_LE {
                assert!(
                    split_part10(&std::fs::read(&stored).unwrap()).1 == split_part10(&instance.bytes()).1,
                    "the data set of {} ({accession}) arrived changed",
                    instance.sop_uid
                );
            } else {
                // Orthanc writes a deflated data set deflated anew (DCMTK inflates what it
                // receives), and one converted for it is explicit VR: the pixels are what count.
                assert!(
                    stored_as == own || stored_as == EXPLICIT_VR_LE,
                    "{} ({accession})",
                    instance.sop_uid
                );
                assert!(
                    pixels(&stored) == pixels(&instance.path),
                    "the pixels of {} ({accession}) arrived changed",
                    instance.sop_uid
                );
            }
        }
    }
}

/// Four studies of different transfer syntaxes (explicit, implicit, RLE, deflated) to DCMTK
/// storescp, which takes them all: every instance arrives as it was in the cloud; a second run
/// sends nothing; `ls` shows the deliveries.
fn store_delivers_byte_for_byte_and_a_second_run_sends_nothing() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001", "--priors", "3"]);
    let studies = ["ACC1001", "ACC1002", "ACC1003", "ACC1004"];
    let data = testdata();
    let scp = Storescp::start("STORESCP");
    let dest = scp.address();

    let (code, out, err) = store(orthanc, cache.path(), &dest, &[]);
    assert_eq!(code, 0, "store failed:\n{err}");
    let printed: BTreeSet<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    let want: BTreeSet<&str> = studies.iter().map(|a| uid_of(a)).collect();
    assert_eq!(printed, want, "one line per delivered study:\n{out}");
    let all: BTreeSet<String> = studies.iter().flat_map(|a| data.study(a).sop_uids()).collect();
    assert_eq!(scp.received_sop_uids(), all);
    for accession in studies {
        for instance in data.study(accession).instances() {
            let path = &scp.received()[&instance.sop_uid];
            // storescp accepts every syntax, so every instance goes as it is.
            let (sent_as, own) = (transfer_syntax(path), transfer_syntax(&instance.path));
            assert_eq!(sent_as, own, "{} ({accession}) was converted", instance.sop_uid);
            let (original, received) = (instance.bytes(), std::fs::read(path).unwrap());
            assert!(
                split_part10(&received).1 == split_part10(&original).1,
                "the data set of {} ({accession}) arrived changed",
                instance.sop_uid
            );
        }
        let uid = uid_of(accession);
        assert_eq!(
            delivered_in_journal(cache.path(), uid, &dest),
            data.study(accession).sop_uids()
        );
    }
    assert_eq!(count(&err, "delivered:"), all.len(), "{err}");

    // Again: the journal says everything is there, nothing is sent.
    let before: Vec<PathBuf> = scp.received().into_values().collect();
    let (code, out, err) = store(orthanc, cache.path(), &dest, &[]);
    assert_eq!(code, 0, "second store failed:\n{err}");
    assert_eq!(out, "", "nothing newly delivered");
    assert_eq!(count(&err, "skipped, already delivered:"), all.len(), "{err}");
    assert_eq!(count(&err, "delivered:"), 0, "{err}");
    // Named explicitly, a delivered study is printed (it is delivered) but not sent.
    let (code, out, err) = store(orthanc, cache.path(), &dest, &[uid_of("ACC1002")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("{}\tACC1002\t{dest}\t3 instances\t0 sent", uid_of("ACC1002"))),
        "{out}"
    );
    assert_eq!(
        scp.received().into_values().collect::<Vec<_>>(),
        before,
        "storescp received nothing new"
    );

    // ls shows where each study was delivered.
    let (code, out, err) = run(retriever().arg("--cache").arg(cache.path()).args(["ls", "--json"]));
    assert_eq!(code, 0, "{err}");
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let total = v["expected_instances"].as_u64().unwrap();
        assert_eq!(
            v["deliveries"],
            serde_json::json!([{"destination": dest, "delivered": total, "warnings": 0, "failed": 0, "total": total}]),
            "{line}"
        );
    }
    let (_, table, _) = run(retriever().arg("--cache").arg(cache.path()).arg("ls"));
    assert!(table.contains(&format!("5/5 {dest}")), "{table}");
}

/// `fetch | store -` (text and JSON lines) and `fetch --store`.
fn fetch_pipes_into_store_and_fetch_store_delivers() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let dest = scp.address();
    let data = testdata();

    for (accession, json) in [("ACC2001", false), ("ACC2002", true)] {
        let mut fetcher = retriever_at(&orthanc.dicomweb_url(), cache.path())
            .args(["fetch", accession, "--priors", "0"])
            .args(json.then_some("--json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pipe = fetcher.stdout.take().unwrap();
        let mut storer = retriever_at(&orthanc.dicomweb_url(), cache.path());
        storer.args(["store", "-", "--to", &dest]).stdin(Stdio::from(pipe));
        let (code, out, err) = run(&mut storer);
        assert!(fetcher.wait().unwrap().success());
        assert_eq!(code, 0, "fetch {accession} | store - failed:\n{err}");
        assert!(out.starts_with(uid_of(accession)), "{out}");
        assert!(data.study(accession).sop_uids().is_subset(&scp.received_sop_uids()));
    }

    let (code, out, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path())
        .args(["fetch", "ACC3001", "--priors", "0", "--store", "--to", &dest]));
    assert_eq!(code, 0, "fetch --store failed:\n{err}");
    assert_eq!(out.lines().count(), 1, "fetch prints its own line only:\n{out}");
    assert_eq!(count(&err, "delivered:"), 2, "{err}");
    let want: BTreeSet<String> = ["ACC2001", "ACC2002", "ACC3001"]
        .iter()
        .flat_map(|a| data.study(a).sop_uids())
        .collect();
    assert_eq!(scp.received_sop_uids(), want);
    assert_eq!(
        delivered_in_journal(cache.path(), uid_of("ACC3001"), &dest),
        data.study("ACC3001").sop_uids()
    );
}

fn echo_reports_round_trip_or_a_clear_error() {
    let scp = Storescp::start("STORESCP");
    let (code, out, err) = run(retriever().args(["echo", "--to", &scp.address()]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("{} answered C-ECHO in ", scp.address())),
        "{out}"
    );

    let closed = format!("PACS@127.0.0.1:{}", free_port());
    let (code, _, err) = run(retriever().args(["echo", "--to", &closed]));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "could not connect to {closed} (connection refused); is the destination running"
        )),
        "{err}"
    );

    let (code, _, err) = run(retriever().args(["echo"]));
    assert_eq!(code, 1);
    assert!(err.contains("no destination given: pass --to AE@HOST:PORT"), "{err}");
}

/// A destination that refuses associations, one that is not there, and one that does not
/// know the called AE title: nothing is delivered, and the user is told why.
fn refusals_and_wrong_ae_titles_stop_with_a_clear_error() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let study = uid_of("ACC1002");

    let refusing = Storescp::start_with("STORESCP", &["--refuse", "-dhl"]);
    let (code, out, err) = store(orthanc, cache.path(), &refusing.address(), &[study]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("rejected the association"), "{err}");
    assert_eq!(count(&err, "not sent, run stopped:"), 3, "{err}");
    assert!(delivered_in_journal(cache.path(), study, &refusing.address()).is_empty());

    let closed = format!("PACS@127.0.0.1:{}", free_port());
    let (code, _, err) = store(orthanc, cache.path(), &closed, &[study, "--store-retries", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("connection refused"), "{err}");
    assert!(
        err.lines().last().unwrap().starts_with("retriever: delivery to"),
        "{err}"
    );

    // Busy: tried again after a backoff, then given up for this run.
    let busy = TestScp::start(&["--reject", "transient"]);
    let (code, _, err) = store(
        orthanc,
        cache.path(),
        &busy.address("TESTSCP"),
        &[study, "--store-retries", "1"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("trying again in 500ms: ") && err.contains("temporarily rejected"),
        "{err}"
    );
    assert!(
        err.lines().last().unwrap().contains(
            "is busy: it rejected the association (local limit exceeded) at every attempt; \
             run `retriever store` again later"
        ),
        "{err}"
    );

    let strict = TestScp::start(&["--require-called-aet", "--ae-title", "PACS"]);
    let wrong = strict.address("WRONGAE");
    let (code, _, err) = store(orthanc, cache.path(), &wrong, &[study]);
    assert_eq!(code, 1);
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("configuration error") && last.contains("`WRONGAE`") && last.contains("`RETRIEVER`"),
        "the final error names both AE titles: {err}"
    );
    assert!(strict.requests().is_empty());
    // The right called AE title works.
    let (code, _, err) = store(orthanc, cache.path(), &strict.address("PACS"), &[study]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(strict.received_sop_uids(), testdata().study("ACC1002").sop_uids());
}

/// Warning statuses: delivered, shown, journaled as warnings; the run succeeds.
fn warnings_are_delivered_and_shown() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001"]);
    let study = uid_of("ACC1001");
    let scp = TestScp::start(&["--statuses", "0xB000,0x0000,0xB007", "--comment", "coerced here"]);
    let dest = scp.address("TESTSCP");

    let (code, out, err) = store(orthanc, cache.path(), &dest, &[study, "--associations", "1"]);
    assert_eq!(code, 0, "warnings count as delivered:\n{err}");
    assert!(out.starts_with(study), "{out}");
    assert_eq!(count(&err, "delivered with a warning:"), 2, "{err}");
    assert!(
        err.contains("status 0xB000 (coercion of data elements): 1 instance, \"coerced here\""),
        "{err}"
    );
    assert!(
        err.contains("status 0xB007 (data set does not match SOP class): 1 instance"),
        "{err}"
    );

    let requests = scp.requests();
    let journal = journal(cache.path(), study, &dest);
    for (sop, status) in requests {
        let record = &journal[&sop];
        match status.as_str() {
            "0xB000" | "0xB007" => {
                assert_eq!(state(record), "warning", "{record}");
                let code = u64::from_str_radix(&status[2..], 16).unwrap();
                assert_eq!(record["status"].as_u64(), Some(code));
                assert!(
                    record["detail"].as_str().unwrap().contains(&status.to_uppercase()[2..]),
                    "{record}"
                );
            }
            _ => assert_eq!(state(record), "delivered", "{record}"),
        }
    }
    assert_eq!(scp.received_sop_uids(), testdata().study("ACC1001").sop_uids());
}

/// Failure statuses: not delivered, journaled with the status, exit 1; "out of resources" is
/// retried within the run; a rerun sends only what failed.
fn failures_are_journaled_and_a_rerun_resends_only_them() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001"]);
    let study = uid_of("ACC1001");
    let all = testdata().study("ACC1001").sop_uids();
    let scp = TestScp::start(&["--statuses", "0x0000,0xC000,0xA700,0x0122"]);
    let dest = scp.address("TESTSCP");

    let (code, out, err) = store(orthanc, cache.path(), &dest, &[study, "--associations", "1"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "", "the study is not fully delivered");
    assert!(
        err.contains("status 0xC000 (error: cannot understand): 1 instance"),
        "{err}"
    );
    assert!(
        err.contains("status 0x0122 (refused: SOP class not supported): 1 instance"),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with(&format!("retriever: 2 instances not delivered to {dest}")),
        "{err}"
    );

    let requests = scp.requests();
    let status_of = |code: &str| requests.iter().find(|(_, s)| s == code).unwrap().0.clone();
    let (c000, a700, r0122) = (status_of("0xC000"), status_of("0xA700"), status_of("0x0122"));
    // Out of resources: tried again, and stored the second time.
    let a700_tries: Vec<&str> = requests
        .iter()
        .filter(|(s, _)| *s == a700)
        .map(|(_, st)| st.as_str())
        .collect();
    assert_eq!(a700_tries, ["0xA700", "0x0000"]);
    let journal1 = journal(cache.path(), study, &dest);
    for (sop, code, text) in [
        (&c000, 0xC000, "0xC000 (error: cannot understand)"),
        (&r0122, 0x0122, "0x0122"),
    ] {
        let r = &journal1[sop];
        assert_eq!(state(r), "failed", "{r}");
        assert_eq!(r["status"].as_u64(), Some(code), "{r}");
        assert!(r["detail"].as_str().unwrap().contains(text), "{r}");
    }
    let failed: BTreeSet<String> = [c000.clone(), r0122.clone()].into();
    assert_eq!(scp.received_sop_uids(), all.difference(&failed).cloned().collect());

    // The rerun sends the two failed instances, and only them.
    let (code, out, err) = store(orthanc, cache.path(), &dest, &[study]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(study), "{out}");
    assert_eq!(count(&err, "skipped, already delivered:"), 3, "{err}");
    let resent: BTreeSet<String> = scp.requests()[requests.len()..]
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(resent, failed);
    assert_eq!(scp.received_sop_uids(), all);
    assert_eq!(delivered_in_journal(cache.path(), study, &dest), all);
}

/// A destination that takes implicit VR little endian only: explicit and RLE instances are
/// converted on the way, with the same pixel data.
fn implicit_only_destination_gets_converted_instances() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001", "ACC1003"]);
    let scp = TestScp::start(&["--ts", IMPLICIT_VR_LE]);
    let dest = scp.address("TESTSCP");
    let (code, _, err) = store(orthanc, cache.path(), &dest, &[uid_of("ACC1001"), uid_of("ACC1003")]);
    assert_eq!(code, 0, "{err}");
    let data = testdata();
    for accession in ["ACC1001", "ACC1003"] {
        for instance in data.study(accession).instances() {
            let received = scp.file(&instance.sop_uid);
            assert_eq!(transfer_syntax(&received), IMPLICIT_VR_LE);
            let want = if accession == "ACC1003" {
                use dicom_pixeldata::PixelDecoder;
                let original = dicom(&instance.path);
                original.decode_pixel_data().unwrap().data().to_vec()
            } else {
                pixels(&instance.path)
            };
            assert!(
                pixels(&received) == want,
                "pixel data of {} ({accession}) changed",
                instance.sop_uid
            );
        }
    }
}

/// An instance in a syntax the destination does not take and that is not converted here
/// (lossy JPEG): without a cloud it fails with the reason; with one, it is asked for again in
/// a syntax the destination took, sent, and the staged copy removed.
fn unconvertible_instances_are_fetched_again_from_the_cloud() {
    let files = tempfile::tempdir().unwrap();
    let study = "1.2.826.0.1.3680043.8.498.77";
    let spec = |ts: &str| {
        format!(
            r#"{{"ts": "{ts}", "rows": 16, "cols": 16, "study": "{study}", "patient": "PJPEG", "accession": "ACCJPEG"}}"#
        )
    };
    let made = make_instances(
        files.path(),
        &[
            &spec("1.2.840.10008.1.2.4.50"),
            &spec(EXPLICIT_VR_LE),
            &spec("1.2.840.10008.1.2.4.50"),
        ],
    );
    let cloud = Orthanc::empty();
    let sops: Vec<String> = made
        .iter()
        .map(|m| {
            cloud.upload_file(&m.path);
            dicom(&m.path)
                .meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0')
                .to_owned()
        })
        .collect();
    let cache = temp_cache();
    fetch_ok(&cloud, cache.path(), &[study]);
    let scp = TestScp::start(&[]);
    let dest = scp.address("TESTSCP");

    let (code, _, err) = run(retriever()
        .arg("--cache")
        .arg(cache.path())
        .args(["store", study, "--to", &dest]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no cloud archive is configured"), "{err}");
    let first = journal(cache.path(), study, &dest);
    for sop in [&sops[0], &sops[2]] {
        let detail = first[sop]["detail"].as_str().unwrap();
        assert_eq!(state(&first[sop]), "failed");
        assert!(detail.contains("not in JPEG Baseline"), "{detail}");
    }
    assert_eq!(state(&first[&sops[1]]), "delivered");

    let (code, _, err) = store(&cloud, cache.path(), &dest, &[study]);
    assert_eq!(code, 0, "{err}");
    for (sop, m) in [(&sops[0], &made[0]), (&sops[2], &made[2])] {
        let received = scp.file(sop);
        assert_eq!(transfer_syntax(&received), EXPLICIT_VR_LE);
        let pixels = pixels(&received);
        assert_eq!(pixels.len(), m.raw_pixels.len());
        // Two JPEG decoders (Orthanc's, Pillow's) may round differently by one step.
        let worst = pixels
            .iter()
            .zip(&m.raw_pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "decoded pixels differ by up to {worst}");
        let record = &journal(cache.path(), study, &dest)[sop];
        assert_eq!(state(record), "delivered");
        assert!(
            record["detail"].as_str().unwrap().contains("from the cloud"),
            "{record}"
        );
    }
    assert_eq!(scp.requests().len(), 3, "the explicit instance was not sent again");
    // The JPEG originals stay in the cache; the transcoded copies are gone.
    assert_eq!(
        transfer_syntax(&cached_file(cache.path(), &sops[0])),
        "1.2.840.10008.1.2.4.50"
    );
    let tmp = cache.path().join("studies").join(study).join("tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staged files left in {}", tmp.display());
}

/// storescp aborting after each data set: no answer, so nothing is delivered; tried again on
/// a new association, then reported failed.
fn no_answer_is_never_delivered() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let study = uid_of("ACC1002");
    let scp = Storescp::start_with("STORESCP", &["--abort-after", "-dhl"]);
    let (code, _, err) = store(orthanc, cache.path(), &scp.address(), &[study, "--store-retries", "1"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(count(&err, "failed:"), 3, "{err}");
    assert!(err.contains("not counted as delivered"), "{err}");
    assert!(err.contains("(after 2 attempts)"), "{err}");
    let journal = journal(cache.path(), study, &scp.address());
    assert_eq!(journal.len(), 3);
    assert!(journal.values().all(|r| state(r) == "failed"), "{journal:?}");
}

/// Studies named but missing from the cache, or incomplete there, are not sent, and say why.
fn incomplete_and_unknown_studies_are_not_sent() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let study = uid_of("ACC1002");
    let gone = testdata().study("ACC1002").sop_uids().into_iter().next().unwrap();
    std::fs::remove_file(cached_file(cache.path(), &gone)).unwrap();
    let scp = Storescp::start("STORESCP");
    let (code, out, err) = store(orthanc, cache.path(), &scp.address(), &[study, "1.2.3.4.5"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.contains(&format!(
            "study {study} is not complete in the cache (2/3); fetch it first"
        )),
        "{err}"
    );
    assert!(
        err.contains("study 1.2.3.4.5 is not in the cache; fetch it first"),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("2 studies are not in the cache or not complete there"),
        "{err}"
    );
    assert!(scp.received().is_empty());

    // A run over the whole cache passes over it, and succeeds.
    let (code, _, err) = store(orthanc, cache.path(), &scp.address(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(2/3); left out"), "{err}");
}

/// kill -9 in the middle of a study, then a rerun: the destination ends with every instance,
/// the journal never claims one the destination lacks, and at most the instances in flight
/// are sent twice.
fn killed_mid_study_a_rerun_finishes_the_job() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACCBIG"]);
    let study = uid_of("ACCBIG");
    let all = testdata().large().sop_uids();
    let scp = TestScp::start(&["--sleep", "0.05"]);
    let dest = scp.address("TESTSCP");

    let mut child = retriever_at(&orthanc.dicomweb_url(), cache.path())
        .args(["store", study, "--to", &dest, "--associations", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while scp.received().len() < 8 {
        assert!(Instant::now() < deadline, "store did not get going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "store finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // No wait for what the SCP was still handling: it writes an instance before it answers,
    // so whatever the journal claims is already on its disk.

    let claimed = delivered_in_journal(cache.path(), study, &dest);
    let received = scp.received_sop_uids();
    assert!(
        claimed.is_subset(&received),
        "the journal claims instances the destination lacks"
    );
    assert!(received.len() < all.len(), "killed before the end");

    let (code, _, err) = store(orthanc, cache.path(), &dest, &[study]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(scp.received_sop_uids(), all);
    assert_eq!(delivered_in_journal(cache.path(), study, &dest), all);
    let requests = scp.requests().len();
    assert!(
        requests <= all.len() + 2,
        "{requests} C-STOREs for {} instances: more than the 2 in flight were sent twice",
        all.len()
    );
}

/// Instances streamed one by one (as `watch` does) and a `store` run go through one engine and
/// one journal writer: a warning is recorded as such by either, a failure status is left for
/// the `store` pass, which sends only that instance, and `ls` then counts every instance
/// delivered.
fn streamed_and_stored_instances_share_one_journal() {
    use retriever::cache::Cache;
    use retriever::delivery::{Streamed, Streamer};
    use retriever::dimse::ScuOptions;
    use retriever::uid::Uid;

    let orthanc = Orthanc::shared();
    let cache_dir = temp_cache();
    fetch_ok(orthanc, cache_dir.path(), &["ACC1001"]);
    let study = uid_of("ACC1001");
    let all = testdata().study("ACC1001").sop_uids();
    let scp = TestScp::start(&["--statuses", "0xB000,0xC000"]);
    let dest = scp.address("TESTSCP");

    let cache = Cache::open(cache_dir.path()).unwrap();
    let uid = Uid::parse(study).unwrap();
    let mut streamer = Streamer::new(cache.clone(), ScuOptions::new(scp.dest("TESTSCP")));
    let present = cache.present(&uid).unwrap();
    let outcomes: Vec<Streamed> = present
        .iter()
        .map(|(sop, instance)| streamer.send(&uid, sop, &instance.path).outcome)
        .collect();
    streamer.release().unwrap();
    streamer.finish_all();
    assert_eq!(outcomes[0], Streamed::Stored, "a warning is delivered");
    assert_eq!(outcomes[1], Streamed::Left, "a failure is left for the closing pass");
    assert!(outcomes[2..].iter().all(|o| *o == Streamed::Stored), "{outcomes:?}");

    let key = dest_key(&dest);
    let status = cache.study_status(&uid).unwrap().unwrap();
    let counts = status.counts(&key);
    assert_eq!(
        (counts.delivered, counts.warnings, counts.failed, counts.pending),
        (all.len() - 1, 1, 0, 1),
        "{counts:?}"
    );
    let records = journal(cache_dir.path(), study, &dest);
    let warned = &records[present.keys().next().unwrap().as_str()];
    assert_eq!(state(warned), "warning", "{warned}");
    assert_eq!(warned["status"].as_u64(), Some(0xB000));
    assert!(warned["detail"].as_str().unwrap().contains("B000"), "{warned}");

    let (code, _out, err) = store(orthanc, cache_dir.path(), &dest, &[study]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        count(&err, "delivered:"),
        1,
        "only the instance that failed is sent again:\n{err}"
    );
    assert_eq!(count(&err, "skipped, already delivered:"), all.len() - 1, "{err}");
    assert_eq!(scp.received_sop_uids(), all);

    let (code, out, err) = run(retriever().arg("--cache").arg(cache_dir.path()).args(["ls", "--json"]));
    assert_eq!(code, 0, "{err}");
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let delivery = &line["deliveries"][0];
    assert_eq!(delivery["delivered"].as_u64(), Some(all.len() as u64), "{line}");
    assert_eq!(delivery["warnings"].as_u64(), Some(1), "{line}");
    assert_eq!(delivery["failed"].as_u64(), Some(0), "{line}");
    assert_eq!(delivery["total"].as_u64(), Some(all.len() as u64), "{line}");
}
