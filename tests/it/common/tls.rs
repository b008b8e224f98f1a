//! The cloud behind HTTPS, as a hospital meets it: a private certificate authority made with
//! `openssl`, a server certificate for 127.0.0.1 signed by it, and `scripts/tls_front.py`
//! forwarding the decrypted connections to a plain-HTTP server (stopped when dropped).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{python, repo_root};

pub struct TlsFront {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsFront {
    /// An HTTPS front for the plain-HTTP server at `upstream`. Its test declares
    /// the `openssl` and `python` peers.
    pub fn to(upstream: SocketAddr) -> TlsFront {
        let dir = tempfile::Builder::new()
            .prefix("retriever-tls-")
            .tempdir()
            .expect("create a directory for the certificates");
        make_certificates(dir.path());
        let mut child = Command::new(python())
            .arg(repo_root().join("scripts/tls_front.py"))
            .arg("--cert")
            .arg(dir.path().join("server.pem"))
            .arg("--key")
            .arg(dir.path().join("server.key"))
            .arg("--upstream")
            .arg(upstream.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run scripts/tls_front.py: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read tls_front.py's port");
        let state: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("tls_front.py did not start ({e}): {line:?}; see its stderr above"));
        let port = state["port"].as_u64().expect("port in tls_front.py's line") as u16;
        TlsFront { child, port, dir }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The certificate of the authority that signed the server's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ca.pem` (a certificate authority) and `server.pem`/`server.key` (for IP 127.0.0.1, signed by
/// it), valid for two days.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
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
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=retriever test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}
