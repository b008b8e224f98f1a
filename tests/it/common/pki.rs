//! A private certificate authority, as a hospital runs one, made with `openssl` in a temporary
//! directory (removed when dropped): its certificate, and server and client certificates it
//! signs, for a name or an IP address, valid now or within dates of the test's choosing (an
//! expired one, say). The HTTPS front of the cloud and the DICOM TLS peers use it. A test that
//! uses it declares the `openssl` peer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A certificate authority: `ca.pem` and `ca.key` in its own directory.
pub struct Pki {
    dir: tempfile::TempDir,
    issued: std::cell::Cell<u32>,
}

/// What a certificate is for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A certificate and its private key (PEM files).
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new authority named `CN` (e.g. "retriever test CA"), valid for two days.
    pub fn new(cn: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("retriever-pki-")
            .tempdir()
            .expect("create a directory for the certificates");
        openssl(
            dir.path(),
            &[
                &["req", "-x509"][..],
                &EC_KEY,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", &format!("/CN={cn}")],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        // What `openssl ca` keeps: the certificates it issued, and the next serial number.
        std::fs::write(dir.path().join("index.txt"), "").expect("write index.txt");
        std::fs::write(dir.path().join("serial"), "1000\n").expect("write serial");
        std::fs::write(dir.path().join("ca.cnf"), CA_CONFIG).expect("write ca.cnf");
        Pki {
            dir,
            issued: std::cell::Cell::new(0),
        }
    }

    /// The authority's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `name` (a host name, or an IP address as an IP SAN), valid for two days.
    pub fn issue(&self, name: &str, usage: Usage) -> Issued {
        self.issue_valid(name, usage, None)
    }

    /// A certificate for `name` valid only between `start` and `end` (`YYYYMMDDHHMMSSZ`), e.g.
    /// one that expired last year.
    pub fn issue_between(&self, name: &str, usage: Usage, start: &str, end: &str) -> Issued {
        self.issue_valid(name, usage, Some((start, end)))
    }

    fn issue_valid(&self, name: &str, usage: Usage, dates: Option<(&str, &str)>) -> Issued {
        let n = self.issued.get() + 1;
        self.issued.set(n);
        let stem = format!("cert{n}");
        let dir = self.dir.path();
        let key = format!("{stem}.key");
        let csr = format!("{stem}.csr");
        let pem = format!("{stem}.pem");
        let ext = format!("{stem}.ext");
        openssl(
            dir,
            &[
                &["req"][..],
                &EC_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")],
            ]
            .concat(),
        );
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{name}"),
            Err(_) => format!("DNS:{name}"),
        };
        let purpose = match usage {
            Usage::Server => "serverAuth",
            Usage::Client => "clientAuth",
        };
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage={purpose}\n"
            ),
        )
        .expect("write the extensions file");
        let mut args = vec![
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", &csr,
            "-out", &pem, "-extfile", &ext,
        ];
        match dates {
            Some((start, end)) => args.extend(["-startdate", start, "-enddate", end]),
            None => args.extend(["-days", "2"]),
        }
        openssl(dir, &args);
        Issued {
            cert: dir.join(pem),
            key: dir.join(key),
        }
    }
}

/// A P-256 key, unencrypted.
const EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// The least `openssl ca` needs: where its records are, and no policy on names.
const CA_CONFIG: &str = "\
[ca]
default_ca = test_ca

[test_ca]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any_name
unique_subject = no

[any_name]
commonName = supplied
";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
