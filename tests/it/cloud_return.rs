//! `retriever watch` when the cloud comes back from an outage, through the fault-injecting
//! proxy: the search that finds it answering again takes up at once both a study that arrived
//! meanwhile and one whose fetch the outage failed, without waiting out any backoff; while it
//! is down, it is probed no sooner than its `Retry-After` asks; and a study uploaded during an
//! outage is delivered within a couple of seconds of its end. Asserted on the order of the
//! watch's searches and deliveries where it can be: the watch's interval is long, so any wait
//! shows as a second search before the delivery.

use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::proxy::{Fault, Proxy, Rule};
use crate::common::running::{Running, wait_until};
use crate::common::{Orthanc, Storescp, file_says, retriever_at, run_within, temp_cache};
use crate::watch::{log_seconds_after, sops, stamps, upload};

tests! {
    a_study_that_arrived_during_the_outage_is_delivered_by_the_first_search_after: ["orthanc", "storescp"],
    a_study_the_outage_failed_is_taken_up_by_the_first_search_after: ["orthanc", "storescp"],
    a_cloud_that_asks_to_be_left_alone_is_not_probed_sooner: ["orthanc", "storescp"],
    a_cloud_back_from_an_outage_is_searched_within_seconds: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(60);

/// Between two searches of a watch that finds the cloud answering: far longer than a fetch
/// and a delivery here, far shorter than [`LIMIT`]. The probe of a cloud that is down is
/// every half second whatever this is.
const INTERVAL: &str = "10s";

/// An empty cloud behind the fault proxy, a cache and a storescp. Fields drop in order: the
/// destination and the proxy before the cloud.
struct Peers {
    scp: Storescp,
    cache: tempfile::TempDir,
    proxy: Proxy,
    cloud: Orthanc,
}

impl Peers {
    fn start() -> Peers {
        let cloud = Orthanc::empty();
        Peers {
            scp: Storescp::start("STORESCP"),
            cache: temp_cache(),
            proxy: Proxy::to(&cloud),
            cloud,
        }
    }

    /// `retriever --cloud PROXY ... watch --to STORESCP ARGS...`, one request per try.
    fn watch(&self, args: &[&str]) -> Command {
        let mut cmd = retriever_at(&self.proxy.dicomweb_url(), self.cache.path());
        cmd.arg("watch")
            .args([
                "--to",
                &self.scp.address(),
                "--filter",
                "AccessionNumber=ACC*",
                "--priors",
                "0",
                "--retries",
                "0",
            ])
            .args(args);
        cmd
    }
}

/// Waits for the study to be delivered or for a second search after the return, whichever
/// comes first, and asserts it was the delivery: the search that found the cloud back took
/// the study up.
fn delivered_by_the_first_search_after(running: &mut Running, proxy: &Proxy, back: usize, label: &str) {
    let stderr = running.stderr_path();
    let said = format!("delivered {label}");
    wait_until(LIMIT, "the delivery or a second search", running, || {
        file_says(&stderr, &said) || proxy.study_searches("/studies?AccessionNumber=") >= back + 2
    });
    let delivered = file_says(&stderr, &said);
    let after = proxy.study_searches("/studies?AccessionNumber=") - back;
    assert_eq!(running.interrupt(), 130);
    assert!(
        delivered && after == 1,
        "{label} delivered: {delivered}, after {after} searches since the cloud was back:\n{}",
        running.stderr()
    );
}

/// The cloud answers everything with 503 while a study is uploaded: once it answers again,
/// the first search finds the study and it is fetched and delivered before any other search,
/// and no request after the return was refused (none waited out a retry).
fn a_study_that_arrived_during_the_outage_is_delivered_by_the_first_search_after() {
    let peers = Peers::start();
    let Peers { scp, proxy, cloud, .. } = &peers;
    let mut running = Running::start(peers.watch(&["--interval", INTERVAL]));
    wait_until(LIMIT, "a search that works", &mut running, || {
        proxy.study_searches("/studies?AccessionNumber=") >= 1
    });
    let outage = proxy.add(Rule::new(Fault::unavailable(0)).path_contains("/dicom-web/"));
    upload(cloud, "ACC3001");
    wait_until(LIMIT, "three refused probes", &mut running, || proxy.hits(outage) >= 3);
    let back = proxy.study_searches("/studies?AccessionNumber=");
    let requests = proxy.request_count();
    proxy.clear();
    delivered_by_the_first_search_after(&mut running, proxy, back, "ACC3001");
    assert_eq!(scp.received_sop_uids(), sops(&["ACC3001"]));
    // The first request after the return was the search itself, no probe of its own before it.
    let after = &proxy.requests()[requests..];
    assert!(
        after
            .first()
            .is_some_and(|r| r.target.contains("/studies?AccessionNumber=")),
        "{after:?}"
    );
}

/// A study left undone is taken up as the watch starts, while the cloud answers everything with
/// 503: its fetch fails and earns a backoff (twice the interval, its second failure). Once the
/// cloud answers again, the search that finds it back takes the study up at once; waiting out
/// the backoff, it came two searches later.
fn a_study_the_outage_failed_is_taken_up_by_the_first_search_after() {
    let peers = Peers::start();
    let Peers { scp, proxy, cloud, .. } = &peers;
    upload(cloud, "ACC3001");
    // A first pass finds the study but cannot fetch it: it stays in the record, to do.
    let listings = proxy.add(Rule::new(Fault::unavailable(0)).path_contains("/dicom-web/studies/"));
    let (code, _, stderr) = run_within(&mut peers.watch(&["--once", "--interval", INTERVAL]), LIMIT);
    assert_eq!(code, 1, "{stderr}");
    assert!(proxy.hits(listings) >= 1, "{stderr}");
    proxy.clear();
    let outage = proxy.add(Rule::new(Fault::unavailable(0)).path_contains("/dicom-web/"));
    let mut running = Running::start(peers.watch(&["--interval", INTERVAL]));
    let stderr = running.stderr_path();
    wait_until(LIMIT, "the study failed again", &mut running, || {
        file_says(&stderr, "ACC3001: not delivered")
    });
    let probes = proxy.study_searches("/studies?AccessionNumber=");
    wait_until(LIMIT, "two more refused probes", &mut running, || {
        proxy.study_searches("/studies?AccessionNumber=") >= probes + 2
    });
    assert!(proxy.hits(outage) >= 3);
    let back = proxy.study_searches("/studies?AccessionNumber=");
    proxy.clear();
    delivered_by_the_first_search_after(&mut running, proxy, back, "ACC3001");
    assert_eq!(scp.received_sop_uids(), sops(&["ACC3001"]));
}

/// The cloud answers the search with 503 and `Retry-After: 30` (maintenance, say): the watch
/// probes it again in 30 s, not every second, and says so.
fn a_cloud_that_asks_to_be_left_alone_is_not_probed_sooner() {
    let peers = Peers::start();
    let proxy = &peers.proxy;
    proxy.add(Rule::new(Fault::unavailable(30)).path_contains("/dicom-web/studies?"));
    let mut running = Running::start(peers.watch(&["--interval", INTERVAL]));
    let stderr = running.stderr_path();
    wait_until(LIMIT, "the failed search said", &mut running, || {
        file_says(&stderr, "the search failed")
    });
    assert_eq!(running.interrupt(), 130);
    let log = running.stderr();
    assert!(log.contains("the search failed (1 in a row), next in 30s"), "{log}");
    assert_eq!(proxy.study_searches("/studies?AccessionNumber="), 1, "{log}");
}

/// The cloud answers every search with 503 for a while: the log says so once (not at each of
/// the searches that probe it meanwhile), and once it answers again the study uploaded during the
/// outage is delivered within a couple of seconds, by the log's own time stamps (with a backoff
/// it waited up to 16 s more).
fn a_cloud_back_from_an_outage_is_searched_within_seconds() {
    let peers = Peers::start();
    let proxy = &peers.proxy;
    let mut running = Running::start(peers.watch(&["--interval", "1s"]));
    let seen = proxy.study_searches("/studies?");
    wait_until(LIMIT, "a search that works", &mut running, || {
        proxy.study_searches("/studies?") > seen
    });
    let outage = proxy.add(Rule::new(Fault::unavailable(0)).path_contains("/dicom-web/studies?"));
    upload(&peers.cloud, "ACC3001");
    // Six failed searches: a backoff from 1 s would have waited 1, 2, 4, 8 and 16 s by then.
    wait_until(LIMIT, "six failed searches", &mut running, || proxy.hits(outage) >= 6);
    proxy.clear();
    let back = SystemTime::now();
    let stderr = running.stderr_path();
    wait_until(LIMIT, "the study delivered", &mut running, || {
        file_says(&stderr, "delivered ACC3001")
    });
    assert_eq!(running.interrupt(), 130);
    let log = running.stderr();
    let delivered = stamps(&log, "delivered ACC3001")[0];
    assert!(
        log_seconds_after(back, delivered) <= 2,
        "delivered {} s after the cloud was back:\n{log}",
        log_seconds_after(back, delivered)
    );
    assert_eq!(stamps(&log, "the search failed").len(), 1, "said once:\n{log}");
    assert_eq!(
        stamps(&log, "the search works again, the cloud is back after ").len(),
        1,
        "{log}"
    );
    assert_eq!(peers.scp.received_sop_uids(), sops(&["ACC3001"]));
}
