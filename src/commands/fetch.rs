//! `retriever fetch`: studies and their priors from the cloud into the cache.

use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::study_line::StudyLine;
use crate::cache::{Cache, Role, StudyInfo};
use crate::cli::FetchArgs;
use crate::config::Settings;
use crate::delivery::Asked;
use crate::dicomweb::Client;
use crate::fetch::{self, Fetched, Plan};
use crate::routing::Routes;
use crate::store::{Fanout, deliver_routed};
use crate::text::escape;
use crate::ui;
use crate::uid::Uid;

pub fn run(settings: &Settings, args: &FetchArgs) -> Result<()> {
    let mut cloud = settings.cloud()?.clone();
    if let Some(ts) = &args.transfer_syntax {
        cloud.transfer_syntax = Some(ts.to_string());
    }
    let client = Client::new(&cloud)?;
    // With --store, a missing or wrong destination is found before any download.
    let store = if args.store && !args.dry_run {
        Some(settings.routes()?)
    } else {
        None
    };
    let reporter = ui::reporter(settings.quiet);
    let plan = fetch::plan(&client, &args.studies, &settings.priors, &*reporter);
    // A search cut short by Ctrl-C is not a study that could not be found.
    crate::interrupt::check()?;
    if args.dry_run {
        // Where the studies would go, when the destinations are known:
        // a dry run needs none, but says why it shows none.
        let routes = settings
            .routes()
            .inspect_err(|e| eprintln!("note: where the studies would go is not shown: {e:#}"))
            .ok();
        print_plan(&plan, routes.as_ref(), args.json)?;
        return summarize(plan.failures.len(), 0, plan.studies.len(), &plan.failures);
    }
    let cache = Cache::open(&settings.cache_root)?.with_limits(settings.cache_limits);
    let planned = plan.studies.len();
    let mut stdout = std::io::stdout().lock();
    let mut print_error = None;
    let outcome = fetch::fetch(
        &client,
        &cache,
        plan.studies,
        cloud.jobs,
        &fetch::FetchOptions::new(cloud.retries),
        &*reporter,
        &mut |f| {
            reporter.suspend(&mut || match print_fetched(&mut stdout, f, args.json) {
                // Whoever read our output has gone (`| head`): keep fetching, stop printing.
                Err(e) if is_broken_pipe(&e) => {}
                Err(e) => {
                    print_error.get_or_insert(e);
                }
                Ok(()) => {}
            })
        },
    )?;
    if let Some(e) = print_error {
        return Err(e).context("failed to write to standard output");
    }
    for (planned, error) in &outcome.failed {
        let label = planned.info.accession.as_deref().map_or("no accession".into(), escape);
        eprintln!("error: study {} ({label}, {}): {error:#}", planned.uid, planned.role);
    }
    let fetched = summarize(plan.failures.len(), outcome.failed.len(), planned, &plan.failures);
    let Some(routes) = store else { return fetched };
    // --store: the studies made complete go to their destinations, whatever
    // happened to the others.
    let complete: Vec<Uid> = outcome.fetched.iter().map(|f| f.planned.uid.clone()).collect();
    if complete.is_empty() {
        return fetched;
    }
    let fanout = Fanout {
        cache: &cache,
        routes: &routes,
        // A study the destination chosen with `--dest` does not take is
        // passed over, not a failure: fetch adds priors nobody named.
        chosen: false,
        cloud: settings.cloud().ok().cloned(),
        reporter: &*reporter,
    };
    // Nothing on stdout: fetch printed these studies already.
    let routed = deliver_routed(
        &fanout,
        &mut complete.into_iter().map(|uid| (uid, Asked::Named)),
        &|_, _| Ok(()),
    );
    let stored = super::finish_delivery(routed, settings.quiet, 0);
    match (fetched, stored) {
        (_, Err(e)) if crate::interrupt::is_interrupted(&e) => Err(e),
        (Ok(()), stored) => stored,
        (Err(e), Ok(())) => Err(e),
        (Err(f), Err(s)) => bail!("{f:#}; {s:#}"),
    }
}

/// Prints why each identifier failed to resolve, and fails the run when
/// anything failed.
fn summarize(unresolved: usize, failed: usize, total: usize, failures: &[(String, anyhow::Error)]) -> Result<()> {
    for (id, error) in failures {
        eprintln!("error: {id}: {error:#}");
    }
    match (unresolved, failed) {
        (0, 0) => Ok(()),
        (0, f) => bail!("{f} of {total} studies could not be fetched completely; run the same command again to resume"),
        (u, 0) => bail!("{u} of the studies asked for could not be found or searched"),
        (u, f) => bail!(
            "{u} of the studies asked for could not be found or searched, and {f} could not be fetched completely"
        ),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn print_fetched(out: &mut impl Write, f: &Fetched, json: bool) -> Result<()> {
    let info = &f.planned.info;
    let role = &f.planned.role;
    let modalities = if info.modalities.is_empty() {
        "-".to_string()
    } else {
        escape(&info.modalities.join("/"))
    };
    StudyLine::new(&f.planned.uid)
        .cloud("accession", info.accession.as_deref())
        .with("role", role.kind(), role.to_string())
        .json_only("prior_of", role.prior_of().map(|uid| uid.as_str()))
        .cloud("patient_id", info.patient_id.as_deref())
        .json_only("issuer_of_patient_id", info.issuer_of_patient_id.as_deref())
        .cloud("study_date", info.study_date.as_deref())
        .with("modalities", info.modalities.clone(), modalities)
        .with("instances", f.instances, format!("{} instances", f.instances))
        .with("bytes", f.bytes, crate::format::bytes(f.bytes))
        .with("path", f.path.to_string_lossy(), f.path.display().to_string())
        .write(out, json)?;
    Ok(())
}

/// The dry run: each current study, the verdict on each candidate prior,
/// then where each study fetched would be delivered and why.
fn print_plan(plan: &Plan, routes: Option<&Routes>, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // A single `--to` takes every study: one line says so, at the end.
    let single = routes.filter(|r| !r.is_configured());
    let explained = routes.filter(|_| single.is_none());
    for planned in &plan.studies {
        let Role::Current { requested_as } = &planned.role else {
            continue;
        };
        let info = &planned.info;
        let mut fetched = vec![(info, planned.role.clone())];
        if json {
            let mut row = json!({
                "study_uid": planned.uid.as_str(), "accession": info.accession, "role": "current",
                "requested_as": requested_as, "patient_id": info.patient_id, "study_date": info.study_date,
                "modalities": info.modalities, "fetch": true,
            });
            add_routes(&mut row, routes, info, &planned.role);
            writeln!(out, "{row}")?;
        } else {
            writeln!(
                out,
                "fetch  current  {}  {}  patient {}  {}  {}  (asked as {})",
                planned.uid,
                super::field(info.accession.as_deref()),
                super::field(info.patient_id.as_deref()),
                super::field(info.study_date.as_deref()),
                escape(&info.modalities.join("/")),
                escape(requested_as),
            )?;
        }
        if let Some(report) = plan.priors.iter().find(|r| r.current.study_uid == info.study_uid) {
            for d in &report.decisions {
                if d.study.study_uid == info.study_uid {
                    continue;
                }
                let s = &d.study;
                let role = Role::Prior {
                    of: info.study_uid.clone(),
                };
                if json {
                    let mut row = json!({
                        "study_uid": s.study_uid, "accession": s.accession, "role": "prior", "prior_of": info.study_uid,
                        "patient_id": s.patient_id, "issuer_of_patient_id": s.issuer_of_patient_id,
                        "study_date": s.study_date, "modalities": s.modalities, "fetch": d.chosen, "reason": d.reason,
                    });
                    add_routes(&mut row, routes, s, &role);
                    writeln!(out, "{row}")?;
                } else {
                    writeln!(
                        out,
                        "{}  prior    {}  {}  {}  {}  {}",
                        if d.chosen { "fetch" } else { "skip " },
                        s.study_uid,
                        super::field(s.accession.as_deref()),
                        super::field(s.study_date.as_deref()),
                        escape(&s.modalities.join("/")),
                        escape(&d.reason)
                    )?;
                }
                if d.chosen {
                    fetched.push((s, role));
                }
            }
        }
        if let (Some(routes), false) = (explained, json) {
            for (info, role) in fetched {
                for (route, decision) in routes.for_study(info, std::slice::from_ref(&role)) {
                    writeln!(
                        out,
                        "{}  {}  to {route}  {}",
                        if decision.routed { "send " } else { "skip " },
                        info.study_uid,
                        escape(&decision.why)
                    )?;
                }
            }
        }
    }
    if let (Some(routes), false, Some(first)) = (single, json, plan.studies.first()) {
        for (route, decision) in routes.for_study(&first.info, std::slice::from_ref(&first.role)) {
            writeln!(out, "→ {route} ({})", escape(&decision.why))?;
        }
    }
    Ok(())
}

/// Adds where the study would go to its dry-run row: every destination,
/// whether the rules take the study, and why.
fn add_routes(row: &mut serde_json::Value, routes: Option<&Routes>, info: &StudyInfo, role: &Role) {
    let Some(routes) = routes else { return };
    let list: Vec<serde_json::Value> = routes
        .for_study(info, std::slice::from_ref(role))
        .into_iter()
        .map(|(route, d)| {
            json!({
                "destination": route.name, "to": route.store.scu.destination.to_string(),
                "routed": d.routed, "why": d.why,
            })
        })
        .collect();
    row["routes"] = serde_json::Value::from(list);
}
