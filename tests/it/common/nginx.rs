//! nginx as the cloud's HTTPS front that asks for a client certificate (mutual TLS), as
//! hospitals and cloud archives deploy it: `ssl_verify_client on` with the authority it trusts
//! for clients, forwarding to a plain-HTTP server (Orthanc's DICOMweb). Each front is the test's
//! own process (`daemon off`, `master_process off`: one process, stopped by its PID when
//! dropped) on 127.0.0.1 and a free port, with its config, pid, log and temporary files in a
//! directory of its own. Tests using it declare the `nginx` peer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::Issued;
use super::{free_port, is_listening};

/// Where Debian's `nginx-light` puts the server (`/usr/sbin` is not on every user's PATH).
pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// How long nginx may take to listen.
const START: Duration = Duration::from_secs(20);

pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// An HTTPS front for the plain-HTTP server at `upstream`, presenting `server`'s certificate
    /// and asking every client for a certificate signed by the authority `client_ca`.
    pub fn requiring_client_certificates(upstream: SocketAddr, server: &Issued, client_ca: &Path) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("retriever-nginx-")
            .tempdir()
            .expect("create a directory for nginx");
        // Another process may take the free port before nginx binds it: then try another.
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(
                dir.path().join("nginx.conf"),
                config(dir.path(), port, upstream, server, client_ca),
            )
            .expect("write nginx.conf");
            let log = std::fs::File::create(dir.path().join("stderr.log")).expect("create nginx's stderr log");
            let mut child = Command::new(NGINX_BIN)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("failed to run {NGINX_BIN}: {e}"));
            let deadline = Instant::now() + START;
            loop {
                if is_listening(port) {
                    return Nginx { child, port, dir };
                }
                if child.try_wait().expect("wait for nginx").is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not listen on port {port} within {START:?}:\n{}",
                        logs(dir.path())
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx could not start:\n{}", logs(dir.path()));
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The requests nginx has logged, one line each: `STATUS CLIENT_CERTIFICATE_CHECK REQUEST`
    /// (the check is `SUCCESS`, `NONE` or `FAILED:reason`). A line is written once the answer
    /// is sent.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.access_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration with every path in `dir`, so that nothing of the system's nginx is used.
fn config(dir: &Path, port: u16, upstream: SocketAddr, server: &Issued, client_ca: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format checked '$status $ssl_client_verify \"$request\"';
    access_log {d}/access.log checked;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
",
        cert = server.cert.display(),
        key = server.key.display(),
        ca = client_ca.display(),
    )
}

/// nginx's own logs, for a failure message.
fn logs(dir: &Path) -> String {
    ["stderr.log", "error.log"]
        .iter()
        .map(|name| std::fs::read_to_string(dir.join(name)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}
