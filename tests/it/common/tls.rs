//! The cloud behind HTTPS, as a hospital meets it: a private certificate authority made with
//! `openssl` (see `pki.rs`), a server certificate for 127.0.0.1 signed by it, and
//! `scripts/tls_front.py` forwarding the decrypted connections to a plain-HTTP server (stopped
//! when dropped).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::pki::{Pki, Usage};
use super::{python, repo_root};

pub struct TlsFront {
    child: Child,
    port: u16,
    pki: Pki,
}

impl TlsFront {
    /// An HTTPS front for the plain-HTTP server at `upstream`. Its test declares
    /// the `openssl` and `python` peers.
    pub fn to(upstream: SocketAddr) -> TlsFront {
        let pki = Pki::new("retriever test CA");
        let server = pki.issue("127.0.0.1", Usage::Server);
        let mut child = Command::new(python())
            .arg(repo_root().join("scripts/tls_front.py"))
            .arg("--cert")
            .arg(&server.cert)
            .arg("--key")
            .arg(&server.key)
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
        TlsFront { child, port, pki }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The certificate of the authority that signed the server's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.pki.ca()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
