//! `retriever config`: the configuration a run would use, each value with
//! where it came from (flag, environment, config file, default), secrets
//! shown as `***`. For the administrator who wonders why retriever talks to
//! the wrong place, and for checking a config file before relying on it.

use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::ConfigArgs;
use crate::config::{Entry, Settings, Source};
use crate::dicomweb::{Proxy, ProxyOrigin};

pub fn run(settings: &Settings, args: &ConfigArgs) -> Result<()> {
    let entries = settings.entries();
    // Not a setting of retriever's own, but often why the cloud cannot be
    // reached from a hospital network.
    let proxy = settings.cloud().ok().map(|cloud| cloud.proxy());
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", to_json(entries, proxy.as_ref()))
    } else {
        write_table(&mut out, entries, proxy.as_ref())
    }
    .context("failed to write to standard output")?;
    drop(out);

    // A setting that is missing may be fine (`store` needs no cloud); one
    // that is set but wrong is what this command is for.
    let mut wrong = 0;
    let is_set = |key: &str| entries.iter().any(|e| e.key == key && e.value.is_some());
    if let Err(e) = settings.cloud() {
        if is_set("cloud") {
            eprintln!("error: {e:#}");
            wrong += 1;
        } else {
            eprintln!("note: no cloud archive is set; `fetch` and `watch` need --cloud or RETRIEVER_CLOUD");
        }
    }
    let routes = settings.routes();
    match &routes {
        Ok(_) => {}
        Err(e) if is_set("to") || is_set("destinations") || !settings.dest_names.is_empty() => {
            eprintln!("error: {e:#}");
            wrong += 1;
        }
        Err(_) => eprintln!(
            "note: no destination is set; `store`, `echo` and `watch` need --to or RETRIEVER_DEST, or \
             `destinations` in the config file"
        ),
    }
    // The one destination's TLS error is already the error of the routes.
    if let Err(e) = settings.destination_tls()
        && !(routes.is_err() && is_set("to"))
    {
        eprintln!("error: {e:#}");
        wrong += 1;
    }
    match wrong {
        0 => Ok(()),
        1 => bail!("a setting is wrong (see above)"),
        n => bail!("{n} settings are wrong (see above)"),
    }
}

/// `SETTING  VALUE  SOURCE` in aligned columns.
fn write_table(out: &mut impl Write, entries: &[Entry], proxy: Option<&Proxy>) -> std::io::Result<()> {
    let mut rows: Vec<[String; 3]> = entries
        .iter()
        .map(|e| {
            [
                e.key.to_string(),
                e.value.clone().unwrap_or_else(|| "-".into()),
                source(e),
            ]
        })
        .collect();
    if let Some(proxy) = proxy {
        let source = match proxy_source(proxy) {
            Some((source, Some(origin))) => format!("{source} {origin}"),
            Some((source, None)) => source.to_string(),
            None => "-".to_string(),
        };
        rows.push(["proxy".to_string(), proxy.to_string(), source]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(7);
    let (w0, w1) = (width(0), width(1));
    writeln!(out, "{:<w0$}  {:<w1$}  SOURCE", "SETTING", "VALUE")?;
    for [key, value, source] in rows {
        writeln!(out, "{key:<w0$}  {value:<w1$}  {source}")?;
    }
    Ok(())
}

/// E.g. `flag --cloud`, `environment RETRIEVER_USER`, `config file`, `default`, `not set`.
fn source(e: &Entry) -> String {
    match (e.source, &e.value, &e.origin) {
        (Source::Default, None, _) => "not set".into(),
        (source, _, Some(origin)) => format!("{source} {origin}"),
        (source, _, None) => source.to_string(),
    }
}

/// Where the proxy in use is set: (source, origin) as for a setting.
fn proxy_source(proxy: &Proxy) -> Option<(&'static str, Option<&'static str>)> {
    match proxy {
        Proxy::Via {
            origin: ProxyOrigin::Environment(variable),
            ..
        } => Some(("environment", Some(variable))),
        Proxy::Via {
            origin: ProxyOrigin::System,
            ..
        } => Some(("system proxy settings", None)),
        Proxy::None | Proxy::NeverForPlainHttp => None,
    }
}

fn to_json(entries: &[Entry], proxy: Option<&Proxy>) -> serde_json::Value {
    let mut map = entries
        .iter()
        .map(|e| {
            let source = match (e.source, &e.value) {
                (Source::Default, None) => None,
                (source, _) => Some(source.to_string()),
            };
            (
                e.key.to_string(),
                json!({ "value": e.value, "source": source, "origin": e.origin }),
            )
        })
        .collect::<serde_json::Map<_, _>>();
    if let Some(proxy) = proxy {
        let (source, origin) = proxy_source(proxy).unzip();
        map.insert(
            "proxy".to_string(),
            json!({ "value": proxy.to_string(), "source": source, "origin": origin.flatten() }),
        );
    }
    serde_json::Value::Object(map)
}
