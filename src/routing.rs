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

use anyhow::{Context, Result, anyhow, bail};

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

/// One key of `when`: it holds when any of its values matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// Any of the study's roles is of one of these kinds.
    Role(Vec<RoleKind>),
    /// Any of the study's modalities matches one of these (upper case).
    Modality(Vec<Pattern>),
    /// Any value of the attribute, as the cloud's study search answered it,
    /// matches one of these.
    Attribute {
        tag: u32,
        /// As written in the rule, for the explanations.
        name: String,
        patterns: Vec<Pattern>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RoleKind {
    Current,
    Prior,
}

impl RoleKind {
    fn name(self) -> &'static str {
        match self {
            RoleKind::Current => "current",
            RoleKind::Prior => "prior",
        }
    }

    fn of(role: &Role) -> RoleKind {
        match role {
            Role::Current { .. } => RoleKind::Current,
            Role::Prior { .. } => RoleKind::Prior,
        }
    }
}

/// A value to match, with `*` (any characters) and `?` (one character) as
/// in QIDO-RS; DICOM's padding trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(String);

impl Pattern {
    fn matches(&self, value: &str) -> bool {
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = trim_padding(value).chars().collect();
        wildcard_match(&pattern, &text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` matches `pattern` (`*`, `?`), in time bounded by the
/// product of their lengths: the last `*` is the only point gone back to.
fn wildcard_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A value without the spaces and NULs DICOM pads values with.
fn trim_padding(value: &str) -> &str {
    value.trim_matches([' ', '\0'])
}

/// `CT or MG`.
fn alternatives<T: fmt::Display>(values: &[T]) -> String {
    values.iter().map(T::to_string).collect::<Vec<_>>().join(" or ")
}

/// The values a study has, as they may be shown: escaped, `\` between.
fn shown_values<'a>(values: impl IntoIterator<Item = &'a String>) -> String {
    let values: Vec<&str> = values.into_iter().map(|v| trim_padding(v)).collect();
    crate::text::escape(&values.join("\\"))
}

impl When {
    /// Reads the rules of a destination (`key_path`: where they are
    /// written, e.g. `destinations[pacs].when`): an object whose keys are
    /// `role`, `modality`, or a DICOM keyword or tag (8 hex digits), each
    /// with a value or a list of values, a value possibly a QIDO list `A\B`.
    pub fn parse(value: &serde_json::Value, key_path: &str) -> Result<When> {
        let serde_json::Value::Object(map) = value else {
            bail!(
                "`{key_path}` is `{value}`, not an object such as {{\"role\": \"current\", \"modality\": [\"CT\", \"MR\"]}}"
            );
        };
        let mut conditions = Vec::new();
        for (key, raw) in map {
            let path = format!("{key_path}.{key}");
            let values = values_of(raw, &path)?;
            let condition = match key.as_str() {
                "role" => Condition::Role(
                    values
                        .iter()
                        .map(|v| match v.to_ascii_lowercase().as_str() {
                            "current" => Ok(RoleKind::Current),
                            "prior" | "priors" => Ok(RoleKind::Prior),
                            _ => Err(anyhow!(
                                "`{path}` is `{v}`; a role is \"current\" or \"prior\" (or a list of both)"
                            )),
                        })
                        .collect::<Result<_>>()?,
                ),
                "modality" => {
                    Condition::Modality(values.into_iter().map(|v| Pattern(v.to_ascii_uppercase())).collect())
                }
                _ => Condition::Attribute {
                    tag: attribute_tag(key).with_context(|| format!("`{path}` cannot be used"))?,
                    name: key.clone(),
                    patterns: values.into_iter().map(Pattern).collect(),
                },
            };
            conditions.push(condition);
        }
        // The explanations read the same whatever order the keys were
        // written in: the role, the modality, then the attributes.
        conditions.sort_by_key(|c| match c {
            Condition::Role(_) => 0,
            Condition::Modality(_) => 1,
            Condition::Attribute { .. } => 2,
        });
        Ok(When { conditions })
    }

    /// Whether a study known as `info`, in these `roles`, matches, and why:
    /// every condition met, or the first that is not.
    pub fn decide(&self, info: &StudyInfo, roles: &[Role]) -> Decision {
        if self.conditions.is_empty() {
            return Decision {
                routed: true,
                why: "every study".to_string(),
            };
        }
        let mut met = Vec::new();
        for condition in &self.conditions {
            match condition.judge(info, roles) {
                Ok(clause) => met.push(clause),
                Err(why) => {
                    return Decision {
                        routed: false,
                        why: format!("not: {why}"),
                    };
                }
            }
        }
        Decision {
            routed: true,
            why: met.join(", "),
        }
    }

    /// The attributes (tags) the rules read from the cloud's study search.
    pub fn attribute_tags(&self) -> Vec<u32> {
        self.conditions
            .iter()
            .filter_map(|c| match c {
                Condition::Attribute { tag, .. } => Some(*tag),
                _ => None,
            })
            .collect()
    }
}

impl Condition {
    /// The clause saying how the study meets this condition, or why not.
    fn judge(&self, info: &StudyInfo, roles: &[Role]) -> Result<String, String> {
        match self {
            Condition::Role(kinds) => {
                let mut has: Vec<RoleKind> = roles.iter().map(RoleKind::of).collect();
                has.sort_unstable();
                has.dedup();
                if let Some(kind) = has.iter().find(|k| kinds.contains(k)) {
                    return Ok(format!("role {}", kind.name()));
                }
                if has.is_empty() {
                    return Err("the cache records no role for the study".to_string());
                }
                let has: Vec<&str> = has.iter().map(|k| k.name()).collect();
                let want: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                Err(format!("role {} is not {}", has.join(" and "), want.join(" or ")))
            }
            Condition::Modality(patterns) => {
                let has: Vec<String> = info
                    .modalities
                    .iter()
                    .map(|m| trim_padding(m).to_ascii_uppercase())
                    .filter(|m| !m.is_empty())
                    .collect();
                if has.is_empty() {
                    return Err("the cloud's answer has no ModalitiesInStudy".to_string());
                }
                match has.iter().find(|m| patterns.iter().any(|p| p.matches(m))) {
                    Some(m) => Ok(format!("modality {}", crate::text::escape(m))),
                    None => Err(format!(
                        "modality {} is not {}",
                        shown_values(&has),
                        alternatives(patterns)
                    )),
                }
            }
            Condition::Attribute { tag, name, patterns } => {
                let has: Vec<&String> = info
                    .attributes
                    .get(&format!("{tag:08X}"))
                    .map(|values| values.iter().filter(|v| !trim_padding(v).is_empty()).collect())
                    .unwrap_or_default();
                if has.is_empty() {
                    return Err(format!("the cloud's answer has no {name}"));
                }
                match has.iter().find(|v| patterns.iter().any(|p| p.matches(v))) {
                    Some(v) => Ok(format!("{name} {}", crate::text::escape(trim_padding(v)))),
                    None => Err(format!(
                        "{name} {} is not {}",
                        shown_values(has),
                        alternatives(patterns)
                    )),
                }
            }
        }
    }
}

/// The values of one rule: a text or a list of texts, each possibly a
/// QIDO list `A\B`; none empty.
fn values_of(raw: &serde_json::Value, path: &str) -> Result<Vec<String>> {
    use serde_json::Value;
    let texts: Vec<&str> = match raw {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(anyhow!(
                    "`{path}` holds `{other}`; write each value as text, e.g. \"CT\""
                )),
            })
            .collect::<Result<_>>()?,
        Value::Array(_) => bail!("`{path}` is an empty list; give at least one value, or leave the key out"),
        other => bail!("`{path}` is `{other}`; write a text (\"CT\") or a list of texts ([\"CT\", \"MR\"])"),
    };
    let mut values = Vec::new();
    for text in texts {
        for value in text.split('\\') {
            let value = trim_padding(value);
            if value.is_empty() {
                bail!("`{path}` has an empty value; give the value to match (`*` matches any), or leave the key out");
            }
            values.push(value.to_string());
        }
    }
    Ok(values)
}

/// The tag of a rule's key: a DICOM keyword (`InstitutionName`, case
/// included) or a tag as 8 hex digits (`00080080`).
fn attribute_tag(key: &str) -> Result<u32> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    use dicom_dictionary_std::StandardDataDictionary;
    if key == "Modality" {
        bail!(
            "Modality is a series' attribute the study search does not answer; write \"modality\" (ModalitiesInStudy)"
        );
    }
    if key.len() == 8
        && let Ok(tag) = u32::from_str_radix(key, 16)
    {
        return Ok(tag);
    }
    let entry = StandardDataDictionary.by_name(key).ok_or_else(|| {
        anyhow!(
            "`{key}` is neither \"role\" nor \"modality\", nor a DICOM keyword (written like InstitutionName, case \
             included), nor a tag written as 8 hex digits (00080080)"
        )
    })?;
    match entry.tag_range() {
        dicom_core::dictionary::TagRange::Single(tag) if entry.vr().relaxed() != dicom_core::VR::SQ => {
            Ok((u32::from(tag.0) << 16) | u32::from(tag.1))
        }
        dicom_core::dictionary::TagRange::Single(_) => {
            bail!("`{key}` is a sequence, whose items a rule cannot match")
        }
        _ => bail!("`{key}` is a repeating-group attribute; name the one meant by its tag (8 hex digits)"),
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

    fn when(json: &str) -> Result<When> {
        When::parse(&serde_json::from_str(json).unwrap(), "destinations[ws].when")
    }

    fn study(modalities: &[&str], attributes: &[(&str, &[&str])]) -> StudyInfo {
        let mut info = StudyInfo::new(Uid::parse("1.2.3").unwrap());
        info.modalities = modalities.iter().map(|m| m.to_string()).collect();
        info.attributes = attributes
            .iter()
            .map(|(tag, values)| (tag.to_string(), values.iter().map(|v| v.to_string()).collect()))
            .collect();
        info
    }

    fn current() -> Role {
        Role::Current {
            requested_as: "ACC1".into(),
        }
    }

    fn prior() -> Role {
        Role::Prior {
            of: Uid::parse("1.2.4").unwrap(),
        }
    }

    #[test]
    fn rules_match_as_the_table_says_and_say_why() {
        let ct = study(&["CT", "SR"], &[("00080080", &["NORTH HOSPITAL "])]);
        let mr = study(&["mr"], &[]);
        let none = study(&[], &[]);
        let cases: &[(&str, &StudyInfo, &[Role], bool, &str)] = &[
            ("{}", &mr, &[], true, "every study"),
            (r#"{"role": "current"}"#, &ct, &[current()], true, "role current"),
            (
                r#"{"role": "current"}"#,
                &ct,
                &[prior()],
                false,
                "not: role prior is not current",
            ),
            (r#"{"role": "priors"}"#, &ct, &[prior(), current()], true, "role prior"),
            (r#"{"role": ["current", "prior"]}"#, &ct, &[prior()], true, "role prior"),
            (
                r#"{"role": "prior"}"#,
                &ct,
                &[],
                false,
                "not: the cache records no role for the study",
            ),
            (r#"{"modality": "CT"}"#, &ct, &[], true, "modality CT"),
            (r#"{"modality": "MR"}"#, &mr, &[], true, "modality MR"),
            (r#"{"modality": "ct"}"#, &ct, &[], true, "modality CT"),
            (
                r#"{"modality": ["CT", "MG"]}"#,
                &mr,
                &[],
                false,
                "not: modality MR is not CT or MG",
            ),
            (r#"{"modality": "CT\\MG"}"#, &ct, &[], true, "modality CT"),
            (
                r#"{"modality": "MG"}"#,
                &ct,
                &[],
                false,
                "not: modality CT\\SR is not MG",
            ),
            (r#"{"modality": "M?"}"#, &mr, &[], true, "modality MR"),
            (
                r#"{"modality": "*"}"#,
                &none,
                &[],
                false,
                "not: the cloud's answer has no ModalitiesInStudy",
            ),
            (
                r#"{"role": "current", "modality": ["CT", "MR"]}"#,
                &ct,
                &[current()],
                true,
                "role current, modality CT",
            ),
            (
                r#"{"role": "current", "modality": ["CT", "MR"]}"#,
                &ct,
                &[prior()],
                false,
                "not: role prior is not current",
            ),
            (
                r#"{"InstitutionName": "NORTH HOSPITAL"}"#,
                &ct,
                &[],
                true,
                "InstitutionName NORTH HOSPITAL",
            ),
            (
                r#"{"InstitutionName": "NORTH*"}"#,
                &ct,
                &[],
                true,
                "InstitutionName NORTH HOSPITAL",
            ),
            (r#"{"00080080": "*HOSP*"}"#, &ct, &[], true, "00080080 NORTH HOSPITAL"),
            (
                r#"{"InstitutionName": "north*"}"#,
                &ct,
                &[],
                false,
                "not: InstitutionName NORTH HOSPITAL is not north*",
            ),
            (
                r#"{"InstitutionName": "NORTH"}"#,
                &ct,
                &[],
                false,
                "not: InstitutionName NORTH HOSPITAL is not NORTH",
            ),
            (
                r#"{"InstitutionName": "*"}"#,
                &mr,
                &[],
                false,
                "not: the cloud's answer has no InstitutionName",
            ),
            (
                r#"{"ReferringPhysicianName": ["A*", "B*"]}"#,
                &ct,
                &[],
                false,
                "not: the cloud's answer has no ReferringPhysicianName",
            ),
        ];
        for (rules, info, roles, routed, why) in cases {
            let decision = when(rules).unwrap().decide(info, roles);
            assert_eq!(
                (decision.routed, decision.why.as_str()),
                (*routed, *why),
                "{rules} on {:?} {roles:?}",
                info.modalities
            );
        }
    }

    #[test]
    fn wildcards_match_whole_values_in_bounded_time() {
        let m = |p: &str, t: &str| Pattern(p.into()).matches(t);
        assert!(m("CT", "CT") && !m("CT", "CTX") && !m("CT", "C"));
        assert!(m("C?", "CT") && !m("C?", "C") && !m("C?", "CTT"));
        assert!(m("*", "") && m("*", "ANY") && m("A*B*C", "AxxBxxC") && !m("A*B*C", "AxxBxx"));
        assert!(m("*A", "BBA") && !m("*A", "AB") && m("**", "x"));
        // Padding is not part of the value.
        assert!(m("CT", "CT ") && m("1.2", "1.2\0"));
        // The worst case for a naive matcher: many stars, no match.
        let text = "a".repeat(256);
        assert!(!m(&format!("{}b", "*a".repeat(30)), &text));
    }

    #[test]
    fn the_attributes_the_rules_read_are_asked_for() {
        let rules = when(r#"{"role": "current", "InstitutionName": "X", "00081048": "Y", "modality": "CT"}"#).unwrap();
        let mut tags = rules.attribute_tags();
        tags.sort_unstable();
        assert_eq!(tags, [0x0008_0080, 0x0008_1048]);
        let mut ws = route("ws", "WS@h:105");
        ws.when = rules;
        let routes = Routes::new(vec![ws, route("pacs", "PACS@h:104")]);
        assert_eq!(routes.attribute_tags(), [0x0008_0080, 0x0008_1048]);
        let info = study(&["CT"], &[("00080080", &["X"]), ("00081048", &["Y"])]);
        assert_eq!(routes.routed(&info, &[current()]).len(), 2);
        assert_eq!(routes.routed(&info, &[prior()]).len(), 1);
        let decisions = routes.for_study(&info, &[prior()]);
        assert_eq!(decisions[0].1.why, "not: role prior is not current");
        assert_eq!(decisions[1].1.why, "every study");
    }

    #[test]
    fn wrong_rules_are_refused_naming_the_key() {
        for (rules, says) in [
            (r#"["CT"]"#, "`destinations[ws].when` is `[\"CT\"]`, not an object"),
            (r#"{"role": "old"}"#, "`destinations[ws].when.role` is `old`"),
            (
                r#"{"modality": ""}"#,
                "`destinations[ws].when.modality` has an empty value",
            ),
            (
                r#"{"modality": "CT\\"}"#,
                "`destinations[ws].when.modality` has an empty value",
            ),
            (
                r#"{"modality": []}"#,
                "`destinations[ws].when.modality` is an empty list",
            ),
            (r#"{"modality": 3}"#, "`destinations[ws].when.modality` is `3`"),
            (
                r#"{"modality": ["CT", 3]}"#,
                "`destinations[ws].when.modality` holds `3`",
            ),
            (r#"{"modality": null}"#, "`destinations[ws].when.modality` is `null`"),
            (
                r#"{"Institution": "X"}"#,
                "`destinations[ws].when.Institution` cannot be used",
            ),
            (r#"{"institutionname": "X"}"#, "nor a DICOM keyword"),
            (r#"{"0008008": "X"}"#, "`destinations[ws].when.0008008` cannot be used"),
            (r#"{"Modality": "CT"}"#, "write \"modality\""),
            (r#"{"ReferencedStudySequence": "X"}"#, "is a sequence"),
        ] {
            let e = format!("{:#}", when(rules).unwrap_err());
            assert!(e.contains(says), "{rules}: {e}");
        }
    }
}
