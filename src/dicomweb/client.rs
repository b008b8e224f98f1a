//! The HTTP side of DICOMweb: one client, shared by every thread, that knows
//! the cloud's base URL, its credentials, and how to turn each kind of
//! failure into a retry or into an error a person can act on.
//!
//! Four decisions shape it:
//! - Requests and their answers are read on threads of their own (see
//!   `http.rs`), so that Ctrl-C ends any wait for the cloud at once.
//! - Timeouts are idle timeouts ("no byte for N s"), never a deadline for a
//!   whole transfer: a 400 MB CT over a slow link legitimately takes minutes
//!   (Weasis #899 died on a 15 s total deadline).
//! - A retrieve is retried only until its first part has been handed out.
//!   After that the caller holds complete instances and resumes with what is
//!   missing, which is cheaper and never hands the same part out twice.
//! - Redirects are followed only within the cloud's own origin, so the
//!   credentials and the patient data never go anywhere else.

use std::error::Error as StdError;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WARNING};
use reqwest::{StatusCode, Url, redirect};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::http::{self, Lanes, Response, SendError, Settings, find_source};
use super::identity::{self, Refusal};
use super::json::{Identities, Page, Seen};
use super::multipart::{Multipart, MultipartError};
use super::options::{Proxy, ProxyOrigin};
use super::retry::{backoff, is_transient_status, parse_retry_after};
use super::token::{Fetch, Lease};
use super::{Auth, ClientOptions, Tokens};
use super::{DicomJson, PartHeaders, RetrieveError, Target, query};
use crate::interrupt::{self, Interrupted};
use crate::uid::Uid;

/// Results asked for per QIDO-RS page. Large enough to make paging rare,
/// small enough for servers that cap `limit` (they say so in a `Warning`).
const PAGE_LIMIT: usize = 200;
/// A safety net against a server that pages forever (small in tests, so
/// that reaching it is quick).
const MAX_PAGES: usize = if cfg!(test) { 50 } else { 10_000 };
/// Results of one search, at most: more than any study has instances.
const MAX_RESULTS: usize = if cfg!(test) { 5_000 } else { 2_000_000 };
/// The attribute that identifies a result at each QIDO-RS level.
const STUDY_UID: u32 = 0x0020_000D;
const SERIES_UID: u32 = 0x0020_000E;
const SOP_INSTANCE_UID: u32 = 0x0008_0018;
/// Largest QIDO-RS answer read into memory (one page of JSON).
const MAX_QIDO_BODY: u64 = 256 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
/// How often a request whose answer stalled (nothing for the idle timeout)
/// is asked again at once. A cloud that stalls twice in a row is not coming
/// back soon, and each stall costs a whole idle timeout: the `--retries`
/// budget is for quick failures (5xx, refused connections), and would make a
/// dead transfer last many minutes.
const STALL_RETRIES: u32 = 1;

const QIDO_ACCEPT: &str = "application/dicom+json";
/// The fallback after a 406. Plain `application/dicom` is not an option:
/// Orthanc answers a study retrieve asking for it with 400.
const WADO_ACCEPT_PLAIN: &str = "multipart/related; type=\"application/dicom\"";

/// A DICOMweb client for one cloud. Cheap to clone; clones share the
/// connection pool, and all methods can be called from many threads at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Lanes,
    /// For the OAuth2 token endpoint, when there is one.
    token_lanes: Option<Lanes>,
    base: Url,
    auth: Auth,
    idle_timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    backoff: Duration,
    transfer_syntax: Option<String>,
    /// Our client certificate's file, for the messages about it.
    client_cert: Option<PathBuf>,
    study_fields: Vec<u32>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(cfg: &ClientOptions) -> Result<Client> {
        let base = cfg.base.clone();
        if !base.username().is_empty() || base.password().is_some() {
            // Not printed: the URL itself holds the secret.
            bail!(
                "the cloud URL contains a user name or password; remove them from the URL and set \
                 RETRIEVER_USER/RETRIEVER_PASSWORD or RETRIEVER_TOKEN instead"
            );
        }
        let mut roots = crate::trust::system_roots();
        if let Some(path) = &cfg.ca_bundle {
            let pem =
                std::fs::read(path).with_context(|| format!("failed to read the CA bundle `{}`", path.display()))?;
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("the CA bundle `{}` is not a valid PEM file", path.display()))?;
            if certificates.is_empty() {
                bail!("the CA bundle `{}` contains no PEM certificate", path.display());
            }
            for certificate in certificates {
                roots.add(certificate).with_context(|| {
                    format!(
                        "the CA bundle `{}` holds a certificate that cannot be trusted as a CA; \
                         give the PEM certificate of the authority that issued the cloud's",
                        path.display()
                    )
                })?;
            }
        }
        let identity = cfg.client_identity.as_ref().map(identity::load).transpose()?;
        let settings = Settings {
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            tls: Arc::new(http::tls_config(roots, identity)?),
            use_proxy: cfg.may_use_proxy(),
        };
        let token_lanes = token_lanes(&cfg.auth, &settings)?;
        let origin = base.clone();
        let lanes = Lanes::new(settings, move || redirect_policy(&origin)).with_context(|| match &cfg.ca_bundle {
            Some(path) => format!("failed to set up HTTPS with the CA bundle `{}`", path.display()),
            None => "failed to set up the HTTPS client".to_string(),
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                lanes,
                token_lanes,
                base,
                auth: cfg.auth.clone(),
                idle_timeout: cfg.idle_timeout,
                connect_timeout: cfg.connect_timeout,
                retries: cfg.retries,
                backoff: cfg.backoff,
                transfer_syntax: cfg.transfer_syntax.clone(),
                client_cert: cfg.client_identity.as_ref().map(|id| id.cert.clone()),
                study_fields: cfg.study_fields.clone(),
            }),
        })
    }

    pub fn base(&self) -> &Url {
        &self.inner.base
    }

    /// The attributes every study search asks for besides retriever's own
    /// (see [`ClientOptions::study_fields`]).
    pub fn study_fields(&self) -> &[u32] {
        &self.inner.study_fields
    }

    /// How long the cloud may send nothing before a request counts as stalled.
    pub fn idle_timeout(&self) -> Duration {
        self.inner.idle_timeout
    }

    /// QIDO-RS `GET {base}/studies?...`, all pages (see [`Client::search`]):
    /// each study found is handed to `each` once.
    pub fn search_studies(&self, params: &[(&str, &str)], each: &mut dyn FnMut(DicomJson) -> Result<()>) -> Result<()> {
        self.search("/studies".to_string(), STUDY_UID, params, each)
    }

    /// QIDO-RS `GET {base}/studies/{study}/series?...`, all pages.
    pub fn search_series(
        &self,
        study: &Uid,
        params: &[(&str, &str)],
        each: &mut dyn FnMut(DicomJson) -> Result<()>,
    ) -> Result<()> {
        self.search(format!("/studies/{study}/series"), SERIES_UID, params, each)
    }

    /// QIDO-RS `GET {base}/studies/{study}/instances?...`, all pages.
    pub fn search_instances(
        &self,
        study: &Uid,
        params: &[(&str, &str)],
        each: &mut dyn FnMut(DicomJson) -> Result<()>,
    ) -> Result<()> {
        self.search(format!("/studies/{study}/instances"), SOP_INSTANCE_UID, params, each)
    }

    /// WADO-RS retrieve of a study, a series or an instance, streamed.
    ///
    /// For each part of the multipart response, `on_part` gets the part's
    /// headers and a reader over exactly that part's body; whatever it leaves
    /// unread is skipped. Nothing is held in memory beyond one buffer.
    /// Returns the number of parts, all of which `on_part` accepted.
    ///
    /// Failures before the first part are retried (with backoff), except a
    /// stall; after it, a cut connection or a stall is returned as a
    /// transient error with `parts_seen` set, and the caller asks again for
    /// what is missing. A stall is returned at once so that the caller, who
    /// sees all the downloads of a study, decides when the cloud has stalled
    /// too often ([`super::is_stalled`]).
    pub fn retrieve(
        &self,
        target: &Target,
        on_part: &mut dyn FnMut(&PartHeaders, &mut dyn Read) -> Result<()>,
    ) -> Result<usize, RetrieveError> {
        let path = target.path();
        let what = Request::new(&self.inner.base, path, String::new());
        let mut accept = match &self.inner.transfer_syntax {
            Some(ts) => format!("{WADO_ACCEPT_PLAIN}; transfer-syntax={ts}"),
            None => format!("{WADO_ACCEPT_PLAIN}; transfer-syntax=*"),
        };
        let mut fell_back = false;
        let mut completed = 0usize;
        let result = self.retrying(0, || {
            let response = loop {
                let response = self.send(&what, &accept)?;
                // Not every archive can transcode, or send the original
                // syntax as asked: try once more letting it choose.
                if response.status() == StatusCode::NOT_ACCEPTABLE && !fell_back {
                    fell_back = true;
                    accept = WADO_ACCEPT_PLAIN.to_string();
                    continue;
                }
                break self.check_status(&what, response, &accept)?;
            };
            let boundary = multipart_boundary(response.headers()).map_err(|why| {
                Failure::permanent(
                    format!("the cloud at `{}` answered {what} with {why}", what.base),
                    "it does not seem to be a DICOMweb WADO-RS service; check the cloud URL",
                )
            })?;
            let mut parts = Multipart::new(response, &boundary);
            let mut handed_out = false;
            loop {
                match parts.next_part() {
                    Ok(None) => return Ok(completed),
                    Ok(Some((headers, mut body))) => {
                        handed_out = true;
                        if let Err(e) = on_part(&headers, &mut body) {
                            // The callback may have failed only because the
                            // connection did: then that is the error to report.
                            return Err(match parts.take_failure() {
                                Some(f) => self.multipart_failure(&what, f, false),
                                None => Failure::callback(e),
                            });
                        }
                        completed += 1;
                    }
                    Err(f) => return Err(self.multipart_failure(&what, f, !handed_out)),
                }
            }
        });
        result.map_err(|f| RetrieveError {
            transient: f.transient,
            parts_seen: completed,
            error: f.into_error(),
        })
    }

    // --- QIDO-RS ------------------------------------------------------------

    /// The one pager of QIDO-RS: asks for pages of [`PAGE_LIMIT`] results
    /// with a growing `offset` until the server says there is no more, and
    /// hands each result to `each` as it comes, so that the caller keeps
    /// only what it needs of it.
    ///
    /// A page ends the search when it is shorter than asked (or longer: the
    /// server ignored `limit` and sent all) and no `Warning` says more
    /// results exist; servers that cap pages below the limit say so in that
    /// header, and are asked on from the results so far. A result is
    /// identified by its `id_tag` UID (or, lacking one, by all of it): one
    /// already handed out is not handed out again.
    ///
    /// A later page with nothing new is one of two things. The same results
    /// as the first page: the server ignores `offset`, and would be asked
    /// forever, so that is an error. Other results already met: the listing
    /// moved under the pager (studies arrive or leave while it pages, and
    /// servers such as Orthanc list unsorted), so results may also have
    /// moved onto pages already read and been missed; the search starts
    /// again once from offset 0, handing out only what is new. Moving again
    /// is an error, as the listing cannot be completed while it keeps
    /// changing. Pages and results are capped, and only the identities (24
    /// bytes a result) are kept here.
    fn search(
        &self,
        path: String,
        id_tag: u32,
        params: &[(&str, &str)],
        each: &mut dyn FnMut(DicomJson) -> Result<()>,
    ) -> Result<()> {
        let mut seen = Identities::default();
        let mut offset = 0usize;
        // The identities on this pass's first page, sorted.
        let mut first_page = Vec::new();
        let mut started_again = false;
        for _ in 0..MAX_PAGES {
            let limit = PAGE_LIMIT.to_string();
            let offset_text = offset.to_string();
            let mut paged = params.to_vec();
            paged.push(("limit", &limit));
            paged.push(("offset", &offset_text));
            let what = Request::new(&self.inner.base, path.clone(), query::encode(&paged));
            let (page, more) = self.qido_page(&what)?;
            let received = page.as_ref().map_or(0, Page::results);
            let mut ids = Vec::new();
            let mut new_in_pass = 0usize;
            let mut take = |result: DicomJson| {
                let id = seen.identity(&result, id_tag);
                ids.push(id);
                match seen.see(id) {
                    Seen::ThisPass => return Ok(()),
                    Seen::EarlierPass => {
                        new_in_pass += 1;
                        return Ok(());
                    }
                    Seen::New => new_in_pass += 1,
                }
                if seen.len() > MAX_RESULTS {
                    bail!(
                        "the cloud at `{}` answered `GET {path}` with more than {MAX_RESULTS} results; \
                         narrow the search",
                        self.inner.base
                    );
                }
                each(result)
            };
            if let Some(page) = &page {
                page.each(&mut take, &|e| self.not_dicom_json(&what, &e).into_error())?;
            }
            if received == 0 {
                return Ok(());
            }
            ids.sort_unstable();
            ids.dedup();
            if offset == 0 {
                first_page = ids;
            } else if new_in_pass == 0 {
                if ids == first_page {
                    bail!(
                        "the cloud at `{}` answered {what} with the results of the first page again; it seems \
                         to ignore `offset`, so the listing cannot be completed; ask the cloud's administrators \
                         about QIDO-RS paging",
                        self.inner.base
                    );
                }
                if started_again {
                    bail!(
                        "the cloud at `{}` answered {what} with only results of earlier pages, also after \
                         starting the listing again: its results keep changing while they are paged (studies \
                         arriving or leaving), so the listing cannot be completed now; try again (this is not \
                         the cloud ignoring `offset`)",
                        self.inner.base
                    );
                }
                started_again = true;
                seen.start_again();
                offset = 0;
                continue;
            }
            offset += received;
            if received != PAGE_LIMIT && !more {
                return Ok(());
            }
        }
        bail!(
            "the cloud at `{}` kept sending results for `GET {path}` after {MAX_PAGES} pages; giving up; \
             narrow the search, or ask the cloud's administrators about its QIDO-RS paging",
            self.inner.base
        )
    }

    /// One QIDO-RS request: its results, and whether the server's `Warning`
    /// header said that more can be asked for.
    /// Its results are read one at a time from the page (see [`Page`]).
    fn qido_page(&self, what: &Request) -> Result<(Option<Page>, bool)> {
        self.with_retries(|| {
            let response = self.send(what, QIDO_ACCEPT)?;
            let response = self.check_status(what, response, QIDO_ACCEPT)?;
            let more = response.headers().get_all(WARNING).iter().any(|v| {
                let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
                v.contains("additional results") || v.contains("more results")
            });
            if response.status() == StatusCode::NO_CONTENT {
                return Ok((None, more));
            }
            let mut body = Vec::new();
            response
                .take(MAX_QIDO_BODY + 1)
                .read_to_end(&mut body)
                .map_err(|e| self.io_failure(what, &e, None))?;
            if body.len() as u64 > MAX_QIDO_BODY {
                return Err(Failure::permanent(
                    format!(
                        "the cloud at `{}` answered {what} with more than {} MiB of JSON",
                        what.base,
                        MAX_QIDO_BODY >> 20
                    ),
                    "narrow the search",
                ));
            }
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok((None, more));
            }
            let page = Page::parse(body).map_err(|e| self.not_dicom_json(what, &e))?;
            Ok((Some(page), more))
        })
        .map_err(Failure::into_error)
    }

    fn not_dicom_json(&self, what: &Request, e: &serde_json::Error) -> Failure {
        Failure::permanent(
            format!(
                "the cloud at `{}` answered {what} with something that is not DICOM JSON ({e})",
                what.base
            ),
            "it does not seem to be a DICOMweb QIDO-RS service; check the cloud URL",
        )
    }

    // --- plumbing ---------------------------------------------------------

    /// Runs `attempt` until it succeeds, fails for good, or the retries are
    /// used up, waiting between tries as the server asks or with backoff.
    /// Ctrl-C ends a wait at once, with `Interrupted`.
    fn with_retries<T>(&self, attempt: impl FnMut() -> Result<T, Failure>) -> Result<T, Failure> {
        self.retrying(STALL_RETRIES, attempt)
    }

    /// [`Self::with_retries`], where only `stall_retries` of the retries may
    /// follow a stall.
    fn retrying<T>(&self, stall_retries: u32, mut attempt: impl FnMut() -> Result<T, Failure>) -> Result<T, Failure> {
        let mut tries = 0u32;
        let mut stalls = 0u32;
        loop {
            tries += 1;
            let outcome = attempt();
            if outcome.as_ref().is_err_and(|f| f.stalled) {
                stalls += 1;
            }
            match outcome {
                Ok(v) => return Ok(v),
                Err(f) if f.retryable && tries <= self.inner.retries && (!f.stalled || stalls <= stall_retries) => {
                    let wait = f.retry_after.unwrap_or_else(|| backoff(self.inner.backoff, tries - 1));
                    interrupt::sleep(wait).map_err(Failure::callback)?;
                }
                Err(mut f) => {
                    f.attempts = tries;
                    return Err(f);
                }
            }
        }
    }

    /// Sends the request with the credentials. A renewed token the cloud
    /// refuses (revoked, or expired early) is renewed once and the request
    /// sent once more before the refusal counts.
    fn send(&self, what: &Request, accept: &str) -> Result<Response<'_>, Failure> {
        let Auth::Renewed(tokens) = &self.inner.auth else {
            return self.send_as(what, accept, None);
        };
        let lease = self.lease(tokens)?;
        let response = self.send_as(what, accept, Some(&lease))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        drop(response);
        tokens.refused(&lease);
        let lease = self.lease(tokens)?;
        self.send_as(what, accept, Some(&lease))
    }

    /// A token from `tokens`, renewed if due. Its failures were retried
    /// already, so they end the request as they are.
    fn lease(&self, tokens: &Tokens) -> Result<Lease, Failure> {
        let fetch = Fetch {
            lanes: self.inner.token_lanes.as_ref(),
            retries: self.inner.retries,
            backoff: self.inner.backoff,
        };
        tokens.get(&fetch).map_err(Failure::callback)
    }

    fn send_as(&self, what: &Request, accept: &str, lease: Option<&Lease>) -> Result<Response<'_>, Failure> {
        let sent = self.inner.lanes.get(what.url.clone(), |request| {
            let request = request.header(ACCEPT, accept);
            match (&self.inner.auth, lease) {
                (Auth::Basic { user, password }, _) => request.basic_auth(user, Some(password)),
                (Auth::Bearer { token }, _) => request.bearer_auth(token),
                (Auth::Renewed(_), Some(lease)) => request.bearer_auth(&lease.token),
                (Auth::None | Auth::Renewed(_), _) => request,
            }
        });
        sent.map_err(|e| match e {
            SendError::Http(e) => self.reqwest_failure(what, e),
            SendError::Interrupted => Failure::callback(Interrupted.into()),
            SendError::Setup(e) => Failure::transient_with(
                format!(
                    "could not set up a connection to the cloud at `{}` for {what}",
                    what.base
                ),
                format!("{e:#}"),
                "the computer may be short of threads or open files; try again later",
            ),
        })
    }

    /// Passes a success through; turns anything else into a failure.
    fn check_status<'c>(&self, what: &Request, response: Response<'c>, accept: &str) -> Result<Response<'c>, Failure> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let base = &what.base;
        let status_text = status_text(status);
        if status == StatusCode::UNAUTHORIZED && matches!(self.inner.auth, Auth::None) {
            return Err(Failure::permanent(
                format!("the cloud at `{base}` asks for credentials (HTTP 401) for {what}, and none were given"),
                "set RETRIEVER_USER/RETRIEVER_PASSWORD or RETRIEVER_TOKEN",
            )
            .login_refused());
        }
        if let Auth::Renewed(tokens) = &self.inner.auth
            && (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
        {
            let (renewed, hint) = match tokens.token_url() {
                Some(_) => (
                    "an access token from `oauth_token_url`",
                    "check that the OAuth2 client may read this cloud, and `oauth_scope` and `oauth_audience`",
                ),
                None => (
                    "the access token of `token_command`",
                    "check that the account the token command logs in with may read this cloud",
                ),
            };
            let again = if status == StatusCode::UNAUTHORIZED {
                ", also once renewed"
            } else {
                ""
            };
            return Err(Failure::permanent(
                format!(
                    "the cloud at `{base}` refused {renewed} (HTTP {}{again}) for {what}",
                    status.as_u16()
                ),
                hint,
            )
            .login_refused());
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::permanent(
                format!(
                    "the cloud at `{base}` refused the credentials (HTTP {}) for {what}",
                    status.as_u16()
                ),
                "check RETRIEVER_USER/RETRIEVER_PASSWORD or RETRIEVER_TOKEN",
            )
            .login_refused());
        }
        if is_transient_status(status) {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let mut f = Failure::transient(
                format!("the cloud at `{base}` answered {status_text} for {what}"),
                "it may be overloaded or down, try again later",
            );
            f.retry_after = retry_after;
            return Err(f);
        }
        let detail = error_body(response);
        if let Some((refusal, said)) = Refusal::in_answer(status.as_u16(), &detail, self.inner.client_cert.is_some()) {
            return Err(self.certificate_refused(what, refusal, &format!("{status_text}: {said}")));
        }
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        let hint = match status {
            StatusCode::NOT_FOUND => "check the UID or search and the cloud URL",
            StatusCode::NOT_ACCEPTABLE => "the cloud cannot send DICOM in a form this program asks for",
            _ => "the cloud did not accept the request; check the cloud URL and the search",
        };
        let with_accept = if status == StatusCode::NOT_ACCEPTABLE {
            format!(" with `Accept: {accept}`")
        } else {
            String::new()
        };
        Err(Failure::permanent(
            format!("the cloud at `{base}` answered {status_text} for {what}{with_accept}{detail}"),
            hint,
        ))
    }

    fn reqwest_failure(&self, what: &Request, e: reqwest::Error) -> Failure {
        let base = &what.base;
        if let Some(r) = find_source::<RedirectRefused>(&e) {
            return Failure::permanent(
                format!(
                    "the cloud at `{base}` redirected {what} to `{}`, {}; refusing to follow it",
                    r.to, r.why
                ),
                "credentials and patient data go only to the configured cloud; set the cloud URL to the service's real address",
            );
        }
        if let Some(refusal) = Refusal::in_error(&chain(&e), self.inner.client_cert.is_some()) {
            return self.certificate_refused(what, refusal, &chain(&e));
        }
        if e.is_builder() {
            return Failure::permanent(
                format!("failed to build the request {what} for `{base}`: {}", chain(&e)),
                "this is a bug",
            );
        }
        if e.is_connect() && is_certificate_problem(&e) {
            // Not transient: the same certificate will be presented again.
            return Failure::permanent(
                format!(
                    "the cloud at `{base}` presented a certificate that is not trusted ({})",
                    chain(&e)
                ),
                "if the cloud uses a private certificate authority, give its certificate with \
                 --ca-bundle FILE (RETRIEVER_CA_BUNDLE); also check the computer's clock",
            );
        }
        if e.is_connect()
            && let Some(failure) = self.proxy_refused(&e)
        {
            return failure;
        }
        if e.is_connect() {
            let cause = if is_timeout(&e) {
                format!("no connection within {}", secs(self.inner.connect_timeout))
            } else {
                chain(&e)
            };
            return Failure::transient_with(
                format!("could not connect to the cloud at `{base}` for {what}"),
                cause,
                "check the network, any proxy settings and the cloud URL",
            );
        }
        self.io_failure(what, &e, None)
    }

    /// The proxy would not open a tunnel to the cloud: for want of a
    /// password, or the one it was given (407: not worth a retry, the same
    /// would be given again), or for a reason of its own (its policy, or
    /// the cloud's host unreachable from it).
    fn proxy_refused(&self, e: &reqwest::Error) -> Option<Failure> {
        // Found again only now, on the way to an error: the same answer
        // as when the client was built, the environment being the same.
        let Proxy::Via { url, origin } = &super::options::proxy_for(&self.inner.base) else {
            return None;
        };
        // hyper-util's tunnel errors are no public type: their texts are
        // matched, and the proxy tests fail should they change.
        let cause = chain(e);
        let base = self.inner.base.as_str();
        let host = self.inner.base.host_str().unwrap_or_default();
        let set = match origin {
            ProxyOrigin::Environment(variable) => format!("the proxy `{url}` ({variable})"),
            ProxyOrigin::System => format!("the proxy `{url}` (the system's proxy settings)"),
        };
        if cause.contains("tunnel error: proxy authorization required") {
            let hint = match origin {
                ProxyOrigin::Environment(variable) => format!(
                    "write the proxy's user name and password in {variable} \
                     (http://USER:PASSWORD@HOST:PORT), as the hospital's IT gives them for this router"
                ),
                ProxyOrigin::System => "the system's proxy settings hold no password: set HTTPS_PROXY to \
                                        http://USER:PASSWORD@HOST:PORT, as the hospital's IT gives them for \
                                        this router"
                    .to_string(),
            };
            return Some(Failure::permanent(
                format!(
                    "{set} refused to connect us to the cloud at `{base}`: it wants a user name and \
                     password, or not the ones given (407 Proxy Authentication Required)"
                ),
                &hint,
            ));
        }
        if cause.contains("tunnel error: unsuccessful") {
            return Some(Failure::transient_with(
                format!("{set} would not open a connection to the cloud at `{base}`"),
                cause,
                &format!(
                    "ask the hospital's IT to let this router reach `{host}` over HTTPS through the \
                     proxy; if the cloud is reached without it, add `{host}` to NO_PROXY"
                ),
            ));
        }
        None
    }

    /// The cloud wants a client certificate, or not ours: not worth a
    /// retry, the same certificate would be presented again; and a refused
    /// login to `watch`, like refused credentials.
    fn certificate_refused(&self, what: &Request, refusal: Refusal, cause: &str) -> Failure {
        let (message, hint) = refusal.explain(&what.base, &what.to_string(), cause, self.inner.client_cert.as_deref());
        let failure = Failure::permanent(message, &hint);
        match refusal {
            Refusal::Unclear => failure,
            Refusal::Wanted | Refusal::Refused => failure.login_refused(),
        }
    }

    /// A failure of the connection while waiting for or reading a response.
    fn io_failure(&self, what: &Request, e: &(dyn StdError + 'static), part: Option<usize>) -> Failure {
        if interrupt::caused(e) {
            return Failure::callback(Interrupted.into());
        }
        let base = &what.base;
        let in_part = match part {
            Some(n) if n > 0 => format!(", in part {n}"),
            _ => String::new(),
        };
        if is_timeout(e) {
            let mut f = Failure::transient(
                format!(
                    "no data from the cloud for {} on {what} at `{base}`{in_part}",
                    secs(self.inner.idle_timeout)
                ),
                "the cloud or the network may be stalled; try again later",
            );
            f.stalled = true;
            return f;
        }
        Failure::transient_with(
            format!("the connection to the cloud at `{base}` failed during {what}{in_part}"),
            chain(e),
            "the cloud or the network may be unreliable; try again later",
        )
    }

    fn multipart_failure(&self, what: &Request, f: MultipartError, retryable: bool) -> Failure {
        let base = &what.base;
        let mut failure = match &f {
            MultipartError::Io { part, source } => self.io_failure(what, source, Some(*part)),
            MultipartError::Truncated { .. } => Failure::transient_with(
                format!("the download of {what} from the cloud at `{base}` broke off"),
                f.to_string(),
                "the cloud or the network may be unreliable; try again later",
            ),
            MultipartError::Malformed { .. } => Failure::permanent(
                format!("the cloud at `{base}` answered {what} with data that cannot be read ({f})"),
                "it does not seem to be a DICOMweb WADO-RS service, or a proxy altered the answer",
            ),
        };
        failure.retryable &= retryable;
        failure
    }
}

/// The client for the token endpoint of an OAuth2 grant: the cloud's
/// settings (trust, timeouts), no redirects (the client secret goes only
/// where configured), and a proxy only for https, as for the cloud.
fn token_lanes(auth: &Auth, settings: &Settings) -> Result<Option<Lanes>> {
    let Auth::Renewed(tokens) = auth else {
        return Ok(None);
    };
    let Some(url) = tokens.token_url() else {
        return Ok(None);
    };
    let mut settings = settings.clone();
    settings.use_proxy = url.scheme() == "https";
    let lanes = Lanes::new(settings, redirect::Policy::none)
        .with_context(|| format!("failed to set up the HTTPS client for the token endpoint `{url}`"))?;
    Ok(Some(lanes))
}

/// A request, for error messages: `GET /studies/1.2?x=y`, relative to the base.
struct Request {
    url: Url,
    base: String,
    shown: String,
}

impl Request {
    fn new(base: &Url, path: String, query: String) -> Request {
        let mut url = base.clone();
        url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        // The includefield parameters only make an error line longer.
        let matching: Vec<&str> = query.split('&').filter(|p| !p.starts_with("includefield=")).collect();
        let shown = if query.is_empty() {
            path
        } else {
            format!("{path}?{}", matching.join("&"))
        };
        Request {
            url,
            base: base.as_str().trim_end_matches('/').to_string(),
            shown,
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`GET {}`", self.shown)
    }
}

/// One failed attempt, and what to make of it.
struct Failure {
    /// Trying again later may work.
    transient: bool,
    /// Trying again now is allowed (transient, and nothing handed out yet).
    retryable: bool,
    retry_after: Option<Duration>,
    attempts: u32,
    /// The cloud refused the login (HTTP 401/403), see [`LoginRefused`].
    login_refused: bool,
    message: Message,
    /// The cloud sent nothing for the idle timeout, see [`Stalled`].
    stalled: bool,
}

enum Message {
    Ours {
        what: String,
        cause: Option<String>,
        hint: String,
    },
    /// The caller's own error, passed through untouched.
    Callback(anyhow::Error),
}

impl Failure {
    fn transient(what: String, hint: &str) -> Failure {
        Failure::new(true, what, None, hint)
    }

    fn transient_with(what: String, cause: String, hint: &str) -> Failure {
        Failure::new(true, what, Some(cause), hint)
    }

    fn permanent(what: String, hint: &str) -> Failure {
        Failure::new(false, what, None, hint)
    }

    fn new(transient: bool, what: String, cause: Option<String>, hint: &str) -> Failure {
        Failure {
            transient,
            retryable: transient,
            retry_after: None,
            attempts: 1,
            login_refused: false,
            message: Message::Ours {
                what,
                cause,
                hint: hint.to_string(),
            },
            stalled: false,
        }
    }

    fn callback(e: anyhow::Error) -> Failure {
        Failure {
            transient: false,
            retryable: false,
            retry_after: None,
            attempts: 1,
            login_refused: false,
            message: Message::Callback(e),
            stalled: false,
        }
    }

    fn login_refused(mut self) -> Failure {
        self.login_refused = true;
        self
    }

    fn into_error(self) -> anyhow::Error {
        match self.message {
            Message::Callback(e) => e,
            Message::Ours { what, cause, hint } => {
                let after = if self.attempts > 1 {
                    format!(" after {} attempts", self.attempts)
                } else {
                    String::new()
                };
                let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
                let message = format!("{what}{after}{cause}; {hint}");
                if self.login_refused {
                    anyhow::Error::new(LoginRefused(message))
                } else if self.stalled {
                    anyhow::Error::new(Stalled(message))
                } else if let Some(wait) = self.retry_after {
                    anyhow::Error::new(AskedToWait { message, wait })
                } else {
                    anyhow!(message)
                }
            }
        }
    }
}

/// The error of a request the cloud refused for its credentials (HTTP 401
/// or 403), so that callers (watch) can tell it from other failures
/// without reading the message: [`super::is_login_refused`].
#[derive(Debug)]
pub(super) struct LoginRefused(pub(super) String);

impl std::fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for LoginRefused {}

/// The error of a request whose answer stopped coming (nothing for the idle
/// timeout), so that callers (fetch) can count stalls apart from cut
/// connections: [`super::is_stalled`].
#[derive(Debug)]
pub(super) struct Stalled(String);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Stalled {}

/// The error of a request the cloud answered with a `Retry-After` (503,
/// 429, ...) once no retry was left, so that a caller that tries again
/// later by itself (watch's probe of a cloud that is down) waits as long
/// as the cloud asked: [`super::retry_after`].
#[derive(Debug)]
pub(super) struct AskedToWait {
    message: String,
    /// As asked, within [`super::retry::MAX_RETRY_AFTER`].
    pub(super) wait: Duration,
}

impl std::fmt::Display for AskedToWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for AskedToWait {}

/// A redirect the policy refused; found again in the error's source chain.
#[derive(Debug)]
struct RedirectRefused {
    to: String,
    why: &'static str,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redirect to `{}` refused: {}", self.to, self.why)
    }
}

impl StdError for RedirectRefused {}

/// Follows redirects within the base URL's origin (scheme, host and port)
/// only. reqwest would drop the Authorization header on a cross-host
/// redirect, but it would still send the request, and the cloud URL is
/// meant to say where patient data comes from.
fn redirect_policy(base: &Url) -> redirect::Policy {
    let origin = base.origin();
    redirect::Policy::custom(move |attempt| {
        let to = attempt.url();
        let why = if to.origin() != origin {
            if attempt.previous().iter().any(|u| u.scheme() == "https") && to.scheme() == "http" {
                Some("a downgrade to plain http")
            } else {
                Some("another origin (scheme, host and port)")
            }
        } else if attempt.previous().len() > MAX_REDIRECTS {
            Some("one redirect too many")
        } else {
            None
        };
        match why {
            None => attempt.follow(),
            Some(why) => {
                // Only where it points, not its query: a signed URL there could be a secret.
                let shown = format!("{}{}", to.origin().ascii_serialization(), to.path());
                attempt.error(RedirectRefused { to: shown, why })
            }
        }
    })
}

/// The boundary of a `multipart/related` Content-Type, or why there is none.
fn multipart_boundary(headers: &HeaderMap) -> Result<String, String> {
    let raw = headers.get(CONTENT_TYPE).ok_or("no Content-Type")?;
    let ct = String::from_utf8_lossy(raw.as_bytes()).into_owned();
    let shown = crate::text::escape(&ct.chars().take(120).collect::<String>());
    let (media, params) = parse_media_type(&ct);
    if !media.eq_ignore_ascii_case("multipart/related") {
        return Err(format!("Content-Type `{shown}` instead of multipart/related"));
    }
    params
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("Content-Type `{shown}`, which has no boundary"))
}

/// Splits `type/subtype; a=b; c="d;e"` into the media type and its
/// parameters, unquoting quoted values.
fn parse_media_type(s: &str) -> (String, Vec<(String, String)>) {
    let (media, mut rest) = match s.find(';') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.push((key, value));
    }
    (media.trim().to_string(), params)
}

/// The start of an error response's body, on one line, for the message:
/// servers often say there what was wrong.
fn error_body(response: Response<'_>) -> String {
    let mut buf = Vec::new();
    let _ = response.take(2048).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::escape(&one_line)
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// True if anything in the chain is a timeout. `io::Error` needs care: its
/// `source()` skips the error it wraps, so that one is looked at directly.
fn is_timeout(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && r.is_timeout()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
            if let Some(inner) = io.get_ref()
                && is_timeout(inner)
            {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// True if the TLS handshake failed on the server's certificate. rustls is
/// not a direct dependency, so its error is recognised by its message
/// ("invalid peer certificate: UnknownIssuer", ...).
fn is_certificate_problem(e: &(dyn StdError + 'static)) -> bool {
    chain(e).contains("invalid peer certificate")
}

/// The messages of an error chain joined by ": ", leaving out the request
/// URL that reqwest puts in its own message (the error names it already).
pub(super) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(e) = current {
        let msg = match e.downcast_ref::<reqwest::Error>() {
            Some(r) if r.url().is_some() => strip_url(r),
            _ => e.to_string(),
        };
        if !msg.is_empty() && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        current = e.source();
        if current.is_none()
            && let Some(io) = e.downcast_ref::<io::Error>()
        {
            current = io.get_ref().map(|inner| inner as &(dyn StdError + 'static));
        }
    }
    parts.join(": ")
}

fn strip_url(r: &reqwest::Error) -> String {
    let msg = r.to_string();
    match r.url() {
        Some(url) => msg
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "the URL"),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_parameters() {
        let (m, p) = parse_media_type(r#"multipart/related; type="application/dicom"; boundary=abc"#);
        assert_eq!(m, "multipart/related");
        assert_eq!(
            p,
            vec![
                ("type".into(), "application/dicom".into()),
                ("boundary".into(), "abc".into())
            ]
        );
        let (_, p) = parse_media_type(r#"Multipart/Related;boundary="a;b \"c\"" ; type=x"#);
        assert_eq!(
            p,
            vec![("boundary".into(), r#"a;b "c""#.into()), ("type".into(), "x".into())]
        );
        let (m, p) = parse_media_type("application/json");
        assert_eq!((m.as_str(), p.len()), ("application/json", 0));
    }

    #[test]
    fn boundary_from_headers() {
        let mut h = HeaderMap::new();
        assert!(multipart_boundary(&h).is_err());
        h.insert(
            CONTENT_TYPE,
            "multipart/related; type=\"application/dicom\"; boundary=\"q b\""
                .parse()
                .unwrap(),
        );
        assert_eq!(multipart_boundary(&h).unwrap(), "q b");
        h.insert(CONTENT_TYPE, "application/dicom+json".parse().unwrap());
        assert!(
            multipart_boundary(&h)
                .unwrap_err()
                .contains("instead of multipart/related")
        );
        h.insert(CONTENT_TYPE, "multipart/related; type=x".parse().unwrap());
        assert!(multipart_boundary(&h).unwrap_err().contains("no boundary"));
    }

    #[test]
    fn seconds_are_shown_simply() {
        assert_eq!(secs(Duration::from_secs(60)), "60 s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn client_is_shareable_across_threads() {
        fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
        assert_send_sync_clone::<Client>();
    }
}
