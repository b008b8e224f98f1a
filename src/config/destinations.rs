//! The config file's `destinations`: several DICOM destinations, each with a
//! name, its address, its rules (`when`) and whatever it sets differently from
//! the top level (calling AE title, associations, TLS, coercions). A key an
//! entry does not set takes the top-level value (flag, then environment, then
//! the file's top level, then the default). Entries are read one by one so
//! that every error names the entry and its key (`destinations[pacs].to`), and
//! a wrong list stops every command at start-up: a study must never go to a
//! destination nobody meant, nor miss the one that was meant.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::{DicomSettings, Entry, FileConfig, Layers, Source, TlsSettings, UsageError, Wrong, check_path, client_tls};
use crate::delivery::StoreOptions;
use crate::dimse::{Destination, TlsOptions, check_ae_title};
use crate::routing::{Route, When};

/// What an entry takes from the top level when it does not say.
pub(super) struct Inherited<'a> {
    pub calling_ae: &'a str,
    pub dicom: &'a DicomSettings,
    pub tls: &'a TlsSettings,
}

/// One entry of `destinations`, as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationEntry {
    name: String,
    to: String,
    calling_ae: Option<String>,
    associations: Option<u16>,
    to_tls: Option<bool>,
    to_ca: Option<PathBuf>,
    to_cert: Option<PathBuf>,
    to_key: Option<PathBuf>,
    to_server_name: Option<String>,
    coerce: Option<Vec<Value>>,
    when: Option<Value>,
}

/// The longest name of a destination: it is typed after `--dest` and shown
/// in every line about a delivery.
const MAX_NAME: usize = 32;

/// The config file's `destinations`, as read.
#[derive(Default)]
pub(super) struct Resolved {
    /// The routes; `None` when the file has none, or when `--to` or
    /// `RETRIEVER_DEST` overrides them.
    pub routes: Option<Vec<Result<Route, Wrong>>>,
    /// The attributes the rules of every entry read (used or not: the cache
    /// is shared with runs that use the list), sorted.
    pub attribute_tags: Vec<u32>,
}

/// Reads the config file's `destinations`; when `overridden` (`--to` or
/// `RETRIEVER_DEST` given) the list is still checked, and `retriever config`
/// says it is not used.
pub(super) fn resolve(
    l: &mut Layers<'_>,
    file: &FileConfig,
    inherited: &Inherited<'_>,
    overridden: bool,
) -> Result<Resolved> {
    let Some(list) = &file.destinations else {
        return Ok(Resolved::default());
    };
    let place = l.in_file("destinations");
    let usage = |e: anyhow::Error| anyhow::Error::new(UsageError(format!("{e:#}")));
    if file.to.is_some() {
        return Err(usage(anyhow!(
            "{place} and `to` are both set; use one: `to` for a single destination, `destinations` for several"
        )));
    }
    if list.is_empty() {
        return Err(usage(anyhow!(
            "{place} is empty; list at least one destination, or leave it out"
        )));
    }
    let mut read: Vec<(String, DestinationEntry, Destination)> = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let label = label(raw, i);
        let (entry, to) = read_entry(raw, &label)
            .with_context(|| format!("in {place}"))
            .map_err(usage)?;
        if read.iter().any(|(_, other, _)| other.name == entry.name) {
            return Err(usage(anyhow!(
                "in {place}: the name `{}` is given to two destinations; give each its own name",
                entry.name
            )));
        }
        // Two entries for one destination would share its delivery
        // journal, and the second's rules would be judged by the first's.
        if let Some((other, ..)) = read.iter().find(|(_, _, d)| d.key() == to.key()) {
            return Err(usage(anyhow!(
                "in {place}: `{other}.to` and `{label}.to` are both `{to}`; list each destination once, with \
                 the rules of both in one `when`"
            )));
        }
        read.push((label, entry, to));
    }
    let names: Vec<&str> = read.iter().map(|(_, e, _)| e.name.as_str()).collect();
    l.entries.push(Entry {
        key: "destinations".into(),
        value: Some(match overridden {
            true => format!("{} (not used: {} given)", names.join(", "), l.origin("to")),
            false => names.join(", "),
        }),
        source: Source::ConfigFile,
        origin: None,
    });
    let mut routes = Vec::new();
    let mut attribute_tags = Vec::new();
    for (label, entry, to) in read {
        let route = route(l, &label, entry, to, inherited, !overridden, &mut attribute_tags)
            .with_context(|| format!("in {place}"))
            .map_err(usage)?;
        routes.extend(route);
    }
    attribute_tags.sort_unstable();
    attribute_tags.dedup();
    Ok(Resolved {
        routes: (!overridden).then_some(routes),
        attribute_tags,
    })
}

/// `destinations[NAME]`, or `destinations[i]` for an entry without a
/// usable name.
fn label(raw: &Value, i: usize) -> String {
    match raw.get("name").and_then(Value::as_str) {
        Some(name) if valid_name(name) => format!("destinations[{name}]"),
        _ => format!("destinations[{i}]"),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The entry's keys, checked for what needs no other setting.
fn read_entry(raw: &Value, label: &str) -> Result<(DestinationEntry, Destination)> {
    if !raw.is_object() {
        bail!("`{label}` is `{raw}`, not an object such as {{\"name\": \"pacs\", \"to\": \"PACS@10.0.0.5:104\"}}");
    }
    let entry: DestinationEntry =
        serde_json::from_value(raw.clone()).map_err(|e| anyhow!("`{label}` is not valid: {e}"))?;
    if !valid_name(&entry.name) {
        bail!(
            "`{label}.name` is `{}`; a name is 1 to {MAX_NAME} letters, digits, `_`, `.` or `-`",
            entry.name.escape_default()
        );
    }
    let to = Destination::parse(&entry.to).with_context(|| format!("`{label}.to` is not usable"))?;
    let paths = [
        ("to_ca", &entry.to_ca),
        ("to_cert", &entry.to_cert),
        ("to_key", &entry.to_key),
    ];
    for (key, path) in paths {
        if let Some(path) = path {
            check_path(&format!("{label}.{key}"), path)?;
        }
    }
    Ok((entry, to))
}

/// The entry as a route, its settings recorded for `retriever config`;
/// `None` when the list is not used (`record` false), once checked. A TLS
/// setup that fails (an unreadable file) is kept for the commands that
/// deliver, as for `--to`. The attributes its rules read are added to `tags`.
fn route(
    l: &mut Layers<'_>,
    label: &str,
    entry: DestinationEntry,
    to: Destination,
    inherited: &Inherited<'_>,
    record: bool,
    tags: &mut Vec<u32>,
) -> Result<Option<Result<Route, Wrong>>> {
    let dicom = inherited.dicom;
    let calling_ae = match &entry.calling_ae {
        Some(ae) => check_ae_title(ae).with_context(|| format!("`{label}.calling_ae` is not usable"))?,
        None => inherited.calling_ae.to_string(),
    };
    let associations = entry.associations.unwrap_or(dicom.associations);
    if !(1..=32).contains(&associations) {
        bail!("`{label}.associations` must be between 1 and 32, not {associations}");
    }
    let coerce = match &entry.coerce {
        Some(list) => crate::coerce::Coercions::parse(list)
            .map_err(anyhow::Error::new)
            .with_context(|| format!("`{label}.coerce` is wrong; fix or remove the rule"))?,
        None => dicom.coerce.clone(),
    };
    let when = match &entry.when {
        Some(rules) => When::parse(rules, &format!("{label}.when"))?,
        None => When::default(),
    };
    tags.extend(when.attribute_tags());
    let top = &inherited.tls.opts;
    let tls = TlsSettings {
        on: entry.to_tls.unwrap_or(inherited.tls.on),
        said_off: entry.to_tls == Some(false) || (entry.to_tls.is_none() && inherited.tls.said_off),
        opts: TlsOptions {
            ca: entry.to_ca.clone().or_else(|| top.ca.clone()),
            cert: entry.to_cert.clone().or_else(|| top.cert.clone()),
            key: entry.to_key.clone().or_else(|| top.key.clone()),
            server_name: entry.to_server_name.clone().or_else(|| top.server_name.clone()),
        },
    };
    if !record {
        return Ok(None);
    }
    if let Some(key) = &entry.to_key {
        l.warn_if_others_can_read(key, "TLS key file");
    }

    let own = |key: &str| match key {
        "to_tls" => entry.to_tls.is_some(),
        "to_ca" => entry.to_ca.is_some(),
        "to_cert" => entry.to_cert.is_some(),
        "to_key" => entry.to_key.is_some(),
        "to_server_name" => entry.to_server_name.is_some(),
        _ => false,
    };
    let show_path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let shown: [(&'static str, Option<String>); 9] = [
        ("to", Some(to.to_string())),
        ("calling_ae", entry.calling_ae.clone()),
        ("associations", entry.associations.map(|a| a.to_string())),
        ("to_tls", entry.to_tls.map(|on| on.to_string())),
        ("to_ca", show_path(&entry.to_ca)),
        ("to_cert", show_path(&entry.to_cert)),
        ("to_key", show_path(&entry.to_key)),
        ("to_server_name", entry.to_server_name.clone()),
        ("coerce", entry.coerce.is_some().then(|| coerce.describe())),
    ];
    for (key, value) in shown {
        record_entry(l, label, key, value);
    }
    l.entries.push(Entry {
        key: format!("{label}.when").into(),
        value: entry.when.as_ref().map(Value::to_string),
        source: if entry.when.is_some() {
            Source::ConfigFile
        } else {
            Source::Default
        },
        origin: None,
    });

    let origin = |key: &str| match own(key) {
        true => l.in_file(&format!("{label}.{key}")),
        false => l.origin(key),
    };
    let tls = client_tls(&tls, Some(&to.host), &origin)
        .with_context(|| format!("the destination `{}` ({to}) cannot be used", entry.name));
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => return Ok(Some(Err(Wrong::from(e)))),
    };
    let mut store = StoreOptions::new(dicom.scu_options(to, tls, &calling_ae));
    store.scu.coerce = coerce;
    store.associations = usize::from(associations);
    store.retries = dicom.store_retries;
    Ok(Some(Ok(Route {
        name: entry.name,
        store,
        when,
    })))
}

/// One key of an entry for `retriever config`: its own value, or the
/// top-level one it inherits, with that one's source.
fn record_entry(l: &mut Layers<'_>, label: &str, key: &'static str, own: Option<String>) {
    let entry = match own {
        Some(value) => Entry {
            key: format!("{label}.{key}").into(),
            value: Some(value),
            source: Source::ConfigFile,
            origin: None,
        },
        None => {
            let top = l.entries.iter().rev().find(|e| e.key == key);
            let (value, source, origin) = match top {
                Some(top) => (top.value.clone(), top.source, top.origin.clone()),
                None => (None, Source::Default, None),
            };
            let origin = match (source, origin) {
                (Source::ConfigFile, None) => Some(format!("`{key}`")),
                (_, origin) => origin,
            };
            Entry {
                key: format!("{label}.{key}").into(),
                value,
                source,
                origin,
            }
        }
    };
    l.entries.push(entry);
}
