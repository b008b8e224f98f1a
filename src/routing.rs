//! Routing: the destinations studies are delivered to, and which study goes
//! where. A site has several (the PACS gets everything, the reading
//! workstation current CT and MR only, the mammography viewer MG), each a
//! [`Route`]: a name for people, how to reach it ([`StoreOptions`], with its
//! own calling AE title, associations, TLS and coercions) and its rules
//! ([`When`]). A command-line `--to` is one route that takes every study.
//!
//! Rules are judged on what the cache knows of a study: its roles (current,
//! prior) and what the cloud's study search answered ([`StudyInfo`]). Each
//! judgement comes with its reason ([`Decision`]), for `fetch --dry-run`
//! and `prune --dry-run` to show.

use std::fmt;

use anyhow::{Result, bail};

use crate::cache::{Role, StudyInfo};
use crate::delivery::StoreOptions;

/// One destination and what it gets.
#[derive(Debug, Clone)]
pub struct Route {
    /// The name people use (`--dest NAME`); for a destination given with
    /// `--to` alone, its `AE@HOST:PORT`.
    pub name: String,
    pub store: StoreOptions,
    pub when: When,
}

impl Route {
    /// The one destination of `--to` (or the config file's `to`): every
    /// study goes there.
    pub fn single(store: StoreOptions) -> Route {
        Route {
            name: store.scu.destination.to_string(),
            store,
            when: When::default(),
        }
    }

    /// The destination's journal and lock name in the cache: the same for a
    /// destination whatever it is called, so that the delivery state
    /// written before a rename (or before routes existed) still counts.
    pub fn key(&self) -> String {
        self.store.scu.destination.key()
    }

    /// Whether `study` (known as `info`, in these `roles`) goes here.
    pub fn decide(&self, info: &StudyInfo, roles: &[Role]) -> Decision {
        self.when.decide(info, roles)
    }
}

/// `pacs (PACS@10.0.0.5:104)`, or `PACS@10.0.0.5:104` for a route named by
/// its destination.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let destination = self.store.scu.destination.to_string();
        if self.name == destination {
            f.write_str(&destination)
        } else {
            write!(f, "{} ({destination})", self.name)
        }
    }
}

/// Which studies a destination gets: every condition must hold. No
/// condition: every study.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {}

impl When {
    /// Whether a study known as `info`, in these `roles`, matches, and why.
    pub fn decide(&self, _info: &StudyInfo, _roles: &[Role]) -> Decision {
        match self.conditions.as_slice() {
            [] => Decision {
                routed: true,
                why: "every study".to_string(),
            },
            [never, ..] => match *never {},
        }
    }

    /// The attributes (tags) the rules read from the cloud's study search.
    pub fn attribute_tags(&self) -> Vec<u32> {
        Vec::new()
    }
}

/// Whether a study goes to a destination, and why in a short clause
/// (`every study`, `not: modality MR is not CT or MG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub routed: bool,
    pub why: String,
}

/// The destinations of a run, in the order they were configured.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    /// From the config file's `destinations` (not one `--to`).
    configured: bool,
}

impl Routes {
    /// The one destination of `--to` (or routes built by hand).
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes {
            routes,
            configured: false,
        }
    }

    /// The config file's `destinations`, in its order.
    pub fn configured(routes: Vec<Route>) -> Routes {
        Routes {
            routes,
            configured: true,
        }
    }

    /// Whether these come from the config file's `destinations`.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> + '_ {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.routes.iter().map(|r| r.name.as_str()).collect()
    }

    /// Only the destinations named (`--dest NAME`); all of them when none is.
    pub fn select(&self, names: &[String]) -> Result<Routes> {
        if names.is_empty() {
            return Ok(self.clone());
        }
        let mut chosen = Vec::new();
        for name in names {
            match self.get(name) {
                Some(route) if !chosen.iter().any(|r: &Route| r.name == route.name) => chosen.push(route.clone()),
                Some(_) => {}
                None => bail!(
                    "there is no destination named `{name}`; the destinations are: {}",
                    self.names().join(", ")
                ),
            }
        }
        Ok(Routes {
            routes: chosen,
            configured: self.configured,
        })
    }

    /// The attributes (tags) any rule reads from the cloud's study search:
    /// a fetch asks for them (`includefield`) and keeps them in the manifest.
    pub fn attribute_tags(&self) -> Vec<u32> {
        let mut tags: Vec<u32> = self.routes.iter().flat_map(|r| r.when.attribute_tags()).collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    /// Every destination with its decision for the study.
    pub fn for_study(&self, info: &StudyInfo, roles: &[Role]) -> Vec<(&Route, Decision)> {
        self.routes.iter().map(|r| (r, r.decide(info, roles))).collect()
    }

    /// The destinations the study goes to.
    pub fn routed(&self, info: &StudyInfo, roles: &[Role]) -> Vec<&Route> {
        self.routes.iter().filter(|r| r.decide(info, roles).routed).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::{Destination, ScuOptions};
    use crate::uid::Uid;

    fn route(name: &str, to: &str) -> Route {
        let mut route = Route::single(StoreOptions::new(ScuOptions::new(Destination::parse(to).unwrap())));
        route.name = name.to_string();
        route
    }

    #[test]
    fn a_route_without_rules_takes_every_study_and_is_shown_by_name_and_destination() {
        let pacs = route("pacs", "PACS@127.0.0.1:104");
        let info = StudyInfo::new(Uid::parse("1.2.3").unwrap());
        assert!(pacs.decide(&info, &[]).routed);
        assert_eq!(pacs.to_string(), "pacs (PACS@127.0.0.1:104)");
        assert_eq!(pacs.key(), "PACS@127.0.0.1_104");
        let single = Route::single(pacs.store.clone());
        assert_eq!(single.to_string(), "PACS@127.0.0.1:104");
    }

    #[test]
    fn dest_selects_by_name_and_an_unknown_name_lists_the_names() {
        let routes = Routes::new(vec![route("pacs", "PACS@h:104"), route("ws", "WS@h:105")]);
        let one = routes.select(&["ws".into()]).unwrap();
        assert_eq!(one.names(), ["ws"]);
        assert_eq!(routes.select(&[]).unwrap().len(), 2);
        let e = routes.select(&["mammo".into()]).unwrap_err().to_string();
        assert!(
            e.contains("no destination named `mammo`") && e.contains("pacs, ws"),
            "{e}"
        );
    }
}
