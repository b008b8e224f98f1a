//! The intake gate: every instance from the cloud passes here before it is
//! kept in the cache or sent to a destination, whichever path brought it
//! (a fetch, a resumed fetch, `watch`, or the request of an instance again
//! in another transfer syntax for a destination).
//!
//! In order, so that nothing is parsed before it is known to be safe to
//! parse: the structure walk ([`walk`]: Part-10 layout, meta group, every
//! declared length within the file, sequences closed and at most
//! [`walk::MAX_DEPTH`] deep); then the identifying header, read by the DICOM
//! parser up to the pixel data; then what it says against what was asked
//! for: the file meta and the data set name the same SOP Instance and SOP
//! Class, the Study, Series and SOP Instance UIDs are valid and the ones
//! asked for, and the Patient ID (and its issuer) are the study's.
//!
//! What passes is an [`Admitted`], which only this module can make; the
//! cache keeps, and delivery sends, nothing else.

pub mod walk;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

use crate::text::escape;
use crate::uid::Uid;

/// The identifying attributes of an admitted instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub study: Uid,
    pub series: Uid,
    pub sop_instance: Uid,
    pub sop_class: Uid,
    pub transfer_syntax: String,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
}

/// The patient a study belongs to, as the cloud's index gave it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Patient<'a> {
    pub id: Option<&'a str>,
    pub issuer: Option<&'a str>,
}

/// What an instance from the cloud must be to be admitted into a study.
pub struct Expectation<'a> {
    pub study: &'a Uid,
    pub patient: Patient<'a>,
    /// The series asked for, when one was.
    pub series: Option<&'a Uid>,
    /// The instance asked for, when one was.
    pub sop: Option<&'a Uid>,
    /// The study's series as the cloud lists them, when known.
    pub listed_series: Option<&'a [Uid]>,
    /// The series the cloud listed a SOP Instance UID in, if it did.
    pub series_of: &'a dyn Fn(&Uid) -> Option<Uid>,
    /// The largest a deflated data set may inflate to.
    pub max_inflated: u64,
}

/// Something the user should know about an admitted instance, said once per
/// study rather than once per instance (see [`Note::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Note {
    /// The cloud's index has no Patient ID for the study: nothing could be
    /// checked against it.
    StudyHasNoPatientId,
    /// The instance names an issuer of its Patient ID and the study does not.
    IssuerOnlyInInstance,
    /// The study names an issuer of its Patient ID and the instance does not.
    IssuerOnlyInStudy,
}

impl Note {
    /// The warning for `study`.
    pub fn message(self, study: &Uid) -> String {
        match self {
            Note::StudyHasNoPatientId => format!(
                "study `{study}` has no Patient ID in the cloud's index, so its instances could not be checked \
                 against a patient; check the study in the cloud archive"
            ),
            Note::IssuerOnlyInInstance => format!(
                "instances of study `{study}` name an Issuer of Patient ID that the cloud's index does not; \
                 they were accepted on the Patient ID alone"
            ),
            Note::IssuerOnlyInStudy => format!(
                "instances of study `{study}` name no Issuer of Patient ID although the cloud's index does; \
                 they were accepted on the Patient ID alone"
            ),
        }
    }
}

/// An instance file that passed the gate. Only [`admit`] makes one.
#[derive(Debug)]
pub struct Admitted {
    path: PathBuf,
    bytes: u64,
    header: Header,
    notes: Vec<Note>,
}

impl Admitted {
    /// The file that was checked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length when it was checked.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn notes(&self) -> &[Note] {
        &self.notes
    }
}

/// Why an instance was refused; for the user, without the part or study
/// (the caller knows which it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Checks the complete, synced file at `path` against `want`. The outer
/// error is a failure to read the file (the cache's problem); the inner one
/// says why the instance is refused.
pub fn admit(path: &Path, want: &Expectation) -> Result<Result<Admitted, Refused>> {
    let file = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let bytes = file
        .metadata()
        .with_context(|| format!("failed to read the size of `{}`", path.display()))?
        .len();
    let meta = match walk::walk(io::BufReader::with_capacity(16 * 1024, file), bytes, want.max_inflated) {
        Ok(meta) => meta,
        Err(walk::WalkError::Malformed(m)) => return Ok(Err(Refused(m.0))),
        Err(walk::WalkError::Io(e)) => {
            return Err(e).with_context(|| format!("failed to read `{}`", path.display()));
        }
    };
    let header = match read_header(path, &meta) {
        Ok(h) => h,
        Err(e) => return Ok(Err(Refused(format!("{e:#}")))),
    };
    Ok(check(&header, want).map(|notes| Admitted {
        path: path.to_path_buf(),
        bytes,
        header,
        notes,
    }))
}

/// Checks again an instance file that was kept but may not have reached
/// the disk whole: a power cut between its rename into the cache and the
/// sync of its batch can leave it empty or torn. The same gate as on
/// arrival, after a look at its size; the inner error says why it no
/// longer passes (it is then downloaded again).
pub fn recheck(path: &Path, want: &Expectation) -> Result<Result<(), Refused>> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("failed to read the size of `{}`", path.display()))?
        .len();
    if bytes == 0 {
        return Ok(Err(Refused("the file is empty".into())));
    }
    Ok(admit(path, want)?.map(|_| ()))
}

/// Reads the identifying header of a file the walk passed, up to the pixel
/// data, and checks it against the file meta group.
fn read_header(path: &Path, meta: &walk::Meta) -> Result<Header> {
    // The walk bounds what the parser can be made to do; a parser bug on an
    // odd file must still not take the router down.
    let opened = std::panic::catch_unwind(|| OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path))
        .map_err(|_| anyhow::anyhow!("the DICOM parser failed on it"))?;
    let obj = opened
        .map_err(anyhow::Error::new)
        .context("it does not parse as a DICOM Part-10 file")?;
    let text = |tag, name: &str| -> Result<Option<String>> {
        let Ok(element) = obj.element(tag) else {
            return Ok(None);
        };
        let value = element
            .to_str()
            .map_err(|e| anyhow::anyhow!("its {name} is unreadable: {e}"))?;
        let value = value.trim_end_matches(['\0', ' ']).trim_start();
        Ok((!value.is_empty()).then(|| value.to_string()))
    };
    let uid = |tag, name: &str| -> Result<Uid> {
        let value = text(tag, name)?.with_context(|| format!("it has no {name}"))?;
        Uid::parse(&value).with_context(|| format!("its {name} is invalid"))
    };
    let header = Header {
        study: uid(tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
        series: uid(tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
        sop_instance: uid(tags::SOP_INSTANCE_UID, "SOP Instance UID")?,
        sop_class: uid(tags::SOP_CLASS_UID, "SOP Class UID")?,
        transfer_syntax: meta.transfer_syntax.clone(),
        patient_id: text(tags::PATIENT_ID, "Patient ID")?,
        issuer_of_patient_id: text(tags::ISSUER_OF_PATIENT_ID, "Issuer of Patient ID")?,
    };
    if meta.sop_instance != header.sop_instance.as_str() {
        anyhow::bail!(
            "its file meta information names SOP Instance `{}` but its data set names `{}`",
            meta.sop_instance,
            header.sop_instance
        );
    }
    if meta.sop_class != header.sop_class.as_str() {
        anyhow::bail!(
            "its file meta information names SOP Class `{}` but its data set names `{}`",
            meta.sop_class,
            header.sop_class
        );
    }
    Ok(header)
}

/// Checks `header` against what was asked for; the notes to pass on when it is admitted.
fn check(header: &Header, want: &Expectation) -> Result<Vec<Note>, Refused> {
    let refuse = |why: String| Err(Refused(format!("instance `{}`: {why}", header.sop_instance)));
    if &header.study != want.study {
        return refuse(format!(
            "it belongs to study `{}`, not to the study asked for",
            header.study
        ));
    }
    if let Some(sop) = want.sop
        && sop != &header.sop_instance
    {
        return Err(Refused(format!(
            "the cloud sent instance `{}` when instance `{sop}` was asked for",
            header.sop_instance
        )));
    }
    if let Some(series) = want.series
        && series != &header.series
    {
        return refuse(format!(
            "it is in series `{}`, not in series `{series}` that was asked for",
            header.series
        ));
    }
    if let Some(listed) = want.listed_series
        && !listed.contains(&header.series)
    {
        return refuse(format!(
            "it is in series `{}`, which the cloud does not list for this study",
            header.series
        ));
    }
    if let Some(series) = (want.series_of)(&header.sop_instance)
        && series != header.series
    {
        return refuse(format!(
            "it is in series `{}` but the cloud listed it in series `{series}`",
            header.series
        ));
    }
    let mut notes = Vec::new();
    let got = header.patient_id.as_deref().map(str::trim);
    match (want.patient.id.map(str::trim).filter(|p| !p.is_empty()), got) {
        (None, _) => notes.push(Note::StudyHasNoPatientId),
        (Some(study), None) => {
            return refuse(format!(
                "it has no Patient ID, but the study's Patient ID is `{}`; it may belong to another patient",
                escape(study)
            ));
        }
        (Some(study), Some(got)) if study != got => {
            return refuse(format!(
                "its Patient ID `{}` is not the study's Patient ID `{}`: it belongs to another patient",
                escape(got),
                escape(study)
            ));
        }
        (Some(_), Some(_)) => {}
    }
    let issuer = header.issuer_of_patient_id.as_deref().map(str::trim);
    match (want.patient.issuer.map(str::trim).filter(|i| !i.is_empty()), issuer) {
        (Some(study), Some(got)) if study != got => {
            return refuse(format!(
                "its Issuer of Patient ID `{}` is not the study's `{}`: the same Patient ID from \
                 another issuer is another patient",
                escape(got),
                escape(study)
            ));
        }
        (Some(_), None) if want.patient.id.is_some() => notes.push(Note::IssuerOnlyInStudy),
        (None, Some(_)) if want.patient.id.is_some() => notes.push(Note::IssuerOnlyInInstance),
        _ => {}
    }
    Ok(notes)
}

#[cfg(test)]
pub mod testfile;

#[cfg(test)]
pub(crate) mod tests;
