//! Reading the identifying header of a DICOM Part-10 file, and the checks
//! every instance from the cloud passes before it is accepted.

use std::path::Path;

use anyhow::{Context, Result, bail};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

use crate::uid::Uid;

/// The identifying attributes of an instance file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub study: Uid,
    pub series: Uid,
    pub sop_instance: Uid,
    pub sop_class: String,
    pub transfer_syntax: String,
    pub patient_id: Option<String>,
}

/// Reads the header of the Part-10 file at `path`, up to the pixel data,
/// and checks its UIDs against the PS3.5 grammar.
pub fn read_header(path: &Path) -> Result<Header> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(anyhow::Error::new)
        .context("it does not parse as a DICOM Part-10 file")?;
    let text = |tag, name: &str| -> Result<String> {
        let value = obj
            .element(tag)
            .map_err(|_| anyhow::anyhow!("it has no {name}"))?
            .to_str()
            .map_err(|e| anyhow::anyhow!("its {name} is unreadable: {e}"))?;
        Ok(value.trim_end_matches(['\0', ' ']).to_string())
    };
    let uid = |tag, name: &str| -> Result<Uid> {
        let value = text(tag, name)?;
        Uid::parse(&value).with_context(|| format!("its {name} is invalid"))
    };
    let meta = obj.meta();
    let header = Header {
        study: uid(tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
        series: uid(tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
        sop_instance: uid(tags::SOP_INSTANCE_UID, "SOP Instance UID")?,
        sop_class: meta
            .media_storage_sop_class_uid
            .trim_end_matches(['\0', ' '])
            .to_string(),
        transfer_syntax: meta.transfer_syntax().trim_end_matches(['\0', ' ']).to_string(),
        patient_id: text(tags::PATIENT_ID, "Patient ID").ok().filter(|p| !p.is_empty()),
    };
    let meta_sop = meta.media_storage_sop_instance_uid.trim_end_matches(['\0', ' ']);
    if meta_sop != header.sop_instance.as_str() {
        bail!(
            "its file meta information names SOP Instance `{meta_sop}` but its data set names `{}`",
            header.sop_instance
        );
    }
    Ok(header)
}

/// What an instance from the cloud must be to be accepted into a study.
pub struct Expectation<'a> {
    pub study: &'a Uid,
    pub patient_id: Option<&'a str>,
    /// The series the cloud listed this SOP Instance UID in, if it did.
    pub series_of: &'a dyn Fn(&str) -> Option<String>,
}

/// Checks `header` against what was asked for. The message says what was
/// wrong; the caller adds which study and part it was.
pub fn check(header: &Header, want: &Expectation) -> Result<()> {
    if &header.study != want.study {
        bail!("it belongs to study `{}`, not to the study asked for", header.study);
    }
    if let (Some(want_pid), Some(got)) = (want.patient_id, header.patient_id.as_deref())
        && want_pid.trim() != got.trim()
    {
        bail!(
            "its Patient ID `{}` is not the study's Patient ID `{}`",
            crate::text::escape(got),
            crate::text::escape(want_pid)
        );
    }
    if let Some(series) = (want.series_of)(header.sop_instance.as_str())
        && series != header.series.as_str()
    {
        bail!(
            "it is in series `{}` but the cloud listed it in series `{series}`",
            header.series
        );
    }
    Ok(())
}
