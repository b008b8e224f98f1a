//! Short-lived access tokens: an OAuth2 client-credentials grant against a token endpoint in
//! the harness (tokens living 2 s) and a token command, with the shared Orthanc behind a proxy
//! that takes only live tokens that endpoint issued. A `watch` spanning many token lifetimes
//! delivers everything with no request refused; a revoked token is renewed and the request
//! sent again; a wrong client secret or a failing token command ends the run with a message
//! that says why; two ways to log in are a usage error; and neither the client secret nor a
//! token is ever shown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::oauth::TokenServer;
use crate::common::running::{Running, wait_until};
use crate::common::{
    Orthanc, Storescp, cached_instances, free_port, python, retriever, run_within, temp_cache, testdata, uid_of,
};

tests! {
    a_watch_spanning_many_token_lifetimes_delivers_everything: ["orthanc", "storescp"],
    a_revoked_token_is_renewed_and_the_request_sent_again: ["orthanc"],
    a_wrong_client_secret_fails_naming_the_token_url_and_invalid_client: ["orthanc"],
    a_token_endpoint_down_for_a_while_is_asked_again: ["orthanc"],
    a_token_command_is_run_again_after_its_lifetime: ["orthanc", "storescp", "python"],
    a_failing_token_command_shows_its_stderr,
    two_ways_to_log_in_are_a_usage_error,
    secrets_and_tokens_are_never_shown: ["orthanc"],
}

const LIMIT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "router-7";
/// With characters that HTTP Basic must carry form-encoded (RFC 6749 §2.3.1).
const CLIENT_SECRET: &str = "cl-s3cret/+x%";
const WRONG_SECRET: &str = "not-the-secret-1234";

/// A config file (mode 600) for the token endpoint, the client secret in a file of its own.
fn oauth_config(dir: &Path, endpoint: &TokenServer, secret: &str) -> PathBuf {
    let secret_file = dir.join("client-secret");
    write_private(&secret_file, &format!("{secret}\n"));
    let config = dir.join("retriever.json");
    let json = serde_json::json!({
        "oauth_token_url": endpoint.url(),
        "oauth_client_id": CLIENT_ID,
        "oauth_client_secret_file": secret_file,
        "oauth_scope": "dicom.read",
    });
    write_private(&config, &json.to_string());
    config
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `retriever --config CONFIG --cloud CLOUD --cache CACHE`; the subcommand follows.
fn retriever_with(config: &Path, cloud: &str, cache: &Path) -> Command {
    let mut cmd = retriever();
    cmd.arg("--config")
        .arg(config)
        .args(["--cloud", cloud])
        .arg("--cache")
        .arg(cache);
    cmd
}

fn sops(accessions: &[&str]) -> std::collections::BTreeSet<String> {
    accessions.iter().flat_map(|a| testdata().study(a).sop_uids()).collect()
}

/// A router running for several token lifetimes renews its token before it runs out, again and
/// again: every study arrives, and the cloud never had to refuse a request.
fn a_watch_spanning_many_token_lifetimes_delivers_everything() {
    let endpoint = TokenServer::start(CLIENT_ID, CLIENT_SECRET, Duration::from_secs(2));
    let cloud = endpoint.cloud(Orthanc::shared());
    let dir = temp_cache();
    let config = oauth_config(dir.path(), &endpoint, CLIENT_SECRET);
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let mut cmd = retriever_with(&config, &cloud.dicomweb_url(), cache.path());
    cmd.args(["watch", "--to", &scp.address()])
        .args(["--interval", "1s", "--filter", "AccessionNumber=ACC2001"]);
    let mut running = Running::start(cmd);
    let all = sops(&["ACC2001", "ACC2002"]);
    wait_until(LIMIT, "the study and its prior delivered", &mut running, || {
        scp.received_sop_uids() == all
    });
    // The searches go on, each second; tokens live 2 s.
    wait_until(LIMIT, "four tokens issued to one router", &mut running, || {
        endpoint.issued() >= 4
    });
    assert_eq!(running.interrupt(), 130, "{}", running.stderr());
    assert_eq!(endpoint.refused(), 0, "a request went out with an expired token");
    let err = running.stderr();
    assert!(!err.contains("refuse"), "{err}");
    for request in endpoint.requests() {
        assert_eq!(request.field("grant_type"), Some("client_credentials"));
        assert_eq!(request.field("scope"), Some("dicom.read"));
        assert_eq!(
            request.field("client_secret"),
            None,
            "the secret goes in the Basic header"
        );
        assert!(
            request
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
        );
    }
    assert!(cloud.requests().iter().all(|r| r.header("authorization").is_some()));
}

/// A token the cloud refuses while it is still valid (revoked) is renewed, and the request sent
/// once more: the fetch completes.
fn a_revoked_token_is_renewed_and_the_request_sent_again() {
    let endpoint = TokenServer::start(CLIENT_ID, CLIENT_SECRET, Duration::from_secs(3600));
    let cloud = endpoint.cloud(Orthanc::shared());
    let dir = temp_cache();
    let config = oauth_config(dir.path(), &endpoint, CLIENT_SECRET);
    let cache = temp_cache();
    // The first request (the search) goes through; the token is revoked at the second.
    endpoint.revoke_at_request(2);
    let (code, _, err) = run_within(
        retriever_with(&config, &cloud.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--priors", "0"]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(endpoint.refused(), 1);
    assert_eq!(endpoint.issued(), 2, "one token, then one renewal");
    let got: Vec<String> = cached_instances(cache.path(), uid_of("ACC1001")).into_keys().collect();
    let want: Vec<String> = testdata().study("ACC1001").sop_uids().into_iter().collect();
    assert_eq!(got, want);
}

/// A wrong client secret: exit status 1, naming the token URL and the server's `invalid_client`,
/// and nothing asked of the cloud.
fn a_wrong_client_secret_fails_naming_the_token_url_and_invalid_client() {
    let endpoint = TokenServer::start(CLIENT_ID, CLIENT_SECRET, Duration::from_secs(60));
    let cloud = endpoint.cloud(Orthanc::shared());
    let dir = temp_cache();
    let config = oauth_config(dir.path(), &endpoint, WRONG_SECRET);
    let cache = temp_cache();
    let (code, out, err) = run_within(
        retriever_with(&config, &cloud.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--priors", "0"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("retriever: "), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("the token endpoint `{}`", endpoint.url()))
                && l.contains("invalid_client: client authentication failed")
                && l.contains("oauth_client_id")),
        "{err}"
    );
    assert!(!err.contains(WRONG_SECRET) && !out.contains(WRONG_SECRET), "{err}");
    assert_eq!(endpoint.requests().len(), 1, "a refusal is not retried");
    assert_eq!(cloud.request_count(), 0, "nothing asked of the cloud");
    assert!(cached_instances(cache.path(), uid_of("ACC1001")).is_empty());
}

/// A token endpoint that is down for a moment (503) is asked again, as the cloud would be; one
/// that stays down ends the run saying so.
fn a_token_endpoint_down_for_a_while_is_asked_again() {
    let endpoint = TokenServer::start(CLIENT_ID, CLIENT_SECRET, Duration::from_secs(60));
    let cloud = endpoint.cloud(Orthanc::shared());
    let dir = temp_cache();
    let config = oauth_config(dir.path(), &endpoint, CLIENT_SECRET);
    let cache = temp_cache();
    endpoint.unavailable_for(2);
    let (code, _, err) = run_within(
        retriever_with(&config, &cloud.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--priors", "0"]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(endpoint.requests().len(), 3);
    assert_eq!(endpoint.issued(), 1);

    endpoint.unavailable_for(100);
    let cache = temp_cache();
    let (code, _, err) = run_within(
        retriever_with(&config, &cloud.dicomweb_url(), cache.path())
            .args(["--retries", "1"])
            .args(["fetch", "ACC1001", "--priors", "0"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.lines().any(|l| l.contains(&format!(
            "the token endpoint `{}` answered HTTP 503: temporarily_unavailable after 2 attempts; it may be \
             overloaded or down",
            endpoint.url()
        ))),
        "{err}"
    );
    assert_eq!(endpoint.requests().len(), 5);
}

/// A token command (here a script that asks the token endpoint) gives the router its tokens,
/// and is run again once its token is older than `token_command_lifetime`.
fn a_token_command_is_run_again_after_its_lifetime() {
    let endpoint = TokenServer::start(CLIENT_ID, CLIENT_SECRET, Duration::from_secs(3600));
    let cloud = endpoint.cloud(Orthanc::shared());
    let dir = temp_cache();
    let script = dir.path().join("print-token.py");
    std::fs::write(
        &script,
        format!(
            "import json, urllib.parse, urllib.request\n\
             form = urllib.parse.urlencode({{'grant_type': 'client_credentials', 'client_id': {id:?}, \
             'client_secret': {secret:?}}}).encode()\n\
             print(json.load(urllib.request.urlopen({url:?}, form))['access_token'])\n",
            id = CLIENT_ID,
            secret = CLIENT_SECRET,
            url = endpoint.url(),
        ),
    )
    .unwrap();
    let config = dir.path().join("retriever.json");
    let command = format!("'{}' '{}'", python(), script.display());
    write_private(
        &config,
        &serde_json::json!({"token_command": command, "token_command_lifetime": "1s"}).to_string(),
    );
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let mut cmd = retriever_with(&config, &cloud.dicomweb_url(), cache.path());
    cmd.args(["watch", "--to", &scp.address()])
        .args(["--interval", "1s", "--filter", "AccessionNumber=ACC2001"]);
    let mut running = Running::start(cmd);
    let all = sops(&["ACC2001", "ACC2002"]);
    wait_until(LIMIT, "the study and its prior delivered", &mut running, || {
        scp.received_sop_uids() == all
    });
    wait_until(LIMIT, "the token command run three times", &mut running, || {
        endpoint.issued() >= 3
    });
    assert_eq!(running.interrupt(), 130, "{}", running.stderr());
    assert_eq!(endpoint.refused(), 0);
}

/// A token command that fails (not logged in): exit status 1, and its stderr in the message.
fn a_failing_token_command_shows_its_stderr() {
    let dir = temp_cache();
    let config = dir.path().join("retriever.json");
    write_private(
        &config,
        &serde_json::json!({"token_command": "echo starting >&2; echo 'ERROR: not logged in' >&2; exit 3"}).to_string(),
    );
    let cloud = format!("http://127.0.0.1:{}/dicom-web", free_port());
    let cache = temp_cache();
    let (code, _, err) = run_within(
        retriever_with(&config, &cloud, cache.path()).args(["fetch", "ACC1001"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.lines().last().unwrap_or_default().starts_with("retriever: "),
        "{err}"
    );
    assert!(
        err.lines().any(
            |l| l.contains("the token command (`token_command`) failed with exit status 3")
                && l.contains("(stderr: starting | ERROR: not logged in)")
        ),
        "{err}"
    );
}

/// Two ways to log in to the cloud are a usage error (exit status 2) naming both.
fn two_ways_to_log_in_are_a_usage_error() {
    let dir = temp_cache();
    let config = dir.path().join("retriever.json");
    write_private(
        &config,
        &serde_json::json!({"oauth_token_url": "https://login.example.org/token", "oauth_client_id": "c",
                            "oauth_client_secret": "s"})
        .to_string(),
    );
    let cache = temp_cache();
    let (code, _, err) = run_within(
        retriever_with(&config, "https://cloud.example.org/dw", cache.path())
            .args(["--user", "u", "fetch", "ACC1001"])
            .env("RETRIEVER_PASSWORD", "pw"),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "two ways to log in to the cloud are set: a user for HTTP Basic (--user) and OAuth2 \
             (`oauth_token_url` in the config file `{}`); keep only one",
            config.display()
        )),
        "{err}"
    );
    write_private(&config, &serde_json::json!({"token_command": "echo t"}).to_string());
    let (code, _, err) = run_within(
        retriever_with(&config, "https://cloud.example.org/dw", cache.path())
            .args(["fetch", "ACC1001"])
            .env("RETRIEVER_TOKEN", "static-token"),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a Bearer token (RETRIEVER_TOKEN) and a token command (`token_command` in the config file"),
        "{err}"
    );
    assert!(!err.contains("static-token"), "{err}");
}

/// The client secret and the tokens appear nowhere: not in `retriever config` (either form),
/// not in what a run prints with `RUST_LOG=trace`, not in errors.
fn secrets_and_tokens_are_never_shown() {
    let endpoint = TokenServer::start(CLIENT_ID, CLIENT_SECRET, Duration::from_secs(60));
    let cloud = endpoint.cloud(Orthanc::shared());
    let dir = temp_cache();
    let config = oauth_config(dir.path(), &endpoint, CLIENT_SECRET);
    let cache = temp_cache();
    let (code, out, err) = run_within(
        retriever_with(&config, &cloud.dicomweb_url(), cache.path())
            .env("RUST_LOG", "trace")
            .args(["fetch", "ACC1001", "--priors", "0"]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    let tokens = endpoint.tokens();
    assert!(!tokens.is_empty());
    let shown = |text: &str| tokens.iter().any(|t| text.contains(t.as_str())) || text.contains(CLIENT_SECRET);
    assert!(!shown(&out) && !shown(&err), "{out}\n{err}");

    // The secret from the environment, inline in the file, or in a file.
    for (env, inline) in [(true, false), (false, true), (false, false)] {
        let inline_config = dir.path().join("inline.json");
        let mut json = serde_json::json!({"oauth_token_url": endpoint.url(), "oauth_client_id": CLIENT_ID});
        if inline {
            json["oauth_client_secret"] = CLIENT_SECRET.into();
        } else if !env {
            json["oauth_client_secret_file"] = dir.path().join("client-secret").to_string_lossy().into();
        }
        write_private(&inline_config, &json.to_string());
        for args in [&["config"][..], &["config", "--json"]] {
            let mut cmd = retriever_with(&inline_config, &cloud.dicomweb_url(), cache.path());
            if env {
                cmd.env("RETRIEVER_OAUTH_CLIENT_SECRET", CLIENT_SECRET);
            }
            let (code, out, err) = run_within(cmd.env("RUST_LOG", "trace").args(args), LIMIT);
            assert_eq!(code, 0, "{err}");
            assert!(!shown(&out) && !shown(&err), "{out}\n{err}");
            let line = out
                .lines()
                .find(|l| l.contains("oauth_client_secret"))
                .unwrap_or_else(|| panic!("{out}"));
            assert!(line.contains("***"), "{out}");
            assert!(out.contains(&endpoint.url()) && out.contains(CLIENT_ID), "{out}");
        }
    }

    // A wrong secret: the error says why without the secret.
    let wrong = oauth_config(dir.path(), &endpoint, WRONG_SECRET);
    let (code, out, err) = run_within(
        retriever_with(&wrong, &cloud.dicomweb_url(), cache.path())
            .env("RUST_LOG", "trace")
            .args(["fetch", "ACC1001"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(!out.contains(WRONG_SECRET) && !err.contains(WRONG_SECRET), "{err}");
}
