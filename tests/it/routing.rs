//! Routing end to end, as the README's worked example sets it up: one patient's current CT, an
//! MG prior and an MR prior in the cloud, and three real destinations with different rules: a
//! PACS (DCMTK `storescp`) that takes every study, a workstation (`storescp`) that takes current
//! CT and MR studies only, and a mammography archive (a second Orthanc's DICOM port) that takes
//! MG studies, coerced to its own issuer and a prefixed Patient ID. Each destination receives
//! exactly the instances routed to it, the mammography archive holds coerced copies whose pixel
//! data is the cached file's, and the cache keeps the cloud's originals. A destination down for a
//! pass holds up nothing at the others and gets exactly its set at the next pass, and `prune`
//! keeps a study until the destination that lacks it has it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::coerce::{COMPARE, python_json};
use crate::common::{
    Orthanc, Storescp, cached_instances, delivered_counts, python, retriever, retriever_at, run_within, temp_cache,
    testdata, uid_of,
};

tests! {
    watch_once_sends_each_destination_exactly_its_studies_coerced_where_asked: ["orthanc", "storescp", "python"],
    fetch_store_sends_each_destination_exactly_its_studies_coerced_where_asked: ["orthanc", "storescp", "python"],
    a_destination_down_gets_exactly_its_set_at_the_next_pass_and_the_others_nothing_again: ["orthanc", "storescp", "python"],
    prune_keeps_a_study_until_the_destination_lacking_it_has_it: ["orthanc", "storescp", "python"],
}

const LIMIT: Duration = Duration::from_secs(120);

/// The current CT and the MR prior, from the generated test data (patient PAT001 of HOSP_A).
const CURRENT: &str = "ACC1001";
const MR_PRIOR: &str = "ACC1003";

/// The MG prior made for these tests from the CT prior ACC1002 (30 days old, implicit VR
/// little endian, so a coerced copy keeps its transfer syntax and its pixel data bytes).
const MG_ACCESSION: &str = "ACCMG01";
const MG_STUDY: &str = "1.2.826.0.1.3680043.8.498.141";
const MG_SERIES: &str = "1.2.826.0.1.3680043.8.498.142";
const MG_SOP_PREFIX: &str = "1.2.826.0.1.3680043.8.498.143.";
const DIGITAL_MAMMOGRAPHY: &str = "1.2.840.10008.5.1.4.1.1.1.2";

/// Turns each source file into an MG instance of one new study: argv is OUT_DIR, then pairs of
/// (source path, new SOP Instance UID).
const MAKE_MG: &str = r#"
import os, sys, pydicom
out, rest = sys.argv[1], sys.argv[2:]
study, series, accession, sop_class = os.environ["MG_STUDY"], os.environ["MG_SERIES"], os.environ["MG_ACCESSION"], os.environ["MG_CLASS"]
for source, sop in zip(rest[0::2], rest[1::2]):
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.SOPClassUID, ds.Modality = sop_class, "MG"
    ds.AccessionNumber, ds.StudyDescription, ds.SeriesDescription = accession, "MG SCREENING", "CC MLO"
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, sop
    ds.save_as(os.path.join(out, sop + ".dcm"))
"#;

/// The cloud with its three studies, the three destinations and the config file naming them.
struct Setup {
    cloud: Orthanc,
    pacs: Storescp,
    ws: Storescp,
    mammo: Orthanc,
    /// The MG prior's files as uploaded, by SOP Instance UID.
    mg_files: BTreeMap<String, PathBuf>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cloud = Orthanc::empty();
        for accession in [CURRENT, MR_PRIOR] {
            for instance in testdata().study(accession).instances() {
                cloud.upload_file(&instance.path);
            }
        }
        let mg_files = make_mg_prior(dir.path());
        for path in mg_files.values() {
            cloud.upload_file(path);
        }
        let pacs = Storescp::start("PACS");
        let ws = Storescp::start("WS1");
        let mammo = Orthanc::empty();
        let config = dir.path().join("router.json");
        let text = json!({ "destinations": [
            { "name": "pacs", "to": pacs.address() },
            { "name": "workstation", "to": ws.address(), "associations": 1,
              "when": { "role": "current", "modality": ["CT", "MR"] } },
            { "name": "mammo", "to": mammo.dicom_address(), "calling_ae": "RTR_MAMMO",
              "when": { "modality": "MG" },
              "coerce": [
                  { "set": "IssuerOfPatientID", "value": "NORTH" },
                  { "set": "PatientID", "value": "MG-{value}" },
              ] },
        ] });
        std::fs::write(&config, serde_json::to_vec_pretty(&text).unwrap()).unwrap();
        Setup {
            cloud,
            pacs,
            ws,
            mammo,
            mg_files,
            dir,
            config,
        }
    }

    /// `retriever --cloud CLOUD ... --cache CACHE --config CONFIG ARGS...`
    fn retriever(&self, cache: &Path, args: &[&str]) -> Command {
        let mut cmd = retriever_at(&self.cloud.dicomweb_url(), cache);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd
    }

    /// `watch --once --json` of PAT001's studies of the last 24 hours: the current CT.
    fn watch_once(&self, cache: &Path) -> (i32, String, String) {
        run_within(
            &mut self.retriever(
                cache,
                &[
                    "watch",
                    "--once",
                    "--json",
                    "--filter",
                    "PatientID=PAT001",
                    "--filter",
                    "StudyDate=last 24 hours",
                ],
            ),
            LIMIT,
        )
    }

    /// The SOP Instance UIDs the mammography archive holds, whatever study they landed in.
    fn mammo_sop_uids(&self) -> BTreeSet<String> {
        self.mammo
            .get_json("/instances?expand")
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["MainDicomTags"]["SOPInstanceUID"].as_str().unwrap().to_owned())
            .collect()
    }

    fn mg_sops(&self) -> BTreeSet<String> {
        self.mg_files.keys().cloned().collect()
    }
}

/// Writes the MG prior's files into `dir`; returns them by SOP Instance UID.
fn make_mg_prior(dir: &Path) -> BTreeMap<String, PathBuf> {
    let source = testdata().study("ACC1002");
    let mut args = vec![dir.display().to_string()];
    let mut files = BTreeMap::new();
    for (n, instance) in source.instances().enumerate() {
        let sop = format!("{MG_SOP_PREFIX}{}", n + 1);
        args.push(instance.path.display().to_string());
        args.push(sop.clone());
        files.insert(sop.clone(), dir.join(format!("{sop}.dcm")));
    }
    let out = Command::new(python())
        .args(["-c", MAKE_MG])
        .args(&args)
        .env("MG_STUDY", MG_STUDY)
        .env("MG_SERIES", MG_SERIES)
        .env("MG_ACCESSION", MG_ACCESSION)
        .env("MG_CLASS", DIGITAL_MAMMOGRAPHY)
        .stdin(Stdio::null())
        .output()
        .expect("run python to make the MG prior");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    files
}

fn sops(accession: &str) -> BTreeSet<String> {
    testdata().study(accession).sop_uids()
}

fn union(sets: &[&BTreeSet<String>]) -> BTreeSet<String> {
    sets.iter().flat_map(|s| s.iter().cloned()).collect()
}

/// The (study UID, destination) pairs of `--json` stdout lines.
fn lines(out: &str) -> BTreeSet<(String, String)> {
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| {
            (
                v["study_uid"].as_str().unwrap().to_owned(),
                v["destination"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(study: &str, destination: &str) -> (String, String) {
    (study.to_owned(), destination.to_owned())
}

/// Each file a storescp wrote, with its modification time: a copy sent again would be a new
/// file or, storescp overwriting a file of the same name, a later time.
fn files_written(scp: &Storescp) -> BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(scp.dir())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let written = e.metadata().unwrap().modified().unwrap();
            (e.file_name().to_string_lossy().into_owned(), written)
        })
        .collect()
}

fn once_each(sops: &BTreeSet<String>) -> BTreeMap<String, usize> {
    sops.iter().map(|s| (s.clone(), 1)).collect()
}

/// What every test checks after the three studies reached every destination routed to them:
/// each destination holds exactly its set, the mammography archive's copies carry the coerced
/// attributes and nothing else changed (the pixel data byte for byte), the PACS's copy of the
/// MG study is not coerced, and the cache holds the cloud's files unchanged.
fn assert_routed(setup: &Setup, cache: &Path) {
    let (ct, mr, mg) = (sops(CURRENT), sops(MR_PRIOR), setup.mg_sops());
    assert_eq!(
        setup.pacs.received_sop_uids(),
        union(&[&ct, &mr, &mg]),
        "pacs: every study"
    );
    assert_eq!(setup.ws.received_sop_uids(), ct, "workstation: the current CT only");
    assert_eq!(setup.mammo_sop_uids(), mg, "mammo: the MG study only");

    // What the mammography archive stored, read back through its REST API.
    let received = tempfile::tempdir().unwrap();
    let cached_mg = cached_instances(cache, MG_STUDY);
    let mut pairs = Vec::new();
    for sop in &mg {
        let id = setup.mammo.lookup(sop).unwrap();
        let tags = setup.mammo.get_json(&format!("/instances/{id}/simplified-tags"));
        assert_eq!(tags["PatientID"], "MG-PAT001", "{sop}: {tags}");
        assert_eq!(tags["IssuerOfPatientID"], "NORTH", "{sop}: {tags}");
        assert_eq!(tags["Modality"], "MG", "{sop}: {tags}");
        let path = received.path().join(format!("{sop}.dcm"));
        std::fs::write(&path, setup.mammo.get_bytes(&format!("/instances/{id}/file"))).unwrap();
        let cached = setup.dir.path().join(format!("cached-{sop}.dcm"));
        std::fs::write(&cached, &cached_mg[sop]).unwrap();
        pairs.push((cached.display().to_string(), path.display().to_string()));
    }
    // The PACS takes no rules: its copy is the cloud's data set.
    let pacs_files = setup.pacs.received();
    let pacs_pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(cached, received)| {
            let sop = Path::new(received).file_stem().unwrap().to_string_lossy().into_owned();
            (cached.clone(), pacs_files[&sop].display().to_string())
        })
        .collect();
    let report = python_json(COMPARE, &[&serde_json::to_string(&pairs).unwrap()]);
    let pacs_report = python_json(COMPARE, &[&serde_json::to_string(&pacs_pairs).unwrap()]);
    for sop in &mg {
        let got = &report[sop.as_str()];
        assert_eq!(got["changed"], json!(["(0010,0020)", "(0010,0021)"]), "{sop}: {got}");
        assert_eq!(got["pixels_same"], true, "{sop}: {got}");
        let got = &pacs_report[sop.as_str()];
        assert_eq!(got["changed"], json!([]), "pacs's copy of {sop}: {got}");
        assert_eq!(got["PatientID"], "PAT001", "pacs's copy of {sop}: {got}");
        assert_eq!(got["pixels_same"], true, "pacs's copy of {sop}: {got}");
    }

    // The cache keeps what the cloud sent, byte for byte.
    for accession in [CURRENT, MR_PRIOR] {
        let study = testdata().study(accession);
        let cached = cached_instances(cache, &study.study_uid);
        assert_eq!(cached.keys().cloned().collect::<BTreeSet<_>>(), study.sop_uids());
        for instance in study.instances() {
            assert!(
                cached[&instance.sop_uid] == instance.bytes(),
                "{} was changed",
                instance.sop_uid
            );
        }
    }
    assert_eq!(cached_mg.keys().cloned().collect::<BTreeSet<_>>(), mg);
    for (sop, path) in &setup.mg_files {
        assert!(
            cached_mg[sop] == std::fs::read(path).unwrap(),
            "{sop} was changed in the cache"
        );
    }

    // Each delivery is journaled once, at the destination it was routed to.
    let (pacs, ws, mammo) = (setup.pacs.address(), setup.ws.address(), setup.mammo.dicom_address());
    let (current, mr_study) = (uid_of(CURRENT), uid_of(MR_PRIOR));
    for (study, set) in [(current, &ct), (mr_study, &mr), (MG_STUDY, &mg)] {
        assert_eq!(
            delivered_counts(cache, study, &pacs),
            once_each(set),
            "pacs journal of {study}"
        );
    }
    assert_eq!(delivered_counts(cache, current, &ws), once_each(&ct));
    assert_eq!(delivered_counts(cache, MG_STUDY, &mammo), once_each(&mg));
    for study in [mr_study, MG_STUDY] {
        assert!(
            delivered_counts(cache, study, &ws).is_empty(),
            "{study} at the workstation"
        );
    }
    for study in [current, mr_study] {
        assert!(delivered_counts(cache, study, &mammo).is_empty(), "{study} at mammo");
    }
}

/// The stdout lines of a pass that delivered everything: one per study and destination routed.
fn all_lines() -> BTreeSet<(String, String)> {
    let current = uid_of(CURRENT);
    let mr = uid_of(MR_PRIOR);
    BTreeSet::from([
        pair(current, "pacs"),
        pair(mr, "pacs"),
        pair(MG_STUDY, "pacs"),
        pair(current, "workstation"),
        pair(MG_STUDY, "mammo"),
    ])
}

/// One `watch --once` pass: the current CT and its two priors reach exactly the destinations
/// their rules pick. A rule ignored would show: the MG study at the workstation (its modality)
/// or the MR prior there (its role), a CT at the mammography archive, or an uncoerced copy.
fn watch_once_sends_each_destination_exactly_its_studies_coerced_where_asked() {
    let setup = Setup::start();
    let cache = temp_cache();
    let (code, out, err) = setup.watch_once(cache.path());
    assert_eq!(code, 0, "watch --once failed:\n{err}");
    assert_routed(&setup, cache.path());
    assert_eq!(lines(&out), all_lines(), "{out}");
}

/// The same with `fetch ACC1001 --store`, which finds the two priors itself.
fn fetch_store_sends_each_destination_exactly_its_studies_coerced_where_asked() {
    let setup = Setup::start();
    let cache = temp_cache();
    let (code, _, err) = run_within(
        &mut setup.retriever(cache.path(), &["fetch", CURRENT, "--store"]),
        LIMIT,
    );
    assert_eq!(code, 0, "fetch --store failed:\n{err}");
    assert_routed(&setup, cache.path());
}

/// The workstation is down for a pass: the PACS and the mammography archive get all theirs, the
/// pass fails naming the workstation. Back on the same port, the next pass sends it exactly the
/// current CT, and nothing again anywhere else.
fn a_destination_down_gets_exactly_its_set_at_the_next_pass_and_the_others_nothing_again() {
    let mut setup = Setup::start();
    let cache = temp_cache();
    setup.ws.stop();
    let (code, out, err) = setup.watch_once(cache.path());
    assert_eq!(code, 1, "the workstation was down:\n{err}");
    let (ct, mr, mg) = (sops(CURRENT), sops(MR_PRIOR), setup.mg_sops());
    assert_eq!(
        setup.pacs.received_sop_uids(),
        union(&[&ct, &mr, &mg]),
        "pacs: every study"
    );
    assert_eq!(setup.mammo_sop_uids(), mg, "mammo: the MG study");
    assert!(setup.ws.received().is_empty());
    let mut delivered = all_lines();
    delivered.remove(&pair(uid_of(CURRENT), "workstation"));
    assert_eq!(lines(&out), delivered, "{out}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("was not delivered") && last.contains("workstation: ") && !last.contains("mammo"),
        "{err}"
    );
    // `status` reads what the pass left: the workstation down, the others up.
    let (code, status, _) = run_within(retriever().arg("--cache").arg(cache.path()).arg("status"), LIMIT);
    assert_eq!(code, 1, "the pass is over:\n{status}");
    assert!(
        status.contains(&format!("workstation ({}): DOWN since", setup.ws.address()))
            && status.contains(&format!("pacs ({}): up", setup.pacs.address()))
            && status.contains(&format!("mammo ({}): up", setup.mammo.dicom_address())),
        "{status}"
    );
    let pacs_files = files_written(&setup.pacs);

    setup.ws.start_again();
    let (code, out, err) = setup.watch_once(cache.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines(&out),
        BTreeSet::from([pair(uid_of(CURRENT), "workstation")]),
        "only the workstation's line:\n{out}"
    );
    assert_eq!(files_written(&setup.pacs), pacs_files, "nothing again to pacs");
    assert_routed(&setup, cache.path());
}

/// The workstation lacks the current CT: the dry run of `prune --older-than 0s` names it as
/// holding the study back, and a real prune keeps it (and removes the priors, delivered
/// everywhere they are routed). Once `store` has delivered it there, prune removes it.
fn prune_keeps_a_study_until_the_destination_lacking_it_has_it() {
    let mut setup = Setup::start();
    let cache = temp_cache();
    setup.ws.stop();
    let (code, _, err) = setup.watch_once(cache.path());
    assert_eq!(code, 1, "the workstation was down:\n{err}");
    let current = uid_of(CURRENT);
    let mr = uid_of(MR_PRIOR);
    let ws = setup.ws.address();
    let prune = |args: &[&str]| {
        let mut cmd = retriever();
        cmd.arg("--cache")
            .arg(cache.path())
            .arg("--config")
            .arg(&setup.config)
            .args(["prune", "--older-than", "0s"])
            .args(args);
        run_within(&mut cmd, LIMIT)
    };

    let (code, out, err) = prune(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("kept {current} ({CURRENT}, ")), "{err}");
    assert!(
        err.contains(&format!(
            "not yet delivered to workstation ({ws}): 0 of {} instances",
            sops(CURRENT).len()
        )),
        "{err}"
    );
    assert!(
        !err.contains("not yet delivered to pacs") && !err.contains("not yet delivered to mammo"),
        "{err}"
    );
    let would: BTreeSet<&str> = out.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(would, BTreeSet::from([mr, MG_STUDY]), "{out}");

    let (code, _, err) = prune(&[]);
    assert_eq!(code, 0, "{err}");
    let studies = cache.path().join("studies");
    assert!(
        studies.join(current).join("manifest.json").is_file(),
        "kept for the workstation"
    );
    assert!(
        !studies.join(mr).exists() && !studies.join(MG_STUDY).exists(),
        "the priors went"
    );

    setup.ws.start_again();
    let pacs_files = files_written(&setup.pacs);
    let (code, _, err) = run_within(&mut setup.retriever(cache.path(), &["store", current]), LIMIT);
    assert_eq!(code, 0, "store failed:\n{err}");
    assert_eq!(setup.ws.received_sop_uids(), sops(CURRENT));
    assert_eq!(files_written(&setup.pacs), pacs_files, "nothing again to pacs");
    let (code, out, err) = prune(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(current), "{out}\n{err}");
    assert!(!studies.join(current).exists(), "removed once the workstation has it");
}
