//! The QIDO-RS pager against scripted servers that page in the ways real
//! ones do, or should not: capped pages with and without the `Warning`
//! that says more results exist, an ignored `offset`, overlapping pages,
//! results that move between pages while they are paged, and answers that
//! never end.

use std::sync::Mutex;

use super::client_tests::{CollectAll, client, json_page, ok_json};
use super::testserver::TestServer;

const MORE: (&str, &str) = (
    "Warning",
    "299 cloud: There are additional results that can be requested",
);

fn offset(req: &super::testserver::Recorded) -> usize {
    req.param("offset").unwrap().parse().unwrap()
}

/// A QIDO-RS answer with the studies `1.2.3.{n}` for each `n`, in that order.
fn json_studies(ns: &[usize]) -> Vec<u8> {
    let studies: Vec<String> = ns
        .iter()
        .map(|n| format!(r#"{{"0020000D": {{"vr": "UI", "Value": ["1.2.3.{n}"]}}}}"#))
        .collect();
    format!("[{}]", studies.join(",")).into_bytes()
}

fn study_uids(found: &[super::DicomJson]) -> Vec<String> {
    found.iter().map(|j| j.string(0x0020_000D).unwrap()).collect()
}

#[test]
fn a_capped_page_with_the_warning_is_followed_from_the_results_so_far() {
    // Caps pages at 7 whatever the limit, says so while more remain.
    let server = TestServer::start(|_, req| {
        let from = offset(req);
        let to = (from + 7).min(30);
        ok_json(&json_page(from..to), if to < 30 { &[MORE] } else { &[] })
    });
    let found = client(&server).studies(&[("PatientID", "P1")]).unwrap();
    assert_eq!(found.len(), 30);
    let offsets: Vec<usize> = server.requests().iter().map(offset).collect();
    assert_eq!(offsets, [0, 7, 14, 21, 28]);
}

#[test]
fn a_short_page_without_the_warning_ends_the_listing() {
    // A cap the server keeps quiet about: the pager cannot know, it stops
    // (the caller checks the listing against the counts the cloud gives).
    let server = TestServer::start(|_, req| {
        let from = offset(req);
        ok_json(&json_page(from..(from + 7).min(30)), &[])
    });
    assert_eq!(client(&server).studies(&[]).unwrap().len(), 7);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn an_ignored_offset_behind_a_capped_page_is_an_error_at_the_second_page() {
    let server = TestServer::start(|_, _| ok_json(&json_page(0..7), &[MORE]));
    let mut handed = 0;
    let e = client(&server)
        .search_studies(&[], &mut |_| {
            handed += 1;
            Ok(())
        })
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("seems to ignore `offset`"), "{e}");
    assert!(e.contains("offset=7"), "names the request: {e}");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(handed, 7, "each result once");
}

#[test]
fn overlapping_pages_hand_out_each_result_once() {
    // The second page starts two results early (a study added meanwhile).
    let server = TestServer::start(|_, req| match offset(req) {
        0 => ok_json(&json_page(0..5), &[MORE]),
        _ => ok_json(&json_page(3..8), &[]),
    });
    let found = client(&server).studies(&[]).unwrap();
    let uids: Vec<String> = found.iter().map(|j| j.string(0x0020_000D).unwrap()).collect();
    let want: Vec<String> = (0..8).map(|n| format!("1.2.3.{n}")).collect();
    assert_eq!(uids, want);
}

#[test]
fn studies_arriving_while_paged_are_all_handed_out_once_by_starting_again() {
    // Lists its studies unsorted, three a page; after the second page four
    // studies arrive and are listed among the first, as Orthanc may list
    // them. The third page then holds only studies already sent, and the
    // new ones sit where the pager has been: only starting again finds them.
    let listing = Mutex::new((0..9).collect::<Vec<usize>>());
    let server = TestServer::start(move |n, req| {
        let mut listing = listing.lock().unwrap();
        if n == 2 {
            listing.splice(1..1, [10, 11, 12, 13]);
        }
        let from = offset(req).min(listing.len());
        let to = (from + 3).min(listing.len());
        let more: &[(&str, &str)] = if to < listing.len() { &[MORE] } else { &[] };
        ok_json(&json_studies(&listing[from..to]), more)
    });
    let found = client(&server).studies(&[]).unwrap();
    let mut got = study_uids(&found);
    got.sort();
    let mut want: Vec<String> = (0..9).chain(10..14).map(|n| format!("1.2.3.{n}")).collect();
    want.sort();
    assert_eq!(got, want, "every study once");
    let offsets: Vec<usize> = server.requests().iter().map(offset).collect();
    assert_eq!(offsets, [0, 3, 6, 0, 3, 6, 9, 12], "one pass again from the start");
}

#[test]
fn results_that_keep_moving_while_paged_are_an_error_that_says_so() {
    // Every pass, the third page holds studies of the first two again.
    let server = TestServer::start(|_, req| match offset(req) {
        0 => ok_json(&json_studies(&[0, 1, 2]), &[MORE]),
        3 => ok_json(&json_studies(&[3, 4, 5]), &[MORE]),
        _ => ok_json(&json_studies(&[1, 3, 5]), &[MORE]),
    });
    let mut handed = Vec::new();
    let e = client(&server)
        .search_studies(&[], &mut |j| {
            handed.push(j.string(0x0020_000D).unwrap());
            Ok(())
        })
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("keep changing while they are paged"), "{e}");
    assert!(e.contains("try again"), "{e}");
    assert!(!e.contains("seems to ignore `offset`"), "{e}");
    assert!(e.contains("offset=6"), "names the request: {e}");
    let offsets: Vec<usize> = server.requests().iter().map(offset).collect();
    assert_eq!(offsets, [0, 3, 6, 0, 3, 6]);
    let want: Vec<String> = (0..6).map(|n| format!("1.2.3.{n}")).collect();
    assert_eq!(handed, want, "each result once");
}

#[test]
fn an_ignored_offset_is_told_apart_from_results_moving_after_a_start_again() {
    // Its results move under the pager (the third page), and from then on
    // it answers every request with the same page: the pass started again
    // finds the first page repeated, and says that `offset` is ignored.
    let server = TestServer::start(|n, _| match n {
        0 => ok_json(&json_studies(&[0, 1, 2]), &[MORE]),
        1 => ok_json(&json_studies(&[3, 4, 5]), &[MORE]),
        2 => ok_json(&json_studies(&[1, 2, 3]), &[MORE]),
        _ => ok_json(&json_studies(&[6, 0, 1]), &[MORE]),
    });
    let e = format!("{:#}", client(&server).studies(&[]).unwrap_err());
    assert!(e.contains("seems to ignore `offset`"), "{e}");
    let offsets: Vec<usize> = server.requests().iter().map(offset).collect();
    assert_eq!(offsets, [0, 3, 6, 0, 3]);
}

#[test]
fn a_page_of_results_without_uids_repeated_is_still_caught() {
    let body = br#"[{"00080050": {"vr": "SH", "Value": ["A"]}}, {"00080050": {"vr": "SH", "Value": ["B"]}}]"#;
    let server = TestServer::start(move |_, _| ok_json(body, &[MORE]));
    let e = format!("{:#}", client(&server).studies(&[]).unwrap_err());
    assert!(e.contains("seems to ignore `offset`"), "{e}");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_server_that_never_stops_is_cut_off_at_the_page_cap() {
    // One new result per page, forever, always with more to come.
    let server = TestServer::start(|_, req| {
        let from = offset(req);
        ok_json(&json_page(from..from + 1), &[MORE])
    });
    let e = format!("{:#}", client(&server).studies(&[]).unwrap_err());
    assert!(e.contains("after 50 pages"), "{e}");
    assert!(e.contains("narrow the search"), "{e}");
    assert_eq!(server.requests().len(), 50);
}

#[test]
fn results_beyond_the_cap_are_refused() {
    // A server that ignores `limit` and sends more than a search may hold.
    let server = TestServer::start(|_, _| ok_json(&json_page(0..5_001), &[]));
    let e = format!("{:#}", client(&server).studies(&[]).unwrap_err());
    assert!(e.contains("more than 5000 results"), "{e}");
}

#[test]
fn a_full_page_is_followed_even_without_the_warning_and_the_callback_can_stop_it() {
    let server = TestServer::start(|_, req| {
        let from = offset(req);
        ok_json(&json_page(from..(from + 200).min(250)), &[])
    });
    let c = client(&server);
    assert_eq!(c.studies(&[]).unwrap().len(), 250);
    let e = c
        .search_studies(&[], &mut |j| match j.string(0x0020_000D).as_deref() {
            Some("1.2.3.3") => anyhow::bail!("refused by the caller"),
            _ => Ok(()),
        })
        .unwrap_err();
    assert_eq!(format!("{e:#}"), "refused by the caller");
}

mod paging {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever a server's cap, whether it says more results exist, and however much its
        /// pages overlap (results added meanwhile), the pager hands out each result once, in
        /// order: all of them when the server says so, the first page when it does not.
        #[test]
        fn every_result_once_however_the_server_pages(
            cap in 3usize..30,
            pages in 0usize..12,
            extra in 0usize..3,
            overlap in 0usize..3,
            warn in any::<bool>(),
        ) {
            let total = cap * pages + extra;
            let server = TestServer::start(move |_, req| {
                let from = offset(req).saturating_sub(overlap);
                let to = (from + cap).min(total);
                let more = to < total && warn;
                ok_json(&json_page(from.min(to)..to), if more { &[MORE] } else { &[] })
            });
            let found = client(&server).studies(&[]).unwrap();
            let got: Vec<String> = found.iter().map(|j| j.string(0x0020_000D).unwrap()).collect();
            let expected = if warn { total } else { cap.min(total) };
            let want: Vec<String> = (0..expected).map(|n| format!("1.2.3.{n}")).collect();
            prop_assert_eq!(got, want);
        }
    }
}
