//! The generated documentation: `man/retriever.1` and the shell completions in `completions/`
//! are rendered here from the clap definitions (clap_mangen, clap_complete) and compared with
//! the committed files, so a test fails when they are stale. Regenerate them with
//!
//!     UPDATE_DOCS=1 cargo test --test it docs
//!
//! The man page is one page for the whole program: the global options, then a section per
//! subcommand (its synopsis, description, options and examples, all from clap), then the config
//! file keys (each described by the help of the flag of the same name), environment, files,
//! security, exit status and examples.

use std::process::{Command, Stdio};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::common::repo_root;
use retriever::cli::Cli;
use retriever::config::FileConfig;

tests! {
    man_page_is_up_to_date,
    completions_are_up_to_date,
    man_page_is_complete,
    man_page_renders_without_warnings: ["groff"],
    every_config_key_is_documented,
}

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test it docs";

/// Descriptions of the config file keys that have no flag of the same name, or whose flag's
/// help does not fit the file (these win over the flag's help).
const KEY_HELP: &[(&str, &str)] = &[
    (
        "password",
        "HTTP Basic password. Prefer password_file, or RETRIEVER_PASSWORD, and keep the file readable by \
         its owner only (retriever warns otherwise).",
    ),
    (
        "token",
        "Bearer token, instead of user and password. Prefer token_file or RETRIEVER_TOKEN.",
    ),
    (
        "oauth_token_url",
        "OAuth2 token endpoint (client-credentials grant, RFC 6749 4.4), instead of user and password \
         or token: access tokens are asked for there and renewed before they run out. https, or plain \
         http to this computer or with allow_insecure_http. Also RETRIEVER_OAUTH_TOKEN_URL.",
    ),
    ("oauth_client_id", "OAuth2 client id. Also RETRIEVER_OAUTH_CLIENT_ID."),
    (
        "oauth_client_secret",
        "OAuth2 client secret. Prefer oauth_client_secret_file or RETRIEVER_OAUTH_CLIENT_SECRET.",
    ),
    (
        "oauth_client_secret_file",
        "File holding the OAuth2 client secret (first line); keep it readable by its owner only.",
    ),
    (
        "oauth_scope",
        "The scope asked for with each token, if the token endpoint wants one.",
    ),
    (
        "oauth_audience",
        "The audience asked for with each token, for token endpoints that want one (Auth0, Okta).",
    ),
    (
        "oauth_client_auth",
        "How the client id and secret go to the token endpoint: \"basic\" (HTTP Basic) or \"body\" \
         (in the form, for servers that refuse Basic) [default: basic]",
    ),
    (
        "token_command",
        "A command that prints an access token on one line (e.g. gcloud auth print-access-token), \
         instead of user and password or token; run by sh -c (cmd /C on Windows), stopped after 60s, and \
         run again after token_command_lifetime or when the cloud refuses its token.",
    ),
    (
        "token_command_lifetime",
        "How long a token printed by token_command is used before the command is run again [default: 5m]",
    ),
    (
        "retention",
        "How long a study stays in the cache after it was last fetched or delivered; prune \
         --older-than overrides it [default: 4h]",
    ),
    (
        "max_age",
        "Past this age prune removes a study even if it was not delivered, and says so [default: 7d]",
    ),
    (
        "watch_filter",
        "The studies watch routes: an object of QIDO-RS matching keys and values, e.g. \
         {\"ModalitiesInStudy\": \"CT\", \"StudyDate\": \"last 24 hours\"}; a date key may be a moving \
         window. watch --filter replaces it [default: {\"StudyDate\": \"last 24 hours\"}]",
    ),
    (
        "coerce",
        "Tag coercion: a list of rules applied in order to every instance sent to the destination, \
         e.g. [{\"set\": \"IssuerOfPatientID\", \"value\": \"HOSP\"}, {\"set\": \"PatientID\", \"value\": \
         \"EXT-{value}\"}, {\"map\": \"InstitutionName\", \"values\": {\"A\": \"B\"}}, {\"remove\": \"private\"}]. \
         The cached file is never changed; a wrong rule stops every command [default: none]",
    ),
    (
        "destinations",
        "Several destinations instead of to: a list of {\"name\", \"to\"} objects, each with its own \
         calling_ae, associations, to_tls, to_ca, to_cert, to_key, to_server_name and coerce if it differs \
         from the top level, and \"when\": the studies it gets, e.g. {\"role\": \"current\", \"modality\": \
         [\"CT\", \"MR\"]}. --to or RETRIEVER_DEST replaces the list; --dest NAME chooses from it \
         [default: none]",
    ),
];

/// Variables read besides the ones of the flags.
const MORE_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "RETRIEVER_PASSWORD",
        "The HTTP Basic password itself (there is no flag for it: other users can read a process's arguments).",
    ),
    (
        "RETRIEVER_TOKEN",
        "A Bearer token itself, used instead of user and password.",
    ),
    (
        "RETRIEVER_OAUTH_TOKEN_URL, RETRIEVER_OAUTH_CLIENT_ID",
        "The OAuth2 token endpoint and client id (config keys oauth_token_url, oauth_client_id).",
    ),
    (
        "RETRIEVER_OAUTH_CLIENT_SECRET",
        "The OAuth2 client secret itself (there is no flag for it).",
    ),
    (
        "LOCALAPPDATA, XDG_CACHE_HOME, HOME",
        "Where the default cache directory is (see FILES).",
    ),
    (
        "APPDATA, ProgramData, XDG_CONFIG_HOME",
        "Where the config file is looked for when none is named (see FILES).",
    ),
];

const DESCRIPTION: &str = "\
retriever runs on one machine inside a hospital or radiology group's network. It logs in to a \
cloud imaging archive over HTTPS (DICOMweb: QIDO-RS to search, WADO-RS to retrieve), pulls \
studies and their relevant prior studies into a local cache, and delivers them to a local PACS \
or viewer with DICOM C-STORE. Every connection is outbound: no VPN, no inbound port, no static IP.

The subcommands share one cache directory and can run at the same time: watch routes new \
studies all day, fetch and store do it on demand, prune expires the cache (from Windows Task \
Scheduler or a systemd timer), ls shows what is there, echo checks the destination, config \
shows the settings in effect.

Global options are accepted before or after the subcommand. Every option that is a setting can \
also come from its environment variable or the config file: a flag beats the environment, the \
environment beats the config file, the config file beats the default.";

const FILES: &[(&str, &str)] = &[
    (
        "~/.config/retriever/config.json, /etc/retriever/config.json",
        "The config file when none is named with --config or RETRIEVER_CONFIG: the first that exists \
         (XDG_CONFIG_HOME replaces ~/.config).",
    ),
    (
        "%APPDATA%\\retriever\\config.json, %ProgramData%\\retriever\\config.json",
        "The same on Windows.",
    ),
    (
        "~/.cache/retriever, %LOCALAPPDATA%\\retriever",
        "The default cache directory (XDG_CACHE_HOME replaces ~/.cache), tagged with CACHEDIR.TAG. \
         It holds studies/STUDY_UID/ (a manifest, the instances, the delivery journals), locks/ (one \
         lock file per study, so that prune never removes a study in use) and watch/ (what watch has \
         seen and delivered). Files appear under their final names only once complete.",
    ),
];

const SECURITY: &str = "\
Every connection is outbound; retriever listens on no port. The cloud hop is HTTPS (TLS 1.2 or \
1.3), always: plain http:// is refused unless the cloud is on this machine (a loopback address) \
or --allow-insecure-http is given, and a plain-http cloud never goes through a proxy. The PACS \
hop is DICOM TLS with --to-tls, never falling back to plain TCP; without it, plain TCP on the \
hospital LAN.

Verified: the cloud's certificate (chain up to the system's authorities, the built-in Mozilla \
roots or --ca-bundle; dates; the host name or IP address of the URL), which cannot be turned \
off; with --to-tls the PACS's certificate the same way (--to-ca; the host of --to, or \
--to-server-name). Our certificates, when a peer asks for one: --client-cert and --client-key \
for the cloud (mutual TLS), --to-cert and --to-key for the PACS. A cloud that wants a \
certificate and gets none, or refuses ours, ends the run at once with an error that says which.

Secrets (the password, a Bearer token, the OAuth2 client secret, the private keys) come from \
the environment, from a file named by a setting, or from the config file, never from the \
command line. On Unix a file holding one that other users can read is warned about on every \
run. They are never shown: retriever config shows ***, and error messages and debug output leave \
them out. OAuth2 client credentials (oauth_token_url, oauth_client_id, oauth_client_secret or \
oauth_client_secret_file, oauth_scope, oauth_audience) get short-lived access tokens, renewed \
before they expire and kept in memory only; token_command runs a command that prints one.

The cache holds patient data at rest, not encrypted by retriever (use an encrypted disk where \
policy asks for it); on Unix it is private to its account (directories 0700, files 0600). A \
study is kept 4 hours by default after it was last fetched or delivered (retention), then \
removed by retriever prune.";

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Everything asked for was done."),
    (
        "1",
        "Something failed; a one-line summary of what, on what, and why is on standard error.",
    ),
    ("2", "The command line was wrong."),
    (
        "130",
        "Interrupted with Ctrl-C (what was in flight was finished or abandoned cleanly).",
    ),
];

const EXAMPLES: &str = "\
Set up once (or put the same in the config file), check, then route all day:

    export RETRIEVER_CLOUD=https://cloud.example.org/dicom-web
    export RETRIEVER_USER=router RETRIEVER_PASSWORD_FILE=/etc/retriever/password
    export RETRIEVER_DEST=PACS@10.0.0.5:104
    retriever config
    retriever echo
    retriever watch

A technician, on demand:

    retriever fetch ACC123 --store
    retriever fetch ACC123 --dry-run
    retriever ls

Expire the cache, from a scheduler:

    retriever prune --older-than 4h";

fn man_page_is_up_to_date() {
    check("man/retriever.1", &man_page());
}

fn completions_are_up_to_date() {
    for (shell, file) in [
        (Shell::Bash, "completions/retriever.bash"),
        (Shell::Zsh, "completions/_retriever"),
        (Shell::Fish, "completions/retriever.fish"),
        (Shell::PowerShell, "completions/_retriever.ps1"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "retriever", &mut out);
        check(file, &String::from_utf8(out).unwrap());
    }
}

/// The man page has a section for every subcommand and the sections an administrator looks for.
fn man_page_is_complete() {
    let page = man_page();
    let cli = Cli::command();
    for sub in cli.get_subcommands() {
        let heading = format!(".SH \"RETRIEVER {}\"", sub.get_name().to_uppercase());
        assert!(page.contains(&heading), "no section `{heading}` in the man page");
    }
    for section in [
        "CONFIGURATION FILE",
        "ENVIRONMENT",
        "FILES",
        "SECURITY",
        "EXIT STATUS",
        "EXAMPLES",
    ] {
        assert!(
            page.contains(&format!(".SH \"{section}\"")) || page.contains(&format!(".SH {section}")),
            "no {section} section in the man page"
        );
    }
}

/// The man page renders without a warning from groff.
fn man_page_renders_without_warnings() {
    let page = man_page();
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run groff");
    std::io::Write::write_all(&mut groff.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let out = groff.wait_with_output().unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.trim().is_empty(), "groff: {warnings}");
}

/// Every config file key is in the man page and the README, so none is a secret of the code.
fn every_config_key_is_documented() {
    let page = man_page();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for key in file_config_keys() {
        assert!(
            page.contains(&format!(".TP\n\\fB{key}\\fR\n")),
            "config key `{key}` is not described in the man page"
        );
        assert!(
            readme.contains(&format!("`{key}`")),
            "config key `{key}` is not in README.md (the config file table)"
        );
    }
}

/// Compares a generated file with the committed one; writes it with `UPDATE_DOCS=1`.
fn check(relative: &str, rendered: &str) {
    let path = repo_root().join(relative);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == rendered {
        return;
    }
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rendered).unwrap_or_else(|e| panic!("failed to write `{}`: {e}", path.display()));
        eprintln!("updated `{relative}`");
        return;
    }
    panic!(
        "`{relative}` is stale: it does not match the clap definitions in src/cli.rs. \
         Regenerate it with `{REGENERATE}` and commit the result."
    );
}

/// The keys `FileConfig` accepts, read from serde's own message for an unknown key (so the list
/// cannot drift from the struct).
pub fn file_config_keys() -> Vec<String> {
    let error = serde_json::from_str::<FileConfig>(r#"{"?": 0}"#)
        .unwrap_err()
        .to_string();
    let list = error
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("unexpected serde message: {error}"))
        .1;
    list.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn man_page() -> String {
    let cli = Cli::command();
    let man = Man::new(cli.clone()).title("RETRIEVER");
    let mut page = String::new();
    page += &body(|w| man.render_title(w));
    page += &body(|w| man.render_name_section(w));
    page += &body(|w| man.render_synopsis_section(w));
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    paragraphs(&mut roff, DESCRIPTION);
    page += &body(|w| roff.to_writer(w));
    page += &body(|w| man.render_options_section(w)).replacen(".SH OPTIONS", ".SH \"GLOBAL OPTIONS\"", 1);

    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let mut roff = Roff::new();
        roff.control("SH", [format!("RETRIEVER {}", name.to_uppercase()).as_str()]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        roff.control("PP", []);
        page += &body(|w| roff.to_writer(w));
        let man = Man::new(sub.clone().bin_name(format!("retriever {name}")));
        page += &body(|w| man.render_synopsis_section(w)).replacen(".SH SYNOPSIS\n", "", 1);
        page += &demote_headings(&body(|w| man.render_options_section(w)));
        if let Some(after) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
            let mut roff = Roff::new();
            paragraphs(&mut roff, &after.to_string());
            page += &body(|w| roff.to_writer(w));
        }
    }

    let mut roff = Roff::new();
    roff.control("SH", ["CONFIGURATION FILE"]);
    paragraphs(
        &mut roff,
        "A JSON object. Every key is optional and is named after the long option it stands for, \
         with _ for - (--prior-years is prior_years). Flags and environment variables beat it. \
         Unknown keys are refused, so a misspelt one is not silently ignored. An example is \
         examples/retriever.json in the source. On Unix, retriever warns when a config file that \
         holds a password or token can be read by other users. The keys:",
    );
    for key in file_config_keys() {
        let help = KEY_HELP
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, h)| h.to_string())
            .or_else(|| flag_help(&cli, &key))
            .unwrap_or_else(|| {
                panic!(
                    "config key `{key}` has no flag of the same name: describe it in KEY_HELP in {}",
                    file!()
                )
            });
        roff.control("TP", []);
        roff.text([bold(key.as_str())]);
        roff.text([roman(help)]);
    }

    roff.control("SH", ["ENVIRONMENT"]);
    let mut seen = Vec::new();
    let mut built = cli.clone();
    built.build();
    let commands = std::iter::once(&built).chain(built.get_subcommands());
    for arg in commands.flat_map(|c| c.get_arguments()) {
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            continue;
        };
        if seen.contains(&env) {
            continue;
        }
        roff.control("TP", []);
        roff.text([bold(env.as_str())]);
        let long = arg.get_long().unwrap_or_default();
        roff.text([roman("As "), bold(format!("--{long}")), roman(".")]);
        seen.push(env);
    }
    for (name, text) in MORE_ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*text)]);
    }

    roff.control("SH", ["FILES"]);
    for (name, text) in FILES {
        roff.control("TP", []);
        roff.text([italic(*name)]);
        roff.text([roman(*text)]);
    }

    roff.control("SH", ["SECURITY"]);
    paragraphs(&mut roff, SECURITY);

    roff.control("SH", ["EXIT STATUS"]);
    for (code, text) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(*code)]);
        roff.text([roman(*text)]);
    }

    roff.control("SH", ["EXAMPLES"]);
    paragraphs(&mut roff, EXAMPLES);

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("storescp"),
        roman("(1), "),
        bold("echoscu"),
        roman("(1), "),
        bold("Orthanc"),
        roman("(1); the README of retriever."),
    ]);
    page += &body(|w| roff.to_writer(w));
    page += &body(|w| man.render_version_section(w));
    format!("{PREAMBLE}{page}")
}

/// What roff puts at the top of everything it writes; once per page is enough.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// Roff text rendered by `render`, without the [`PREAMBLE`].
fn body(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    render(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    text.strip_prefix(PREAMBLE).map(str::to_string).unwrap_or(text)
}

/// The help of the flag whose clap id is `id`, in any subcommand.
fn flag_help(cli: &clap::Command, id: &str) -> Option<String> {
    std::iter::once(cli)
        .chain(cli.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long_help().or_else(|| a.get_help()))
        .map(|h| h.to_string().replace('\n', " "))
}

/// A subcommand's option headings become subsections of its section.
fn demote_headings(roff: &str) -> String {
    roff.lines()
        .map(|line| match line.strip_prefix(".SH ") {
            Some(heading) => format!(".SS {heading}\n"),
            None => format!("{line}\n"),
        })
        .collect()
}

/// Text with blank lines between paragraphs; a paragraph with indented lines (examples) is
/// kept as it is, the others are filled.
fn paragraphs(roff: &mut Roff, text: &str) {
    for paragraph in text.split("\n\n") {
        roff.control("PP", []);
        let preformatted = paragraph.lines().any(|l| l.starts_with(' '));
        if preformatted {
            roff.control("nf", []);
            for line in paragraph.lines() {
                roff.text([roman(line)]);
            }
            roff.control("fi", []);
        } else {
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
    }
}
