//! The config file and `retriever config`: precedence (flag > environment > file > default),
//! where each value came from, secrets redacted, the warning for a config file others can
//! read, and the example config of the repository.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Storescp, repo_root, retriever, run_within, temp_cache};

tests! {
    flags_beat_environment_beats_file_beats_defaults,
    the_table_says_where_each_value_came_from,
    secrets_are_redacted_everywhere,
    #[cfg(unix)] a_config_file_others_can_read_is_warned_about,
    the_example_config_parses_and_shows_every_setting,
    a_config_file_in_the_default_place_is_used,
    a_wrong_config_file_is_refused_with_the_reason,
    config_fails_when_a_setting_is_set_but_wrong,
    the_file_drives_the_commands: ["storescp"],
    every_wrong_flag_is_a_usage_error,
    wrong_values_in_the_file_name_the_key,
    windows_paths_with_single_backslashes_are_refused_with_how_to_write_them,
    the_proxy_for_the_cloud_is_shown_with_its_credentials_hidden,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `retriever ARGS` and returns (exit code, stdout, stderr).
fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    run_within(cmd, TIMEOUT)
}

/// `retriever config --json`, parsed; panics unless it succeeds.
fn config_json(cmd: &mut std::process::Command) -> Value {
    config_json_with(cmd, &[])
}

/// The same with arguments after `config --json`.
fn config_json_with(cmd: &mut std::process::Command, after: &[&str]) -> Value {
    let (code, stdout, stderr) = run(cmd.args(["config", "--json"]).args(after));
    assert_eq!(code, 0, "retriever config failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn write_config(dir: &Path, json: &str) -> std::path::PathBuf {
    let path = dir.join("retriever.json");
    std::fs::write(&path, json).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// (value, source, origin) of one setting.
fn setting(config: &Value, key: &str) -> (Value, Value, Value) {
    let s = &config[key];
    assert!(s.is_object(), "no setting `{key}` in {config}");
    (s["value"].clone(), s["source"].clone(), s["origin"].clone())
}

fn flags_beat_environment_beats_file_beats_defaults() {
    let dir = temp_cache();
    let path = write_config(
        dir.path(),
        r#"{"cloud": "https://file.example.org/dicom-web", "user": "file-user", "jobs": 2, "retries": 7,
            "to": "FILEPACS@10.0.0.5:104", "prior_years": 2, "associations": 3, "cache": "/from/file"}"#,
    );
    let config = config_json_with(
        retriever()
            .env("RETRIEVER_CONFIG", &path)
            .env("RETRIEVER_CLOUD", "https://env.example.org/dicom-web")
            .env("RETRIEVER_JOBS", "3")
            .env("RETRIEVER_ASSOCIATIONS", "4")
            .env("RETRIEVER_PASSWORD", "pw-in-env-17")
            .args(["--jobs", "5"]),
        &["--prior-years", "9"],
    );
    let s = |key| setting(&config, key);
    assert_eq!(s("config").1, "environment");
    assert_eq!(s("config").2, "RETRIEVER_CONFIG");
    assert_eq!(s("jobs"), ("5".into(), "flag".into(), "--jobs".into()));
    assert_eq!(s("prior_years"), ("9".into(), "flag".into(), "--prior-years".into()));
    assert_eq!(
        s("cloud"),
        (
            "https://env.example.org/dicom-web".into(),
            "environment".into(),
            "RETRIEVER_CLOUD".into()
        )
    );
    assert_eq!(
        s("associations"),
        ("4".into(), "environment".into(), "RETRIEVER_ASSOCIATIONS".into())
    );
    assert_eq!(s("retries"), ("7".into(), "config file".into(), Value::Null));
    assert_eq!(s("user"), ("file-user".into(), "config file".into(), Value::Null));
    assert_eq!(s("to").0, "FILEPACS@10.0.0.5:104");
    assert_eq!(s("cache").0, "/from/file");
    assert_eq!(s("idle_timeout").1, "default");
    assert_eq!(s("calling_ae"), ("RETRIEVER".into(), "default".into(), Value::Null));
    assert_eq!(s("token"), (Value::Null, Value::Null, Value::Null), "not set");
}

fn the_table_says_where_each_value_came_from() {
    let dir = temp_cache();
    let path = write_config(
        dir.path(),
        r#"{"cloud": "https://file.example.org/dicom-web", "retries": 7}"#,
    );
    let (code, stdout, stderr) = run(retriever()
        .arg("--config")
        .arg(&path)
        .env("RETRIEVER_CALLING_AE", "ROUTER1")
        .args(["config", "--to", "PACS@127.0.0.1:104"]));
    assert_eq!(code, 0, "{stderr}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for `{key}`:\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(stdout.starts_with("SETTING"), "{stdout}");
    assert_eq!(line("config"), format!("config {} flag --config", path.display()));
    assert_eq!(line("cloud"), "cloud https://file.example.org/dicom-web config file");
    assert_eq!(line("to"), "to PACS@127.0.0.1:104 flag --to");
    assert_eq!(
        line("calling_ae"),
        "calling_ae ROUTER1 environment RETRIEVER_CALLING_AE"
    );
    assert_eq!(line("retries"), "retries 7 config file");
    assert_eq!(line("jobs"), "jobs 4 default");
    assert_eq!(line("token"), "token - not set");
}

fn secrets_are_redacted_everywhere() {
    let dir = temp_cache();
    let token_file = dir.path().join("token.txt");
    std::fs::write(&token_file, "tok-from-file-81\n").unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            r#"{{"cloud": "https://cloud.example.org/dw", "user": "u", "password": "pw-in-file-42",
                 "token_file": {}}}"#,
            serde_json::to_string(&token_file).unwrap()
        ),
    );
    for extra_env in [
        None,
        Some(("RETRIEVER_PASSWORD", "pw-in-env-17")),
        Some(("RETRIEVER_TOKEN", "tok-in-env-99")),
    ] {
        for json in [false, true] {
            let mut cmd = retriever();
            cmd.arg("--config").arg(&path).arg("config");
            if json {
                cmd.arg("--json");
            }
            if let Some((k, v)) = extra_env {
                cmd.env(k, v);
            }
            let (code, stdout, stderr) = run(&mut cmd);
            assert_eq!(code, 0, "{stderr}");
            for secret in ["pw-in-file-42", "tok-from-file-81", "pw-in-env-17", "tok-in-env-99"] {
                assert!(
                    !stdout.contains(secret) && !stderr.contains(secret),
                    "secret `{secret}` shown:\n{stdout}\n{stderr}"
                );
            }
            assert!(stdout.contains("***"), "{stdout}");
        }
    }
    // A password written into the URL is refused, and not shown either.
    let (code, stdout, stderr) =
        run(retriever().args(["config", "--cloud", "https://u:pw-in-url-33@cloud.example.org/dw"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        !stdout.contains("pw-in-url-33") && !stderr.contains("pw-in-url-33"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("has credentials in it"), "{stderr}");

    let config = config_json(
        retriever()
            .arg("--config")
            .arg(&path)
            .env("RETRIEVER_PASSWORD", "pw-in-env-17"),
    );
    assert_eq!(
        setting(&config, "password"),
        ("***".into(), "environment".into(), "RETRIEVER_PASSWORD".into())
    );
    assert_eq!(setting(&config, "token").0, "***");
    assert_eq!(setting(&config, "token").1, "config file");
    assert!(
        setting(&config, "token")
            .2
            .as_str()
            .unwrap()
            .starts_with("token_file `")
    );
}

#[cfg(unix)]
fn a_config_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_cache();
    let path = write_config(dir.path(), r#"{"user": "u", "password": "pw-in-file-42"}"#);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cache = temp_cache();
    let (code, _, stderr) = run(retriever()
        .arg("--config")
        .arg(&path)
        .arg("--cache")
        .arg(cache.path())
        .arg("ls"));
    assert_eq!(code, 0, "{stderr}");
    let warning = format!("warning: the config file `{}` holds a secret", path.display());
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(stderr.contains(&format!("chmod 600 {}", path.display())), "{stderr}");
    assert!(!stderr.contains("pw-in-file-42"));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = run(retriever()
        .arg("--config")
        .arg(&path)
        .arg("--cache")
        .arg(cache.path())
        .arg("ls"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    // No secret in it: nothing to warn about.
    let plain = write_config(dir.path(), r#"{"user": "u"}"#);
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, _, stderr) = run(retriever()
        .arg("--config")
        .arg(&plain)
        .arg("--cache")
        .arg(cache.path())
        .arg("ls"));
    assert!(!stderr.contains("warning"), "{stderr}");
}

fn the_example_config_parses_and_shows_every_setting() {
    let example = repo_root().join("examples/retriever.json");
    // Its password file is a Windows path that does not exist here; the environment beats it.
    let config = config_json(
        retriever()
            .arg("--config")
            .arg(&example)
            .env("RETRIEVER_PASSWORD", "pw-for-the-example"),
    );
    assert_eq!(setting(&config, "cloud").1, "config file");
    assert_eq!(setting(&config, "to").0, "PACS@10.0.0.5:104");
    let text: Value = serde_json::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    // The alternatives to password_file are left out on purpose: one way to give a secret,
    // and one way to log in (OAuth2 and the token command are shown in the README).
    for key in crate::docs::file_config_keys() {
        if ["password", "token", "token_file"].contains(&key.as_str())
            || key.starts_with("oauth_")
            || key.starts_with("token_command")
            // One destination (`to`) or several: the list is in examples/destinations.json.
            || key == "destinations"
        {
            continue;
        }
        assert!(
            text.get(&key).is_some(),
            "examples/retriever.json does not show `{key}`; add it with its default or a typical value"
        );
        if key == "password_file" {
            continue;
        }
        assert_ne!(
            setting(&config, &key).1,
            "default",
            "`{key}` of the example was not taken from the file"
        );
    }
}

fn a_config_file_in_the_default_place_is_used() {
    let home = temp_cache();
    let dir = home.path().join("retriever");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, r#"{"calling_ae": "FROMDEFAULT"}"#).unwrap();
    let config = config_json(retriever().env("XDG_CONFIG_HOME", home.path()));
    assert_eq!(setting(&config, "config").0, path.display().to_string());
    assert_eq!(setting(&config, "config").1, "default");
    assert_eq!(setting(&config, "calling_ae").0, "FROMDEFAULT");
    assert_eq!(setting(&config, "calling_ae").1, "config file");
}

fn a_wrong_config_file_is_refused_with_the_reason() {
    let dir = temp_cache();
    for (json, expect) in [
        (r#"{"clod": "https://x"}"#, "unknown field `clod`"),
        (r#"{"jobs": "four"}"#, "invalid type"),
        (r#"{"cloud": "https://x", "#, "EOF while parsing"),
        (r#"{"dimse_timeout": "soon"}"#, "`dimse_timeout` in the config file"),
        (r#"{"prior_modality": "CT"}"#, "prior_modality"),
    ] {
        let path = write_config(dir.path(), json);
        let (code, _, stderr) = run(retriever().arg("--config").arg(&path).arg("config"));
        assert_eq!(code, 1, "{json}: {stderr}");
        let line = stderr.trim();
        assert!(!line.contains('\n'), "one line expected: {stderr}");
        assert!(line.starts_with("retriever: "), "{stderr}");
        assert!(line.contains(expect), "{json}: expected `{expect}` in: {stderr}");
        assert!(
            line.contains(&path.display().to_string()),
            "the file is named: {stderr}"
        );
    }
    let (code, _, stderr) = run(retriever().args(["--config", "/nonexistent/retriever.json", "config"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("failed to read the config file `/nonexistent/retriever.json`"),
        "{stderr}"
    );
}

fn config_fails_when_a_setting_is_set_but_wrong() {
    // A wrong `--to` is a usage error (see `every_wrong_flag_is_a_usage_error`): here the wrong
    // destination comes from the config file.
    let dir = temp_cache();
    let path = write_config(dir.path(), r#"{"to": "PACS"}"#);
    let (code, stdout, stderr) =
        run(retriever()
            .arg("--config")
            .arg(&path)
            .args(["config", "--cloud", "ftp://cloud.example.org/x"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stdout.contains("ftp://cloud.example.org/x"),
        "the table is still shown: {stdout}"
    );
    assert!(stderr.contains("has scheme `ftp`; use an https:// URL"), "{stderr}");
    assert!(stderr.contains("the destination `PACS` has no AE title"), "{stderr}");
    assert!(stderr.contains("retriever: 2 settings are wrong"), "{stderr}");
    // Missing is not wrong: `store` needs no cloud.
    let (code, _, stderr) = run(retriever().arg("config"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("note: no cloud archive is set"), "{stderr}");
}

/// Settings from the file reach the commands: `echo` with the destination and calling AE title
/// only in the config file.
fn the_file_drives_the_commands() {
    let scp = Storescp::start("FILEPACS");
    let dir = temp_cache();
    let path = write_config(
        dir.path(),
        &format!(
            r#"{{"to": "FILEPACS@127.0.0.1:{}", "calling_ae": "FROMFILE", "max_pdu": 32768}}"#,
            scp.port()
        ),
    );
    let (code, stdout, stderr) = run(retriever().arg("--config").arg(&path).arg("echo"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("FILEPACS@127.0.0.1"), "{stdout}");
}

/// Every flag is checked as it is read, whatever the subcommand: a wrong one is a usage error
/// (exit status 2, clap's message naming the flag), even when the subcommand does not use it.
fn every_wrong_flag_is_a_usage_error() {
    let dir = temp_cache();
    let cache = dir.path().to_str().unwrap();
    for (args, expect) in [
        (&["--connect-timeout", "soon", "ls"][..], "`soon` is not a duration"),
        (&["ls", "--idle-timeout", "5 parsecs"][..], "is not a duration"),
        (&["--jobs", "0", "ls"][..], "--jobs"),
        (&["--jobs", "65", "fetch", "ACC1"][..], "--jobs"),
        (
            &["watch", "--interval", "0s", "--to", "PACS@127.0.0.1:104"][..],
            "longer than 0s",
        ),
        (
            &["watch", "--stable-age", "later", "--to", "PACS@127.0.0.1:104"][..],
            "not a duration",
        ),
        (
            &["watch", "--filter", "Modality", "--to", "PACS@127.0.0.1:104"][..],
            "is not KEY=VALUE",
        ),
        (&["store", "--to", "PACS@@127.0.0.1:104"][..], "host `@127.0.0.1`"),
        (&["--to", "PACS", "ls"][..], "has no AE title"),
        (&["echo", "--to", "PACS@127.0.0.1:http"][..], "not a TCP port number"),
        (
            &[
                "echo",
                "--to",
                "PACS@127.0.0.1:104",
                "--calling-ae",
                "WAYTOOLONGAETITLE1",
            ][..],
            "longer than 16",
        ),
        (
            &["echo", "--to", "PACS@127.0.0.1:104", "--acse-timeout", "ten seconds"][..],
            "not a duration",
        ),
        (&["--max-instance-size", "1k", "ls"][..], "at least 64 KiB"),
        (&["--max-instance-size", "lots", "ls"][..], "is not a size"),
        (&["prune", "--older-than", "a while"][..], "is not a duration"),
        (
            &["fetch", "ACC1", "--transfer-syntax", "1.2.x"][..],
            "--transfer-syntax",
        ),
    ] {
        let (code, stdout, stderr) = run(retriever().args(["--cache", cache]).args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: expected `{expect}` in: {stderr}");
    }
}

/// The same values from the config file or the environment are checked too, and name where
/// they came from; a wrong destination fails only the commands that deliver.
fn wrong_values_in_the_file_name_the_key() {
    let dir = temp_cache();
    let cache = dir.path().join("cache");
    for (json, args, expect) in [
        (
            r#"{"connect_timeout": "soon"}"#,
            &["fetch", "ACC1", "--cloud", "https://cloud.example.org/dw"][..],
            "`connect_timeout` in the config file",
        ),
        (
            r#"{"jobs": 0}"#,
            &["fetch", "ACC1", "--cloud", "https://cloud.example.org/dw"][..],
            "`jobs` in the config file",
        ),
        (r#"{"watch_interval": "0s"}"#, &["ls"][..], "must be longer than 0s"),
        (r#"{"max_instance_size": "1k"}"#, &["ls"][..], "must be at least 64 KiB"),
        (r#"{"to": "PACS@@127.0.0.1:104"}"#, &["store"][..], "host `@127.0.0.1`"),
    ] {
        let path = write_config(dir.path(), json);
        let (code, _, stderr) = run(retriever()
            .arg("--config")
            .arg(&path)
            .arg("--cache")
            .arg(&cache)
            .args(args));
        assert_eq!(code, 1, "{json}: {stderr}");
        assert!(stderr.contains(expect), "{json}: expected `{expect}` in: {stderr}");
    }
    let path = write_config(dir.path(), r#"{"to": "PACS@@127.0.0.1:104"}"#);
    let (code, _, stderr) = run(retriever()
        .arg("--config")
        .arg(&path)
        .arg("--cache")
        .arg(&cache)
        .arg("ls"));
    assert_eq!(code, 0, "`ls` delivers nothing: {stderr}");
}

fn windows_paths_with_single_backslashes_are_refused_with_how_to_write_them() {
    let dir = temp_cache();
    // `\r` is a valid JSON escape: this once became a cache directory named
    // `D:` + carriage return + `etriever-cache`, created without a word.
    for (json, expect) in [
        (
            r#"{"cache": "D:\retriever-cache"}"#,
            "`cache` is `D:\\retriever-cache`, with the control character",
        ),
        (
            r#"{"cache": "C:\ProgramData\retriever"}"#,
            "invalid escape at line 1 column 15",
        ),
    ] {
        let path = write_config(dir.path(), json);
        for sub in ["config", "ls"] {
            let (code, _, stderr) = run(retriever().current_dir(dir.path()).arg("--config").arg(&path).arg(sub));
            assert_eq!(code, 1, "{json} {sub}: {stderr}");
            assert!(
                stderr.contains(expect),
                "{json} {sub}: expected `{expect}` in: {stderr}"
            );
            assert!(stderr.contains(r#"`"D:/retriever-cache"`"#), "{stderr}");
            assert!(stderr.contains(r#"`"D:\\retriever-cache"`"#), "{stderr}");
        }
        let made: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            made,
            ["retriever.json"],
            "nothing but the config file in {}",
            dir.path().display()
        );
    }
    // Forward slashes and doubled backslashes are what the README shows.
    let path = write_config(
        dir.path(),
        r#"{"cache": "D:/retriever-cache", "ca_bundle": "C:\\ProgramData\\ca.pem"}"#,
    );
    let json = config_json(retriever().arg("--config").arg(&path));
    assert_eq!(json["cache"]["value"], "D:/retriever-cache");
    assert_eq!(json["ca_bundle"]["value"], "C:\\ProgramData\\ca.pem");
}

fn the_proxy_for_the_cloud_is_shown_with_its_credentials_hidden() {
    const PROXY_VARIABLES: [&str; 8] = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ];
    let config = |cloud: &str, env: &[(&str, &str)]| {
        let command = || {
            let mut cmd = retriever();
            for var in PROXY_VARIABLES {
                cmd.env_remove(var);
            }
            cmd.envs(env.iter().copied()).args(["--cloud", cloud]);
            cmd
        };
        let (code, stdout, stderr) = run(command().arg("config"));
        assert_eq!(code, 0, "{stderr}");
        (stdout, config_json(&mut command())["proxy"].clone())
    };
    let cloud = "https://cloud.example.org/dicom-web";
    let proxy = [("HTTPS_PROXY", "http://router:hunter2@proxy.example.org:3128")];
    let (table, json) = config(cloud, &proxy);
    assert_eq!(json["value"], "http://***@proxy.example.org:3128", "{json}");
    assert_eq!(
        (&json["source"], &json["origin"]),
        (&"environment".into(), &"HTTPS_PROXY".into())
    );
    assert!(
        table.lines().any(|l| l.starts_with("proxy ")
            && l.contains("http://***@proxy.example.org:3128")
            && l.ends_with("environment HTTPS_PROXY")),
        "{table}"
    );
    assert!(
        !table.contains("hunter2") && !json.to_string().contains("hunter2"),
        "{table}"
    );
    // The port is shown even where the variable leaves it out.
    let (_, json) = config(cloud, &[("https_proxy", "proxy.example.org")]);
    assert_eq!(json["value"], "http://proxy.example.org:80", "{json}");
    let (_, json) = config(cloud, &[proxy[0], ("NO_PROXY", ".example.org")]);
    assert_eq!(json["value"], "none", "{json}");
    assert_eq!(json["source"], Value::Null, "{json}");
    let (_, json) = config("http://127.0.0.1:1/dicom-web", &[proxy[0], ("HTTP_PROXY", proxy[0].1)]);
    assert_eq!(json["value"], "none: plain http is never proxied", "{json}");
}
