//! `retriever watch`: the router loop (see [`crate::watch`]) with its view,
//! one line per study delivered on stdout, and for `--once` the exit status.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::{Result, bail};

use super::study_line::StudyLine;
use crate::cache::Cache;
use crate::cli::WatchArgs;
use crate::config::Settings;
use crate::ui;
use crate::watch::{self, DeliveredStudy, WatchConfig};

pub fn run(settings: &Settings, args: &WatchArgs) -> Result<()> {
    let cloud = settings.cloud()?.clone();
    let routes = settings.routes()?;
    let cache = Cache::open(&settings.cache_root)?.with_limits(settings.cache_limits);
    let config = WatchConfig {
        filters: settings.watch.filters.clone(),
        interval: settings.watch.interval,
        stable_age: settings.watch.stable_age,
        once: args.once,
        rules: settings.priors.clone(),
        metrics_file: args.metrics_file.clone(),
    };
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    let view = ui::watch_reporter(settings.quiet, settings.log_file.as_deref(), &names)?;
    // The lines on the terminal already show each delivery; printing on the
    // same terminal would tear them.
    let print = !(ui::shows_lines(settings.quiet) && std::io::stdout().is_terminal());
    // A destination's address, by its name.
    let to: HashMap<String, String> = routes
        .iter()
        .map(|r| (r.name.clone(), r.store.scu.destination.to_string()))
        .collect();
    let mut out = std::io::stdout();
    let mut on_delivered = |d: &DeliveredStudy| {
        // A study sent before (a prior of an earlier study too) is not news.
        if print && d.sent > 0 {
            let to = to.get(&d.destination).map_or(d.destination.as_str(), String::as_str);
            // Whoever read our output may have gone (`| head`): keep routing.
            let _ = print_delivered(&mut out, d, to, args.json);
        }
    };
    let summary = watch::run(&config, &cloud, &cache, &routes, view, &mut on_delivered)?;
    match summary.error() {
        None => Ok(()),
        Some(e) => bail!("{e}"),
    }
}

/// One line for a study now at a destination: named as its route is (the
/// `AE@HOST:PORT` of a `--to`), with the address `to` too in JSON when the
/// name is not it.
fn print_delivered(out: &mut impl Write, d: &DeliveredStudy, to: &str, json: bool) -> std::io::Result<()> {
    let mut line = StudyLine::new(&d.study)
        .cloud("accession", d.accession.as_deref())
        .with("role", d.role.kind(), d.role.to_string())
        .json_only("prior_of", d.role.prior_of().map(|uid| uid.as_str()))
        .with("destination", d.destination.as_str(), d.destination.as_str());
    if d.destination != to {
        line = line.json_only("to", to);
    }
    line.with("instances", d.instances, format!("{} instances", d.instances))
        .with("sent", d.sent, format!("{} sent", d.sent))
        .with("warnings", d.warnings, format!("{} with a warning", d.warnings))
        .write(out, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Role;
    use crate::uid::Uid;
    use serde_json::json;

    fn line(role: Role) -> serde_json::Value {
        let d = DeliveredStudy {
            study: Uid::parse("1.2.3").unwrap(),
            destination: "PACS@127.0.0.1:104".into(),
            accession: Some("ACC1".into()),
            role,
            instances: 2,
            sent: 2,
            warnings: 0,
        };
        let mut out = Vec::new();
        print_delivered(&mut out, &d, "PACS@127.0.0.1:104", true).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_json_line_says_the_role_and_which_study_a_prior_is_of() {
        let prior = line(Role::Prior {
            of: Uid::parse("1.2.9").unwrap(),
        });
        assert_eq!((&prior["role"], &prior["prior_of"]), (&json!("prior"), &json!("1.2.9")));
        let current = line(Role::Current {
            requested_as: "ACC1".into(),
        });
        assert_eq!(
            (&current["role"], &current["prior_of"]),
            (&json!("current"), &serde_json::Value::Null)
        );
    }
}
