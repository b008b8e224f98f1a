//! Copying one part of the cloud's answer into a staged file: a part that
//! does not begin as a DICOM Part-10 file (the intake gate's first check)
//! is refused before it is written out in full, and one larger than the
//! cache allows is cut off, as an endless part would never end. Shared by
//! the fetch and by delivery's re-requests of an instance.

use std::io::{self, Read, Write};

use anyhow::{Result, anyhow};

use super::{Staged, TooLarge};
use crate::intake::walk::{PREAMBLE, preamble_problem};

/// A read from the cloud's response failed (cut connection, idle timeout):
/// transient, unlike an error writing to the cache.
#[derive(Debug)]
pub struct BodyReadFailed(io::Error);

impl std::fmt::Display for BodyReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the download was cut short: {}", self.0)
    }
}

impl std::error::Error for BodyReadFailed {}

/// Copies a part's body into the staged file, checking early that it is a
/// DICOM Part-10 file so that garbage is not written out in full. Returns
/// why the part is not acceptable, if it is not. A part larger than the
/// cache's maximum instance size is an error: the rest of the response is
/// not read, as an endless part would never end.
pub fn copy_part(body: &mut dyn Read, out: &mut Staged) -> Result<Option<String>> {
    let written = |e: io::Error, out: &Staged| match TooLarge::in_io(&e) {
        Some(TooLarge { limit }) => anyhow!(
            "the cloud sent more than the maximum instance size of {} for one instance, so the rest of this \
             download was not read; if the cloud holds instances this large, raise --max-instance-size \
             (`max_instance_size` in the config file), else report it to the cloud archive's administrators",
            crate::format::binary_size(limit)
        ),
        None => crate::cache::write_error(e, "write", out.path()),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = |buf: &mut [u8]| loop {
        match body.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(BodyReadFailed),
        }
    };
    let mut filled = 0;
    while filled < PREAMBLE {
        let n = read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    if let Some(why) = preamble_problem(&buf[..filled], filled >= PREAMBLE) {
        return Ok(Some(why.to_string()));
    }
    out.write_all(&buf[..filled]).map_err(|e| written(e, out))?;
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        out.write_all(&buf[..n]).map_err(|e| written(e, out))?;
    }
}
