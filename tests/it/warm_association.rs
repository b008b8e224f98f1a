//! `retriever watch` keeps the destination's association open from study to study: one
//! `--once` pass over several studies (each its own group, fetched one after another, as
//! studies of one patient are) opens one association at a pynetdicom SCP, plus one when a
//! SOP class it did not propose turns up, instead of one or more per study; and a destination
//! that drops the kept association when the next study's first instance arrives on it still
//! gets every instance, each stored and journaled once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::testscp::TestScp;
use crate::common::{assert_journaled_once, retriever_at, run_within, temp_cache, testdata};

tests! {
    one_pass_over_several_studies_opens_one_association: ["orthanc", "python"],
    a_kept_association_dropped_between_studies_loses_and_repeats_nothing: ["orthanc", "python"],
}

const LIMIT: Duration = Duration::from_secs(120);

/// The CT studies of PAT001, each a current study of its own with `--priors 0`: five groups,
/// fetched one at a time (one patient). ACC1005 holds an OT (secondary capture) instance too.
const STUDIES: [&str; 5] = ["ACC1001", "ACC1002", "ACC1005", "ACC1006", "ACC3001"];
/// SOP classes among them: CT, and the secondary capture of ACC1005.
const SOP_CLASSES: usize = 2;
/// Associations a pass may open beyond one per SOP class: one released by design after two
/// idle seconds, which a loaded machine can take between two studies.
const IDLE_SLACK: usize = 1;

/// `retriever --cloud CLOUD --cache CACHE --to DEST watch --once --priors 0 ARGS...` over
/// [`STUDIES`].
fn watch_once(cloud: &str, cache: &Path, dest: &str, args: &[&str]) -> Command {
    let mut cmd = retriever_at(cloud, cache);
    cmd.args(["--to", dest, "watch", "--once", "--priors", "0"])
        .args(args)
        .args(["--filter", "PatientID=PAT001", "--filter", "ModalitiesInStudy=CT"]);
    cmd
}

/// Every instance of [`STUDIES`] is at the SCP, stored by exactly one answered C-STORE, and
/// journaled as delivered exactly once.
fn assert_all_arrived_once(scp: &TestScp, cache: &Path, dest: &str) {
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for (sop, status) in scp.requests() {
        if status == "0x0000" {
            *stored.entry(sop).or_default() += 1;
        }
    }
    assert_journaled_once(cache, dest, &STUDIES);
    let want: BTreeMap<String, usize> = STUDIES
        .iter()
        .flat_map(|a| testdata().study(a).sop_uids())
        .map(|s| (s, 1))
        .collect();
    assert_eq!(stored, want, "C-STOREs answered with success, per instance");
    assert_eq!(
        scp.received_sop_uids(),
        want.keys().cloned().collect(),
        "instances at the SCP"
    );
}

/// Five studies, delivered one after another: the association is handed from each study's
/// closing pass to the next study's instances, never released and opened again, so the pass
/// opens one association, and one more to propose the SOP class that turns up later. (Each
/// study releasing it opened at least one per study.) `--associations 1`: a closing pass with
/// more than one instance left would otherwise open a second association alongside, as the
/// default of two says the destination takes.
fn one_pass_over_several_studies_opens_one_association() {
    let orthanc = crate::common::Orthanc::shared();
    let cache = temp_cache();
    let scp = TestScp::start(&[]);
    let dest = scp.address("TESTSCP");

    let mut watch = watch_once(&orthanc.dicomweb_url(), cache.path(), &dest, &["--associations", "1"]);
    let (code, out, err) = run_within(&mut watch, LIMIT);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out.lines().count(), STUDIES.len(), "one line per study:\n{out}");
    assert_all_arrived_once(&scp, cache.path(), &dest);
    let opened = scp.associations();
    assert!(
        (1..=SOP_CLASSES + IDLE_SLACK).contains(&opened),
        "associations opened for {} studies: {opened}, want one per SOP class ({SOP_CLASSES}), \
         and at most {IDLE_SLACK} more\nstderr:\n{err}",
        STUDIES.len()
    );
}

/// The SCP aborts the association the first time an instance of a second study arrives on it
/// (a PACS that dropped the association kept open between two studies): that instance has no
/// answer, so it is sent again on a new association, and in the end every instance is stored
/// once and journaled once, and the pass succeeds.
fn a_kept_association_dropped_between_studies_loses_and_repeats_nothing() {
    let orthanc = crate::common::Orthanc::shared();
    let cache = temp_cache();
    let scp = TestScp::start(&["--abort-on-next-study"]);
    let dest = scp.address("TESTSCP");

    let (code, out, err) = run_within(
        &mut watch_once(&orthanc.dicomweb_url(), cache.path(), &dest, &[]),
        LIMIT,
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out.lines().count(), STUDIES.len(), "one line per study:\n{out}");
    let aborted: Vec<String> = scp
        .requests()
        .into_iter()
        .filter(|(_, status)| status == "abort")
        .map(|(sop, _)| sop)
        .collect();
    assert_eq!(
        aborted.len(),
        1,
        "the SCP dropped the association carried over to the next study once\nstderr:\n{err}"
    );
    assert_all_arrived_once(&scp, cache.path(), &dest);
    assert!(scp.associations() >= 2, "a new association after the abort");
}
