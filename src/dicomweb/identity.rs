//! Our client certificate for the cloud (mutual TLS): read from its two PEM
//! files with errors that name the file and what is wrong with it, and,
//! when the cloud will not take the connection for want of a certificate or
//! for the one we gave, recognised so that the error says that.
//!
//! A cloud says so in one of two ways. Most TLS servers end the handshake
//! with an alert (`certificate_required`, `bad_certificate`, `unknown_ca`,
//! ...), which rustls reports as "received fatal alert: ..."; with TLS 1.3
//! this comes only when the first request is sent, the client having
//! finished its side of the handshake before the server checks the
//! certificate. nginx with `ssl_verify_client on` lets every handshake
//! finish and answers each request with 400 and a page saying "No required
//! SSL certificate was sent" or "The SSL certificate error" (its internal
//! statuses 496 and 495).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::ClientIdentity;

/// More than any certificate chain or key: a file larger than this is not one.
const MAX_PEM_FILE: u64 = 1 << 20;

/// The PEM labels of an unencrypted private key: PKCS#8, PKCS#1 (RSA), SEC1 (EC).
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// The TLS alerts, as rustls names them, that a server sends when it wants
/// a client certificate or does not take the one it got. `HandshakeFailure`
/// is not one: OpenSSL sends it for a missing certificate with TLS 1.2, but
/// also when no version or cipher is shared.
const CERTIFICATE_ALERTS: [&str; 8] = [
    "CertificateRequired",
    "BadCertificate",
    "UnsupportedCertificate",
    "CertificateRevoked",
    "CertificateExpired",
    "CertificateUnknown",
    "UnknownCA",
    "AccessDenied",
];

/// Our certificate chain and its key, as rustls takes them.
pub(super) struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The certificate and key of `id`, checked: readable, PEM, a certificate
/// in the one and a single unencrypted key in the other, belonging together.
pub(super) fn load(id: &ClientIdentity) -> Result<Identity> {
    let cert_sections = pem_sections(&id.cert, "client certificate")?;
    let certs: Vec<&Section> = cert_sections.iter().filter(|s| s.label == "CERTIFICATE").collect();
    if certs.is_empty() {
        let seems_key = cert_sections.iter().any(|s| s.label.ends_with("PRIVATE KEY"));
        bail!(
            "the client certificate `{}` holds no certificate (`-----BEGIN CERTIFICATE-----`){}",
            id.cert.display(),
            if seems_key {
                "; it holds a private key: give the certificate with --client-cert and the key with --client-key"
            } else {
                "; give the PEM certificate the cloud's administrators issued for this router"
            }
        );
    }
    let key_sections = pem_sections(&id.key, "client key")?;
    if key_sections.iter().any(|s| s.label == "ENCRYPTED PRIVATE KEY") {
        bail!(
            "the client key `{}` is protected by a passphrase, which this program cannot ask for; \
             decrypt it into a file that only this account can read (`openssl pkey -in KEY -out PLAIN`) \
             and give that with --client-key",
            id.key.display()
        );
    }
    let keys: Vec<&Section> = key_sections
        .iter()
        .filter(|s| KEY_LABELS.contains(&s.label.as_str()))
        .collect();
    let key = match keys[..] {
        [key] => key,
        [] => bail!(
            "the client key `{}` holds no private key (`-----BEGIN PRIVATE KEY-----`); give the key of \
             the client certificate `{}`",
            id.key.display(),
            id.cert.display()
        ),
        _ => bail!(
            "the client key `{}` holds {} private keys; give a file with only the key of the client \
             certificate `{}`",
            id.key.display(),
            keys.len(),
            id.cert.display()
        ),
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "the client certificate `{}` or its key `{}` cannot be read ({e})",
            id.cert.display(),
            id.key.display(),
        )
    };
    let chain = certs
        .iter()
        .map(|section| CertificateDer::from_pem_slice(section.text.as_bytes()).map_err(|e| unreadable(&e)))
        .collect::<Result<Vec<_>>>()?;
    let key = PrivateKeyDer::from_pem_slice(key.text.as_bytes()).map_err(|e| unreadable(&e))?;
    // Decoding the key and checking that it is the certificate's, here, lets
    // the error name both files.
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
        anyhow::anyhow!(
            "the client key `{}` cannot be used with the client certificate `{}` ({e}); give the \
             private key that belongs to that certificate",
            id.key.display(),
            id.cert.display(),
        )
    })?;
    Ok(Identity { chain, key })
}

/// One `-----BEGIN LABEL-----` ... `-----END LABEL-----` block of a PEM file.
struct Section {
    label: String,
    /// The block, its two lines included, each line ending in `\n`.
    text: String,
}

/// The PEM blocks of the file at `path`, which holds the `what`.
fn pem_sections(path: &Path, what: &str) -> Result<Vec<Section>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes))
        .with_context(|| format!("failed to read the {what} `{}`", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        bail!(
            "the {what} `{}` is larger than {} KiB, which no certificate or key is; check the file name",
            path.display(),
            MAX_PEM_FILE >> 10
        );
    }
    let Ok(text) = String::from_utf8(bytes) else {
        bail!(
            "the {what} `{}` is not a PEM file (it may be DER or PKCS#12); convert it to PEM, e.g. \
             with `openssl x509 -inform der` or `openssl pkcs12 -nodes`",
            path.display()
        );
    };
    let mut sections = Vec::new();
    let mut open: Option<Section> = None;
    for line in text.lines().map(str::trim) {
        match &mut open {
            None => {
                if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
                    open = Some(Section {
                        label: label.to_string(),
                        text: format!("{line}\n"),
                    });
                }
            }
            Some(section) => {
                section.text.push_str(line);
                section.text.push('\n');
                if line == format!("-----END {}-----", section.label) {
                    sections.extend(open.take());
                }
            }
        }
    }
    if let Some(section) = open {
        bail!(
            "the {what} `{}` is not a valid PEM file: its `{}` block has no END line",
            path.display(),
            section.label
        );
    }
    if sections.is_empty() {
        bail!(
            "the {what} `{}` is not a PEM file (no `-----BEGIN` line; it may be DER or PKCS#12); convert \
             it to PEM, e.g. with `openssl x509 -inform der` or `openssl pkcs12 -nodes`",
            path.display()
        );
    }
    Ok(sections)
}

/// How the cloud would not take the connection, as far as our client
/// certificate goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// It wants a client certificate, and we gave none.
    Wanted,
    /// It does not take the one we gave.
    Refused,
    /// The handshake failed without saying why: perhaps for the
    /// certificate, perhaps for want of a shared TLS version or cipher.
    Unclear,
}

impl Refusal {
    /// From a failed connection or request: the TLS alert in its error
    /// chain (`chain`, as text), if it is about a client certificate.
    pub fn in_error(chain: &str, presented: bool) -> Option<Refusal> {
        let (_, after) = chain.split_once("received fatal alert: ")?;
        let alert: String = after.chars().take_while(char::is_ascii_alphanumeric).collect();
        if alert == "HandshakeFailure" {
            Some(Refusal::Unclear)
        } else if CERTIFICATE_ALERTS.contains(&alert.as_str()) {
            Some(Refusal::of(presented))
        } else {
            None
        }
    }

    /// From an answer: nginx's page (or status) for a request whose
    /// connection came without a certificate it takes; with what it says.
    pub fn in_answer(status: u16, body: &str, presented: bool) -> Option<(Refusal, &'static str)> {
        const MISSING: &str = "No required SSL certificate was sent";
        const ERROR: &str = "The SSL certificate error";
        let said = match status {
            496 => MISSING,
            495 => ERROR,
            400 if body.contains(MISSING) => MISSING,
            400 if body.contains(ERROR) => ERROR,
            _ => return None,
        };
        Some((Refusal::of(presented), said))
    }

    fn of(presented: bool) -> Refusal {
        if presented { Refusal::Refused } else { Refusal::Wanted }
    }

    /// What to say, about the cloud at `base` answering `what`: the message
    /// (with `cause`, what the server or TLS said) and what to do.
    /// `cert` is the client certificate we gave, if any.
    pub fn explain(self, base: &str, what: &str, cause: &str, cert: Option<&Path>) -> (String, String) {
        const GIVE: &str = "give the certificate and key that the cloud's administrators issued for this \
                            router with --client-cert FILE and --client-key FILE (`client_cert` and \
                            `client_key` in the config file)";
        let cert = cert.map(|c| format!("`{}`", c.display())).unwrap_or_default();
        match self {
            Refusal::Wanted => (
                format!(
                    "the cloud at `{base}` asks for a client certificate (mutual TLS) for {what}, and none \
                     was given ({cause})"
                ),
                GIVE.to_string(),
            ),
            Refusal::Refused => (
                format!("the cloud at `{base}` refused our client certificate {cert} for {what} ({cause})"),
                "ask the cloud's administrators whether they trust that certificate (issued by a certificate \
                 authority they accept, not expired, not revoked); check --client-cert and --client-key"
                    .to_string(),
            ),
            Refusal::Unclear if cert.is_empty() => (
                format!("the TLS handshake with the cloud at `{base}` failed for {what} ({cause})"),
                format!(
                    "the cloud may want a client certificate: {GIVE}; or it may speak no TLS version \
                     (1.2, 1.3) or cipher this program does"
                ),
            ),
            Refusal::Unclear => (
                format!("the TLS handshake with the cloud at `{base}` failed for {what} ({cause})"),
                format!(
                    "the cloud may have refused our client certificate {cert}: ask its administrators \
                     whether they trust it; or it may speak no TLS version (1.2, 1.3) or cipher this \
                     program does"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_about_the_client_certificate_are_recognised() {
        let chain = "error sending request: client error (SendRequest): connection error: received fatal \
                     alert: CertificateRequired";
        assert_eq!(Refusal::in_error(chain, false), Some(Refusal::Wanted));
        assert_eq!(Refusal::in_error(chain, true), Some(Refusal::Refused));
        let unknown_ca = "client error (Connect): received fatal alert: UnknownCA";
        assert_eq!(Refusal::in_error(unknown_ca, true), Some(Refusal::Refused));
        assert_eq!(Refusal::in_error(unknown_ca, false), Some(Refusal::Wanted));
        let handshake = "client error (Connect): received fatal alert: HandshakeFailure";
        assert_eq!(Refusal::in_error(handshake, false), Some(Refusal::Unclear));
        // Not about a certificate, or not an alert from the server.
        assert_eq!(Refusal::in_error("received fatal alert: ProtocolVersion", false), None);
        assert_eq!(
            Refusal::in_error("invalid peer certificate: UnknownIssuer", false),
            None
        );
        assert_eq!(Refusal::in_error("connection refused", true), None);
    }

    #[test]
    fn nginx_pages_about_the_client_certificate_are_recognised() {
        let missing = "<html> <head><title>400 No required SSL certificate was sent</title></head>";
        let said = "No required SSL certificate was sent";
        assert_eq!(Refusal::in_answer(400, missing, false), Some((Refusal::Wanted, said)));
        assert_eq!(Refusal::in_answer(496, "", false), Some((Refusal::Wanted, said)));
        let error = "<center>The SSL certificate error</center>";
        let said = "The SSL certificate error";
        assert_eq!(Refusal::in_answer(400, error, true), Some((Refusal::Refused, said)));
        assert_eq!(Refusal::in_answer(400, "bad query", false), None);
        assert_eq!(Refusal::in_answer(404, missing, false), None);
    }

    #[test]
    fn the_message_says_what_to_give() {
        let (what, hint) = Refusal::Wanted.explain("https://c", "`GET /studies`", "HTTP 400", None);
        assert!(what.contains("asks for a client certificate"), "{what}");
        assert!(
            hint.contains("--client-cert") && hint.contains("--client-key"),
            "{hint}"
        );
        let (what, _) = Refusal::Refused.explain("https://c", "`GET /studies`", "x", Some(Path::new("/etc/me.pem")));
        assert!(what.contains("refused our client certificate `/etc/me.pem`"), "{what}");
    }

    /// nginx's answer to a request without a certificate: not retried, and a
    /// refused login to `watch`, with the page's phrase as the cause.
    #[test]
    fn the_client_takes_nginx_s_page_for_a_wanted_certificate() {
        use crate::dicomweb::testserver::{Step, TestServer, response};
        let page = b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n</html>";
        let server = TestServer::start(|_, _| vec![Step::Send(response("400 Bad Request", &[], page))]);
        let mut options = crate::dicomweb::ClientOptions::new(server.url("/dicom-web"), crate::dicomweb::Auth::None);
        options.backoff = std::time::Duration::from_millis(1);
        let client = crate::dicomweb::Client::new(&options).unwrap();
        let e = client.search_studies(&[], &mut |_| Ok(())).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("asks for a client certificate"), "{msg}");
        assert!(
            msg.contains("(400 Bad Request: No required SSL certificate was sent)"),
            "{msg}"
        );
        assert!(crate::dicomweb::is_login_refused(&e));
        assert_eq!(server.requests().len(), 1);
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn files_that_are_no_certificate_or_key_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = |cert: &Path, key: &Path| {
            let id = ClientIdentity {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            };
            match load(&id) {
                Ok(_) => panic!("{id:?} was taken"),
                Err(e) => format!("{e:#}"),
            }
        };
        let k = write(dir.path(), "k.pem", key);
        let c = write(dir.path(), "c.pem", cert);

        let e = err(&dir.path().join("missing.pem"), &k);
        assert!(
            e.contains("failed to read the client certificate") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err(&k, &k);
        assert!(e.contains("holds no certificate") && e.contains("--client-key"), "{e}");
        let e = err(&write(dir.path(), "der", "\u{0}\u{1}"), &k);
        assert!(e.contains("is not a PEM file") && e.contains("`"), "{e}");
        let e = err(&c, &c);
        assert!(
            e.contains("the client key") && e.contains("holds no private key"),
            "{e}"
        );
        let e = err(&c, &write(dir.path(), "two", &format!("{key}{key}")));
        assert!(e.contains("holds 2 private keys"), "{e}");
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = err(&c, &write(dir.path(), "enc", encrypted));
        assert!(e.contains("passphrase"), "{e}");
        let e = err(&write(dir.path(), "cut", "-----BEGIN CERTIFICATE-----\nAAAA\n"), &k);
        assert!(e.contains("has no END line"), "{e}");
        // Well-formed PEM, but no certificate and key rustls can use.
        let e = err(&c, &k);
        assert!(e.contains("`") && e.contains("k.pem"), "{e}");
    }
}
