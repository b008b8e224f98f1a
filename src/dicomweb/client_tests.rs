//! The client against a scripted HTTP server on loopback: paging, retries,
//! credentials, content negotiation, stalls, cut connections and redirects.
//! Interoperability with a real archive (Orthanc) is tested elsewhere.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::testserver::{BOUNDARY, Step, TestServer, closing, head, multipart_content_type, part, response};
use super::*;
use crate::dicomweb::{Auth, ClientOptions};

const PASSWORD: &str = "s3cret-Pa55";

/// The searches, collecting every result, as the tests look at all of them.
pub(super) trait CollectAll {
    fn studies(&self, params: &[(&str, &str)]) -> anyhow::Result<Vec<DicomJson>>;
    fn series(&self, study: &Uid, params: &[(&str, &str)]) -> anyhow::Result<Vec<DicomJson>>;
    fn instances(&self, study: &Uid, params: &[(&str, &str)]) -> anyhow::Result<Vec<DicomJson>>;
}

impl CollectAll for Client {
    fn studies(&self, params: &[(&str, &str)]) -> anyhow::Result<Vec<DicomJson>> {
        let mut all = Vec::new();
        self.search_studies(params, &mut |j| {
            all.push(j);
            Ok(())
        })?;
        Ok(all)
    }

    fn series(&self, study: &Uid, params: &[(&str, &str)]) -> anyhow::Result<Vec<DicomJson>> {
        let mut all = Vec::new();
        self.search_series(study, params, &mut |j| {
            all.push(j);
            Ok(())
        })?;
        Ok(all)
    }

    fn instances(&self, study: &Uid, params: &[(&str, &str)]) -> anyhow::Result<Vec<DicomJson>> {
        let mut all = Vec::new();
        self.search_instances(study, params, &mut |j| {
            all.push(j);
            Ok(())
        })?;
        Ok(all)
    }
}

fn config(server: &TestServer) -> ClientOptions {
    let mut cfg = ClientOptions::new(
        server.url("/dicom-web"),
        Auth::Basic {
            user: "alice".into(),
            password: PASSWORD.into(),
        },
    );
    cfg.retries = 2;
    cfg.backoff = Duration::from_millis(10);
    cfg.idle_timeout = Duration::from_secs(1);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg
}

pub(super) fn client(server: &TestServer) -> Client {
    Client::new(&config(server)).unwrap()
}

pub(super) fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

fn study(n: usize) -> String {
    format!(r#"{{"0020000D": {{"vr": "UI", "Value": ["1.2.3.{n}"]}}}}"#)
}

pub(super) fn json_page(range: std::ops::Range<usize>) -> Vec<u8> {
    format!("[{}]", range.map(study).collect::<Vec<_>>().join(",")).into_bytes()
}

pub(super) fn ok_json(body: &[u8], extra: &[(&str, &str)]) -> Vec<Step> {
    let mut headers = vec![("Content-Type", "application/dicom+json")];
    headers.extend_from_slice(extra);
    vec![Step::Send(response("200 OK", &headers, body))]
}

/// A WADO-RS answer with the given parts, as Orthanc sends it (no length, close-delimited).
fn multipart_answer(parts: &[&[u8]]) -> Vec<Step> {
    let ct = multipart_content_type();
    let mut bytes = head("200 OK", &[("Content-Type", &ct)]);
    for p in parts {
        bytes.extend(part(p));
    }
    bytes.extend(closing());
    vec![Step::Send(bytes)]
}

/// Runs a retrieve that collects every part's body.
fn retrieve_all(c: &Client, target: &Target) -> (Result<usize, RetrieveError>, Vec<Vec<u8>>) {
    let mut got = Vec::new();
    let r = c.retrieve(target, &mut |h: &PartHeaders, body: &mut dyn Read| {
        assert_eq!(h.content_type.as_deref(), Some("application/dicom"));
        let mut data = Vec::new();
        body.read_to_end(&mut data)?;
        got.push(data);
        Ok(())
    });
    (r, got)
}

#[test]
fn qido_pages_with_limit_and_offset() {
    let server = TestServer::start(|_, req| {
        let offset: usize = req.param("offset").unwrap().parse().unwrap();
        let limit: usize = req.param("limit").unwrap().parse().unwrap();
        ok_json(&json_page(offset..(offset + limit).min(450)), &[])
    });
    let c = client(&server);
    let found = c
        .studies(&[
            ("PatientName", "DOE^J*"),
            ("StudyDate", "20200101-"),
            ("includefield", "00081030"),
            ("includefield", "00080061"),
            ("PatientID", "A B&C"),
        ])
        .unwrap();
    assert_eq!(found.len(), 450);
    for (i, s) in found.iter().enumerate() {
        assert_eq!(s.uid(0x0020_000D).unwrap().to_string(), format!("1.2.3.{i}"));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs[0].target,
        "/dicom-web/studies?PatientName=DOE^J*&StudyDate=20200101-&includefield=00081030&includefield=00080061\
         &PatientID=A%20B%26C&limit=200&offset=0"
    );
    assert_eq!(reqs[2].param("offset"), Some("400"));
    assert_eq!(reqs[0].header("Accept"), Some("application/dicom+json"));
    // "alice:s3cret-Pa55" in base64.
    assert_eq!(reqs[0].header("Authorization"), Some("Basic YWxpY2U6czNjcmV0LVBhNTU="));
}

/// A search holds one page's bytes and one result at a time, not its results as maps, which
/// take twenty times the bytes: a watch searches its whole window every interval.
#[test]
fn qido_holds_a_page_at_a_time() {
    let server = TestServer::start(|_, req| {
        let offset: usize = req.param("offset").unwrap().parse().unwrap();
        ok_json(&crate::dicomweb::json::study_page(offset..(offset + 200).min(400)), &[])
    });
    let c = client(&server);
    let page_bytes = crate::dicomweb::json::study_page(0..200).len();
    let mut found = 0;
    let (result, held) = crate::testalloc::measure(|| {
        c.search_studies(&[], &mut |json| {
            assert!(json.string(0x0008_0050).is_some());
            found += 1;
            Ok(())
        })
    });
    result.unwrap();
    assert_eq!(found, 400);
    assert!(
        held.peak < 3 * page_bytes,
        "a search of two pages of {page_bytes} bytes held {} bytes at once",
        held.peak
    );
}

#[test]
fn qido_follows_the_warning_header() {
    // A server that caps pages at 100 whatever the limit, and says so.
    let server = TestServer::start(|_, req| {
        let offset: usize = req.param("offset").unwrap().parse().unwrap();
        let end = (offset + 100).min(250);
        let warning = [(
            "Warning",
            "299 orthanc: There are additional results that can be requested",
        )];
        ok_json(&json_page(offset..end), if end < 250 { &warning } else { &[] })
    });
    let found = client(&server).series(&uid("1.2"), &[]).unwrap();
    assert_eq!(found.len(), 250);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs[0]
            .target
            .starts_with("/dicom-web/studies/1.2/series?limit=200&offset=0")
    );
    assert_eq!(reqs[1].param("offset"), Some("100"));
}

#[test]
fn qido_empty_answers() {
    let server = TestServer::start(|i, _| match i {
        0 => ok_json(b"[]", &[]),
        1 => vec![Step::Send(response("204 No Content", &[], b""))],
        _ => ok_json(&json_page(0..3), &[]),
    });
    let c = client(&server);
    assert!(c.studies(&[("AccessionNumber", "X")]).unwrap().is_empty());
    assert!(c.instances(&uid("1.2"), &[]).unwrap().is_empty());
}

#[test]
fn qido_detects_a_server_ignoring_offset() {
    let server = TestServer::start(|_, _| ok_json(&json_page(0..200), &[]));
    let e = client(&server).studies(&[]).unwrap_err();
    assert!(format!("{e:#}").contains("ignore `offset`"), "{e:#}");
}

#[test]
fn qido_rejects_what_is_not_json() {
    let server = TestServer::start(|_, _| vec![Step::Send(response("200 OK", &[], b"<html>login</html>"))]);
    let e = format!("{:#}", client(&server).studies(&[]).unwrap_err());
    assert!(e.contains("not DICOM JSON"), "{e}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn retry_after_is_honoured() {
    let server = TestServer::start(|i, _| match i {
        0 => vec![Step::Send(response(
            "503 Service Unavailable",
            &[("Retry-After", "1")],
            b"busy",
        ))],
        _ => ok_json(&json_page(0..1), &[]),
    });
    let start = Instant::now();
    assert_eq!(client(&server).studies(&[]).unwrap().len(), 1);
    assert!(start.elapsed() >= Duration::from_millis(950), "{:?}", start.elapsed());
    assert_eq!(server.requests().len(), 2);
}

/// With no retry left, how long the cloud asked to wait goes with the
/// error, for a caller that tries again by itself; none when it did not ask.
#[test]
fn the_last_retry_after_goes_with_the_error() {
    let server = TestServer::start(|i, _| match i {
        0 => vec![Step::Send(response(
            "503 Service Unavailable",
            &[("Retry-After", "7")],
            b"busy",
        ))],
        _ => vec![Step::Send(response("503 Service Unavailable", &[], b"busy"))],
    });
    let once = Client::new(&ClientOptions {
        retries: 0,
        ..config(&server)
    })
    .unwrap();
    let e = once.studies(&[]).unwrap_err();
    assert_eq!(crate::dicomweb::retry_after(&e), Some(Duration::from_secs(7)), "{e:#}");
    assert!(format!("{e:#}").contains("503 Service Unavailable"), "{e:#}");
    let e = once.studies(&[]).unwrap_err();
    assert_eq!(crate::dicomweb::retry_after(&e), None, "{e:#}");
}

#[test]
fn exhausted_retries_say_what_and_what_to_do() {
    let server = TestServer::start(|_, _| vec![Step::Send(response("503 Service Unavailable", &[], b""))]);
    let c = client(&server);
    let e = retrieve_all(&c, &Target::Series(uid("1.2.3"), uid("4.5.6")))
        .0
        .unwrap_err();
    assert!(e.transient);
    assert_eq!(e.parts_seen, 0);
    assert_eq!(
        e.to_string(),
        format!(
            "the cloud at `http://{}/dicom-web` answered 503 Service Unavailable for `GET /studies/1.2.3/series/4.5.6` \
             after 3 attempts; it may be overloaded or down, try again later",
            server.addr
        )
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn refused_credentials_are_not_retried_and_not_shown() {
    let server = TestServer::start(|_, _| vec![Step::Send(response("401 Unauthorized", &[], b"no"))]);
    let e = retrieve_all(&client(&server), &Target::Study(uid("1.2")))
        .0
        .unwrap_err();
    assert!(!e.transient);
    let msg = e.to_string();
    assert!(msg.contains("refused the credentials (HTTP 401)"), "{msg}");
    assert!(
        msg.contains("check RETRIEVER_USER/RETRIEVER_PASSWORD or RETRIEVER_TOKEN"),
        "{msg}"
    );
    assert!(!msg.contains(PASSWORD) && !format!("{e:?}").contains(PASSWORD));
    assert_eq!(server.requests().len(), 1);

    let mut cfg = config(&server);
    cfg.auth = Auth::Bearer {
        token: "tok-123".into(),
    };
    let e = Client::new(&cfg).unwrap().studies(&[]).unwrap_err();
    assert!(!format!("{e:#}").contains("tok-123"));
    assert_eq!(server.requests()[1].header("Authorization"), Some("Bearer tok-123"));
}

#[test]
fn not_found_is_not_retried() {
    let server = TestServer::start(|_, _| vec![Step::Send(response("404 Not Found", &[], b"Unknown study"))]);
    let e = retrieve_all(&client(&server), &Target::Study(uid("1.2")))
        .0
        .unwrap_err();
    assert!(!e.transient);
    assert!(
        e.to_string()
            .contains("answered 404 Not Found for `GET /studies/1.2` (Unknown study)"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn wado_asks_for_the_original_bytes_by_default() {
    let server = TestServer::start(|_, _| multipart_answer(&[b"one", b"two"]));
    let (r, got) = retrieve_all(&client(&server), &Target::Instance(uid("1"), uid("2"), uid("3")));
    assert_eq!(r.unwrap(), 2);
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    let reqs = server.requests();
    assert_eq!(reqs[0].target, "/dicom-web/studies/1/series/2/instances/3");
    assert_eq!(
        reqs[0].header("Accept"),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*")
    );
}

#[test]
fn not_acceptable_falls_back_to_plain_multipart() {
    let server = TestServer::start(|i, _| match i {
        0 => vec![Step::Send(response("406 Not Acceptable", &[], b""))],
        _ => multipart_answer(&[b"dicom"]),
    });
    let mut cfg = config(&server);
    cfg.transfer_syntax = Some("1.2.840.10008.1.2.1".into());
    let (r, got) = retrieve_all(&Client::new(&cfg).unwrap(), &Target::Study(uid("1.2")));
    assert_eq!(r.unwrap(), 1);
    assert_eq!(got, vec![b"dicom".to_vec()]);
    let reqs = server.requests();
    assert_eq!(
        reqs[0].header("Accept"),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1")
    );
    assert_eq!(
        reqs[1].header("Accept"),
        Some("multipart/related; type=\"application/dicom\"")
    );
}

#[test]
fn a_stalled_body_fails_after_the_idle_timeout() {
    let server = TestServer::start(|_, _| {
        let ct = multipart_content_type();
        let mut bytes = head("200 OK", &[("Content-Type", &ct)]);
        bytes.extend(part(b"first"));
        let mut second = part(&[9u8; 1000]);
        second.truncate(second.len() - 500);
        bytes.extend(second);
        vec![Step::Send(bytes), Step::Sleep(Duration::from_secs(4))]
    });
    let start = Instant::now();
    let (r, got) = retrieve_all(&client(&server), &Target::Study(uid("1.2")));
    let e = r.unwrap_err();
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    // The server still holds the body back (for 4 s): the idle timeout ended the download.
    assert_eq!(
        server.closed(),
        0,
        "the server ended the body before the client gave up"
    );
    assert!(e.transient);
    assert_eq!(e.parts_seen, 1);
    assert_eq!(got, vec![b"first".to_vec()]);
    assert_eq!(
        e.to_string(),
        format!(
            "no data from the cloud for 1 s on `GET /studies/1.2` at `http://{}/dicom-web`, in part 2; \
             the cloud or the network may be stalled; try again later",
            server.addr
        )
    );
    // A part had been handed out: no retry, the caller resumes.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_stall_before_the_answer_is_retried_then_reported() {
    let server = TestServer::start(|_, _| vec![Step::Sleep(Duration::from_secs(3))]);
    let mut cfg = config(&server);
    cfg.retries = 1;
    let e = Client::new(&cfg).unwrap().studies(&[]).unwrap_err();
    // The server keeps each connection silent for 3 s: both attempts ended by the client's
    // idle timeout, not by the server closing.
    assert_eq!(server.closed(), 0, "the client waited for the server to give up");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("no data from the cloud for 1 s on `GET /studies?limit=200&offset=0`"),
        "{msg}"
    );
    assert!(msg.contains("after 2 attempts"), "{msg}");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_cut_in_the_middle_of_a_part_is_transient() {
    let server = TestServer::start(|_, _| {
        let ct = multipart_content_type();
        let mut bytes = head("200 OK", &[("Content-Type", &ct)]);
        bytes.extend(part(b"first"));
        let mut second = part(&[9u8; 1000]);
        second.truncate(second.len() - 500);
        bytes.extend(second);
        vec![Step::Send(bytes)]
    });
    let (r, got) = retrieve_all(&client(&server), &Target::Study(uid("1.2")));
    let e = r.unwrap_err();
    assert!(e.transient);
    assert_eq!(e.parts_seen, 1);
    assert_eq!(got.len(), 1);
    assert!(
        e.to_string().contains("connection closed in the middle of part 2"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_cut_before_the_first_part_is_retried() {
    let server = TestServer::start(|i, _| match i {
        0 => {
            let ct = multipart_content_type();
            let mut bytes = head("200 OK", &[("Content-Type", &ct)]);
            bytes.extend_from_slice(format!("\r\n--{BOUNDARY}\r\nContent-Ty").as_bytes());
            vec![Step::Send(bytes)]
        }
        _ => multipart_answer(&[b"whole"]),
    });
    let (r, got) = retrieve_all(&client(&server), &Target::Study(uid("1.2")));
    assert_eq!(r.unwrap(), 1);
    assert_eq!(got, vec![b"whole".to_vec()]);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_missing_closing_boundary_is_transient() {
    let server = TestServer::start(|_, _| {
        let ct = multipart_content_type();
        let mut bytes = head("200 OK", &[("Content-Type", &ct)]);
        bytes.extend(part(b"first"));
        vec![Step::Send(bytes)]
    });
    let (r, got) = retrieve_all(&client(&server), &Target::Study(uid("1.2")));
    let e = r.unwrap_err();
    assert!(e.transient);
    assert_eq!((e.parts_seen, got.len()), (1, 1));
}

#[test]
fn the_callbacks_error_is_passed_through() {
    let server = TestServer::start(|_, _| multipart_answer(&[b"a", b"b"]));
    let c = client(&server);
    let mut calls = 0;
    let e = c
        .retrieve(&Target::Study(uid("1.2")), &mut |_, _| {
            calls += 1;
            if calls == 2 {
                Err(anyhow::anyhow!("disk full"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(!e.transient);
    assert_eq!(e.parts_seen, 1);
    assert_eq!(e.to_string(), "disk full");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn an_answer_that_is_not_multipart_is_refused() {
    let server = TestServer::start(|_, _| ok_json(b"[]", &[]));
    let e = retrieve_all(&client(&server), &Target::Study(uid("1.2")))
        .0
        .unwrap_err();
    assert!(!e.transient);
    assert!(e.to_string().contains("instead of multipart/related"), "{e}");
    let server = TestServer::start(|_, _| {
        let ct = multipart_content_type();
        let mut bytes = head("200 OK", &[("Content-Type", &ct)]);
        bytes.extend_from_slice(b"<html>an error page from a proxy</html>");
        vec![Step::Send(bytes)]
    });
    let e = retrieve_all(&client(&server), &Target::Study(uid("1.2")))
        .0
        .unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.to_string().contains("cannot be read"), "{e}");
}

#[test]
fn redirects_stay_within_the_origin() {
    let elsewhere = TestServer::start(|_, _| ok_json(b"[]", &[]));
    let target = elsewhere.url("/dicom-web/studies").to_string();
    let server = TestServer::start(move |_, req| {
        if req.target.starts_with("/moved") {
            ok_json(&json_page(0..1), &[])
        } else if req.target.starts_with("/dicom-web/studies/9") {
            vec![Step::Send(response("302 Found", &[("Location", "/moved/here")], b""))]
        } else {
            vec![Step::Send(response("302 Found", &[("Location", &target)], b""))]
        }
    });
    let c = client(&server);
    let e = format!("{:#}", c.studies(&[]).unwrap_err());
    assert!(e.contains("another origin"), "{e}");
    assert!(
        e.contains(&format!("to `http://{}/dicom-web/studies`", elsewhere.addr)),
        "{e}"
    );
    assert!(elsewhere.requests().is_empty());
    assert_eq!(server.requests().len(), 1, "not retried");
    // Within the origin, followed, with the credentials.
    assert_eq!(c.series(&uid("9"), &[("limit", "5")]).unwrap().len(), 1);
    let reqs = server.requests();
    assert_eq!(reqs.last().unwrap().target, "/moved/here");
    assert!(reqs.last().unwrap().header("Authorization").is_some());
}

#[test]
fn connection_refused_is_transient_and_retried() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = ClientOptions::new(
        reqwest::Url::parse(&format!("http://127.0.0.1:{port}/dicom-web")).unwrap(),
        Auth::None,
    );
    cfg.retries = 1;
    cfg.backoff = Duration::from_millis(1);
    let e = retrieve_all(&Client::new(&cfg).unwrap(), &Target::Study(uid("1.2")))
        .0
        .unwrap_err();
    assert!(e.transient);
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("could not connect to the cloud at `http://127.0.0.1:{port}/dicom-web` for `GET /studies/1.2` after 2 attempts (")), "{msg}");
    assert!(
        msg.ends_with("; check the network, any proxy settings and the cloud URL"),
        "{msg}"
    );
}

/// A kept-alive connection the server closes while the client is idle (Orthanc does after
/// 1 s): the next request finds it closed and goes again at once on a new connection, without
/// using up a retry.
#[test]
fn a_kept_alive_connection_closed_by_the_server_is_replaced_at_once() {
    let server = TestServer::start(|_, _| {
        let body = json_page(0..1);
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        // Kept alive for a moment, then closed while the client has it in its pool.
        vec![Step::Send(answer), Step::Sleep(Duration::from_millis(100))]
    });
    let mut cfg = config(&server);
    cfg.retries = 0;
    let c = Client::new(&cfg).unwrap();
    assert_eq!(c.studies(&[]).unwrap().len(), 1);
    server.wait_closed(1);
    let again = c.studies(&[]);
    assert_eq!(again.map(|r| r.len()).map_err(|e| format!("{e:#}")), Ok(1));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn parallel_use_from_many_threads() {
    let server = TestServer::start(|_, req| {
        let n: usize = req.target.rsplit_once("1.").unwrap().1.parse().unwrap();
        multipart_answer(&[format!("part of {n}").as_bytes()])
    });
    let c = client(&server);
    let seen = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for n in 1..=8 {
            let c = c.clone();
            let seen = seen.clone();
            s.spawn(move || {
                let (r, got) = retrieve_all(&c, &Target::Study(uid(&format!("1.{n}"))));
                assert_eq!(r.unwrap(), 1);
                seen.lock().unwrap().push(String::from_utf8(got[0].clone()).unwrap());
            });
        }
    });
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, (1..=8).map(|n| format!("part of {n}")).collect::<Vec<_>>());
}

#[test]
fn credentials_in_the_url_are_refused_without_showing_them() {
    let url = reqwest::Url::parse("https://bob:hunter2@cloud.example.org/dicom-web").unwrap();
    let e = Client::new(&ClientOptions::new(url, Auth::None)).unwrap_err();
    assert!(!format!("{e:#}").contains("hunter2"));
}

/// Two self-signed test CAs (certificates only; the keys were thrown away).
const TWO_CAS: &str = "\
-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIUJwBbXiKEEv9zmPhWYxGRKbsx0vkwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTcmV0cmlldmVyIHRlc3QgQ0EgMTAgFw0yNjExMjcyMjMwMzJa
GA8yMTI2MTEwMzIyMzAzMlowHjEcMBoGA1UEAwwTcmV0cmlldmVyIHRlc3QgQ0Eg
MTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDITPELc7Aj45ZgqRgrPA67XlClp
hB+1+n3XpHFbrat0MlEVnD9V7gOUQd28/kOI6hTMSqfVCPZ7M38jlU97rkyjUzBR
MB0GA1UdDgQWBBQdy7Ml0m3QUnif7GLlThU/U1Jv7TAfBgNVHSMEGDAWgBQdy7Ml
0m3QUnif7GLlThU/U1Jv7TAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA
MEUCIAvW/bkwEd2OPmneAuRfxMptF3n7nFvn2evzwkR/5MsuAiEAxO9zM1BHM7e6
HydeXyR0/ekoekXTN2Cq7zD33NYOCBU=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIUei3PRAv3mXMKAuiAuG15d9EF7mUwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTcmV0cmlldmVyIHRlc3QgQ0EgMjAgFw0yNjExMjcyMjMwMzJa
GA8yMTI2MTEwMzIyMzAzMlowHjEcMBoGA1UEAwwTcmV0cmlldmVyIHRlc3QgQ0Eg
MjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKYaw1g5DZdsOnq/3SziIPtcndEm
rLssXAaBQgSUExSr0GGh3Ny/w0a+OzJNQckKObK9mEZFWcaeCnNX6qJsrm2jUzBR
MB0GA1UdDgQWBBQrt8Wzft3tckVPYqNVjWES7VBDVDAfBgNVHSMEGDAWgBQrt8Wz
ft3tckVPYqNVjWES7VBDVDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA
MEUCIAGdAK29dr05fhNO/zYi+ITPEyOR5GYdvfvASBXghxR1AiEA2N/N8kvL816G
Dgn7nOz/2oyrQ7Q/MOq7hnh1xxdL7yU=
-----END CERTIFICATE-----
";

#[test]
fn a_ca_bundle_with_several_certificates_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cas.pem");
    std::fs::write(&path, TWO_CAS).unwrap();
    let mut cfg = ClientOptions::new(
        reqwest::Url::parse("https://cloud.example.org/dicom-web").unwrap(),
        Auth::None,
    );
    cfg.ca_bundle = Some(path);
    Client::new(&cfg).unwrap();
}

#[test]
fn a_bad_ca_bundle_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    let mut cfg = ClientOptions::new(
        reqwest::Url::parse("https://cloud.example.org/dicom-web").unwrap(),
        Auth::None,
    );
    cfg.ca_bundle = Some(path.clone());
    let e = format!("{:#}", Client::new(&cfg).unwrap_err());
    assert!(
        e.contains("failed to read the CA bundle") && e.contains("ca.pem"),
        "{e}"
    );
    std::fs::write(&path, "not a certificate").unwrap();
    let e = format!("{:#}", Client::new(&cfg).unwrap_err());
    assert!(e.contains("ca.pem") && e.contains("no PEM certificate"), "{e}");
    // Looks like PEM, is not a certificate inside.
    std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let e = format!("{:#}", Client::new(&cfg).unwrap_err());
    assert!(e.contains("ca.pem"), "{e}");
}

/// Each stall costs a whole idle timeout: a search is asked once more after
/// one, whatever `--retries` allows, and the error says it stalled.
#[test]
fn a_search_that_stalls_is_asked_twice_whatever_the_retries() {
    let server = TestServer::start(|_, _| vec![Step::Sleep(Duration::from_secs(3))]);
    let mut cfg = config(&server);
    cfg.retries = 5;
    let e = Client::new(&cfg).unwrap().studies(&[]).unwrap_err();
    assert!(super::is_stalled(&e), "{e:#}");
    assert!(format!("{e:#}").contains("after 2 attempts"), "{e:#}");
    assert_eq!(server.requests().len(), 2);
}

/// A retrieve that stalls before its first part goes back to the caller at
/// once, marked as a stall: fetch counts the stalls of a study's downloads.
#[test]
fn a_retrieve_that_stalls_before_its_first_part_is_handed_back_at_once() {
    let server = TestServer::start(|_, _| vec![Step::Sleep(Duration::from_secs(3))]);
    let (r, got) = retrieve_all(&client(&server), &Target::Study(uid("1.2")));
    let e = r.unwrap_err();
    assert!(e.transient && super::is_stalled(&e.error), "{e:?}");
    assert_eq!((e.parts_seen, got.len()), (0, 0));
    assert_eq!(server.requests().len(), 1);
}

/// A 503 is still retried as `--retries` says: only stalls are limited.
#[test]
fn an_unavailable_cloud_is_not_a_stall() {
    let server = TestServer::start(|_, _| {
        vec![Step::Send(response(
            "503 Service Unavailable",
            &[("Retry-After", "0")],
            b"",
        ))]
    });
    let e = client(&server).studies(&[]).unwrap_err();
    assert!(!super::is_stalled(&e), "{e:#}");
    assert_eq!(server.requests().len(), 3);
}
