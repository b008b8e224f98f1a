//! Which earlier studies of the same patient are relevant priors, and why
//! each candidate was chosen or passed over (for `fetch --dry-run`).

use crate::cache::StudyInfo;

/// Which modalities a prior may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModalityRule {
    Any,
    /// At least one modality in common with the current study.
    Same,
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub count: usize,
    pub years: u32,
    pub modality: ModalityRule,
}

impl Default for Rules {
    /// 3 priors, 5 years back, any modality.
    fn default() -> Rules {
        Rules {
            count: 3,
            years: 5,
            modality: ModalityRule::Any,
        }
    }
}

/// One candidate and the verdict on it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub study: StudyInfo,
    pub chosen: bool,
    pub reason: String,
}

/// Judges every candidate study of the patient against the rules: most
/// recent first, the current study excluded, at most `rules.count` chosen.
/// `today` (YYYYMMDD) anchors the lookback when the current study has no date.
pub fn select(current: &StudyInfo, candidates: &[StudyInfo], rules: &Rules, today: &str) -> Vec<Decision> {
    let anchor = current.study_date.as_deref().filter(|d| is_date(d)).unwrap_or(today);
    let earliest = years_before(anchor, rules.years);
    let mut sorted: Vec<&StudyInfo> = candidates.iter().collect();
    // Most recent first; undated studies last; ties broken by UID so the
    // choice is the same on every run.
    sorted.sort_by(|a, b| {
        let date = |s: &StudyInfo| s.study_date.clone().filter(|d| is_date(d)).unwrap_or_default();
        date(b).cmp(&date(a)).then_with(|| a.study_uid.cmp(&b.study_uid))
    });
    let mut chosen = 0;
    let mut out = Vec::with_capacity(sorted.len());
    for study in sorted {
        let verdict = passed_over(current, study, rules, anchor, &earliest);
        let (is_chosen, reason) = match verdict {
            Some(why) => (false, why),
            None if chosen < rules.count => {
                chosen += 1;
                (
                    true,
                    format!("prior {chosen} of at most {}: most recent eligible", rules.count),
                )
            }
            None => (
                false,
                format!("eligible, but the {} more recent priors were enough", rules.count),
            ),
        };
        out.push(Decision {
            study: study.clone(),
            chosen: is_chosen,
            reason,
        });
    }
    out
}

fn passed_over(current: &StudyInfo, study: &StudyInfo, rules: &Rules, anchor: &str, earliest: &str) -> Option<String> {
    if study.study_uid == current.study_uid {
        return Some("the current study itself".into());
    }
    if let (Some(a), Some(b)) = (&current.issuer_of_patient_id, &study.issuer_of_patient_id)
        && a.trim() != b.trim()
    {
        return Some(format!(
            "same Patient ID but another issuer (`{}`, the current study's is `{}`): another patient",
            b.trim(),
            a.trim()
        ));
    }
    // Patient IDs collide across issuers: when the current study names its
    // issuer, a study that names none may be another patient's.
    if let (Some(a), None) = (&current.issuer_of_patient_id, &study.issuer_of_patient_id) {
        return Some(format!(
            "same Patient ID but no issuer (the current study's is `{}`): maybe another patient",
            a.trim()
        ));
    }
    if current.patient_id.as_deref().map(str::trim) != study.patient_id.as_deref().map(str::trim) {
        return Some("another Patient ID".into());
    }
    let Some(date) = study.study_date.as_deref().filter(|d| is_date(d)) else {
        return Some("no study date, so its age is unknown".into());
    };
    if date > anchor {
        return Some(format!("dated {date}, after the current study ({anchor})"));
    }
    if date < earliest {
        return Some(format!(
            "dated {date}, older than the {}-year lookback (from {earliest})",
            rules.years
        ));
    }
    if rules.modality == ModalityRule::Same && !study.modalities.iter().any(|m| current.modalities.contains(m)) {
        return Some(format!(
            "modalities {} share none with the current study's {}",
            list(&study.modalities),
            list(&current.modalities)
        ));
    }
    None
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join("/")
    }
}

fn is_date(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `date` (YYYYMMDD) moved back by `years`; 29 February becomes the 28th.
fn years_before(date: &str, years: u32) -> String {
    let year: u32 = date[..4].parse().unwrap_or(0);
    let mut month_day = date[4..].to_string();
    let back = year.saturating_sub(years);
    let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    if month_day == "0229" && !leap(back) {
        month_day = "0228".into();
    }
    format!("{back:04}{month_day}")
}

/// Today's date in UTC as YYYYMMDD.
pub fn today() -> String {
    date_of(std::time::SystemTime::now())
}

/// The UTC date of `t`, `YYYYMMDD`.
pub fn date_of(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}{m:02}{d:02}")
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(uid: &str, date: Option<&str>, modality: &str, issuer: Option<&str>) -> StudyInfo {
        StudyInfo {
            patient_id: Some("PAT1".into()),
            issuer_of_patient_id: issuer.map(Into::into),
            study_date: date.map(Into::into),
            modalities: vec![modality.into()],
            ..StudyInfo::new(crate::uid::Uid::parse(uid).unwrap())
        }
    }

    #[test]
    fn chooses_most_recent_eligible_and_explains_the_rest() {
        let current = study("1.1", Some("20260601"), "CT", Some("A"));
        let candidates = vec![
            current.clone(),
            study("1.2", Some("20250101"), "MR", Some("A")),
            study("1.3", Some("20260501"), "CT", Some("A")),
            study("1.4", Some("20200101"), "CT", Some("A")), // beyond 5 years
            study("1.5", Some("20240101"), "CR", Some("A")),
            study("1.6", Some("20230101"), "CT", Some("A")),
            study("1.7", Some("20260520"), "CT", Some("B")), // other issuer
            study("1.8", None, "CT", Some("A")),
            study("1.9", Some("20260701"), "CT", Some("A")), // after current
            study("1.10", Some("20260515"), "CT", None),     // no issuer
        ];
        let rules = Rules {
            count: 3,
            years: 5,
            modality: ModalityRule::Any,
        };
        let decisions = select(&current, &candidates, &rules, "20261127");
        let chosen: Vec<&str> = decisions
            .iter()
            .filter(|d| d.chosen)
            .map(|d| d.study.study_uid.as_str())
            .collect();
        assert_eq!(chosen, ["1.3", "1.2", "1.5"]);
        let reason = |uid: &str| {
            decisions
                .iter()
                .find(|d| d.study.study_uid.as_str() == uid)
                .unwrap()
                .reason
                .clone()
        };
        assert!(reason("1.1").contains("current study itself"));
        assert!(reason("1.4").contains("lookback"));
        assert!(reason("1.6").contains("were enough"));
        assert!(reason("1.7").contains("another issuer"));
        assert!(reason("1.8").contains("no study date"));
        assert!(reason("1.9").contains("after the current study"));
        assert!(reason("1.10").contains("no issuer"));

        let same = Rules {
            count: 3,
            years: 5,
            modality: ModalityRule::Same,
        };
        let chosen: Vec<String> = select(&current, &candidates, &same, "20261127")
            .into_iter()
            .filter(|d| d.chosen)
            .map(|d| d.study.study_uid.to_string())
            .collect();
        assert_eq!(chosen, ["1.3", "1.6"]);
    }

    #[test]
    fn dates() {
        assert_eq!(years_before("20240229", 1), "20230228");
        assert_eq!(years_before("20261127", 5), "20211127");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_419), (2025, 11, 27));
        assert_eq!(today().len(), 8);
    }
}
