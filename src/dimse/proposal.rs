//! Which presentation contexts to propose for a study, and how to spread
//! them over associations of at most 128 contexts each (PS3.8 §9.3.2.2
//! allows 128: context ids are the odd numbers 1..=255).

use std::collections::BTreeMap;

use super::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};

/// Most presentation contexts one A-ASSOCIATE-RQ can carry.
pub const MAX_CONTEXTS: usize = 128;

/// One proposed presentation context: an abstract syntax (the SOP class)
/// and the transfer syntaxes we can send it in, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub sop_class: String,
    pub transfer_syntaxes: Vec<String>,
}

impl Proposal {
    pub fn new(sop_class: &str, transfer_syntaxes: &[&str]) -> Proposal {
        Proposal {
            sop_class: sop_class.to_string(),
            transfer_syntaxes: transfer_syntaxes.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The proposals for a set of instances given as (SOP class, transfer
/// syntax) pairs, duplicates allowed.
///
/// Per SOP class: one context per non-uncompressed syntax found in the study
/// (alone, so that the destination cannot answer it with an uncompressed
/// syntax and force a needless decompression), plus uncompressed contexts as
/// the fallback:
/// - only explicit VR LE files, or none: one context offering explicit
///   then implicit;
/// - implicit VR LE files (with or without explicit ones): one context each,
///   so that each goes as it is when accepted. A single context offering
///   both would let the destination pick explicit (DCMTK does) and force a
///   conversion of every implicit instance.
///
/// Implicit VR LE is the default syntax every SCP must accept (PS3.5 §10.1),
/// so a conversion target always exists for native data.
pub fn proposals_for<'a>(instances: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Proposal> {
    // Keep first-seen order of SOP classes and syntaxes: deterministic.
    let mut order: Vec<String> = Vec::new();
    let mut by_class: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (sop_class, ts) in instances {
        let sop_class = sop_class.trim_end_matches(['\0', ' ']);
        let ts = ts.trim_end_matches(['\0', ' ']);
        let entry = by_class.entry(sop_class.to_string()).or_insert_with(|| {
            order.push(sop_class.to_string());
            Vec::new()
        });
        if !entry.iter().any(|t| t == ts) {
            entry.push(ts.to_string());
        }
    }
    let mut out = Vec::new();
    for sop_class in order {
        let syntaxes = &by_class[&sop_class];
        for ts in syntaxes {
            if ts != EXPLICIT_VR_LE && ts != IMPLICIT_VR_LE {
                out.push(Proposal::new(&sop_class, &[ts]));
            }
        }
        let has_explicit = syntaxes.iter().any(|t| t == EXPLICIT_VR_LE);
        let has_implicit = syntaxes.iter().any(|t| t == IMPLICIT_VR_LE);
        match (has_explicit, has_implicit) {
            (true, true) => {
                out.push(Proposal::new(&sop_class, &[EXPLICIT_VR_LE]));
                out.push(Proposal::new(&sop_class, &[IMPLICIT_VR_LE]));
            }
            (false, true) => {
                out.push(Proposal::new(&sop_class, &[IMPLICIT_VR_LE]));
                out.push(Proposal::new(&sop_class, &[EXPLICIT_VR_LE]));
            }
            _ => out.push(Proposal::new(&sop_class, &[EXPLICIT_VR_LE, IMPLICIT_VR_LE])),
        }
    }
    out
}

/// Splits proposals into groups of at most `MAX_CONTEXTS`, one association
/// each, keeping all the contexts of a SOP class in the same group (so the
/// uncompressed fallback is negotiated next to the compressed context) unless
/// a single SOP class has more than `MAX_CONTEXTS` of them.
///
/// Groups keep the order of first appearance of SOP classes; an instance goes
/// over the association whose group holds its SOP class.
pub fn split_proposals(proposals: &[Proposal]) -> Vec<Vec<Proposal>> {
    split_proposals_max(proposals, MAX_CONTEXTS)
}

fn split_proposals_max(proposals: &[Proposal], max: usize) -> Vec<Vec<Proposal>> {
    // Gather by SOP class, in order of first appearance.
    let mut classes: Vec<(&str, Vec<Proposal>)> = Vec::new();
    for p in proposals {
        match classes.iter_mut().find(|(c, _)| *c == p.sop_class) {
            Some((_, v)) => v.push(p.clone()),
            None => classes.push((&p.sop_class, vec![p.clone()])),
        }
    }
    let mut groups: Vec<Vec<Proposal>> = Vec::new();
    let mut current: Vec<Proposal> = Vec::new();
    for (_, contexts) in classes {
        if current.len() + contexts.len() > max && !current.is_empty() {
            groups.push(std::mem::take(&mut current));
        }
        if contexts.len() > max {
            for chunk in contexts.chunks(max) {
                groups.push(chunk.to_vec());
            }
        } else {
            current.extend(contexts);
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
    const RLE: &str = "1.2.840.10008.1.2.5";
    const JPEG: &str = "1.2.840.10008.1.2.4.50";

    #[test]
    fn proposals_cover_study_with_fallback() {
        let p = proposals_for([
            (CT, RLE),
            (CT, RLE),
            (CT, EXPLICIT_VR_LE),
            (MR, IMPLICIT_VR_LE),
            (MR, JPEG),
        ]);
        assert_eq!(
            p,
            vec![
                Proposal::new(CT, &[RLE]),
                Proposal::new(CT, &[EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
                Proposal::new(MR, &[JPEG]),
                Proposal::new(MR, &[IMPLICIT_VR_LE]),
                Proposal::new(MR, &[EXPLICIT_VR_LE]),
            ]
        );
        let both = proposals_for([(CT, IMPLICIT_VR_LE), (CT, EXPLICIT_VR_LE)]);
        assert_eq!(
            both,
            vec![
                Proposal::new(CT, &[EXPLICIT_VR_LE]),
                Proposal::new(CT, &[IMPLICIT_VR_LE])
            ]
        );
    }

    #[test]
    fn split_respects_limit_and_keeps_classes_together() {
        // 100 SOP classes × 2 contexts = 200 contexts.
        let classes: Vec<String> = (0..100).map(|i| format!("1.2.3.{i}")).collect();
        let pairs: Vec<(&str, &str)> = classes
            .iter()
            .flat_map(|c| [(c.as_str(), RLE), (c.as_str(), EXPLICIT_VR_LE)])
            .collect();
        let proposals = proposals_for(pairs);
        assert_eq!(proposals.len(), 200);
        let groups = split_proposals(&proposals);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].len(), 128);
        assert_eq!(groups[1].len(), 72);
        for g in &groups {
            for p in g {
                let n_here = g.iter().filter(|q| q.sop_class == p.sop_class).count();
                assert_eq!(n_here, 2, "{} split across associations", p.sop_class);
            }
        }
        let flat: Vec<Proposal> = groups.concat();
        assert_eq!(flat, proposals);
    }

    #[test]
    fn split_edge_cases() {
        assert!(split_proposals(&[]).is_empty());
        let p = |c: &str, n: usize| {
            (0..n)
                .map(|i| Proposal::new(c, &[&format!("1.2.{i}")]))
                .collect::<Vec<_>>()
        };
        // A class that does not fit the remaining room starts a new group.
        let input = [p("1.1", 3), p("1.2", 3)].concat();
        let groups = split_proposals_max(&input, 4);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3]);
        // A class larger than the limit is chunked.
        let groups = split_proposals_max(&[p("1.1", 1), p("1.2", 9)].concat(), 4);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 4, 4, 1]);
        assert!(groups.iter().all(|g| g.len() <= 4));
    }
}
