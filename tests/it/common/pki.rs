//! A private certificate authority for the tests that speak TLS, made with `openssl` (tests
//! using it declare the `openssl` peer): its certificate, and certificates it signs for a server
//! on 127.0.0.1 or for a client, each with an unencrypted P-256 key, valid for two days. Files
//! go into a directory the caller owns, named after what they are for.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A new key pair on the P-256 curve, unencrypted, as `openssl req` options.
const EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A certificate authority: `NAME.pem` and `NAME.key` in its directory.
pub struct Ca {
    dir: PathBuf,
    name: String,
}

/// A certificate and its private key (PEM files).
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new authority `CN=retriever test NAME` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &EC_KEY,
                &["-keyout", &key, "-out", &cert, "-days", "2"],
                &["-subj", &format!("/CN=retriever test {name}")],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
        }
    }

    /// The authority's certificate, to trust.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// `NAME.pem`/`NAME.key`: a server certificate for the IP address 127.0.0.1.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// `NAME.pem`/`NAME.key`: a client certificate (`CN=NAME`), as a server asking for one
    /// (mutual TLS) takes it.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, name, "extendedKeyUsage=clientAuth\n")
    }

    /// `NAME.pem`/`NAME.key`: a certificate for `CN=COMMON_NAME` with the X.509 v3
    /// `extensions` (openssl's `-extfile` syntax, one per line) besides those of every end
    /// entity (not a CA, for signatures).
    pub fn issue(&self, name: &str, common_name: &str, extensions: &str) -> Issued {
        let (cert, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        openssl(
            &self.dir,
            &[
                &["req"][..],
                &EC_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={common_name}")],
            ]
            .concat(),
        );
        let extensions = format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}");
        std::fs::write(self.dir.join(&ext), extensions).expect("write the certificate's extensions");
        let (ca_cert, ca_key) = (format!("{}.pem", self.name), format!("{}.key", self.name));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        Issued {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}

/// Runs `openssl ARGS` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
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
