//! The structure walk: every element header of a Part-10 file is read, and
//! every value skipped, before any parser builds the file in memory.
//!
//! A DICOM parser trusts the lengths a file declares: a part of a few bytes
//! that declares a 4 GiB value makes it reserve 4 GiB, and sequences nested
//! ten thousand deep make a recursive parser overflow its stack. The walk
//! reads the file through one small buffer, keeps its own bounded stack of
//! open sequences and items, and checks each declared length against the
//! bytes that are really there. Only a file that passes is handed to the
//! parser, which then cannot be told to allocate more than the file holds.
//!
//! Covered: the file meta group (explicit VR little endian, as PS3.10
//! requires), then the data set in implicit or explicit VR, little or big
//! endian, or deflated (inflated on the fly, up to a bound); sequences and
//! items of defined and undefined length; encapsulated pixel data (an
//! undefined-length OB/OW holding fragments).

use std::io::{self, Read};

use dicom_core::Tag;
use dicom_core::VR;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;

/// Sequences nested deeper than this are refused: real instances nest a
/// handful deep, and every parser level costs stack.
pub const MAX_DEPTH: usize = 32;
/// The file meta group is a few hundred bytes; this leaves room for generous
/// private meta elements and bounds what is read of it into memory.
const MAX_META: u64 = 64 * 1024;
/// Size of the one buffer values are skipped through when the input cannot seek.
const SCRATCH: usize = 8 * 1024;
const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

/// What the file meta group says about the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub transfer_syntax: String,
    pub sop_class: String,
    pub sop_instance: String,
}

/// Why a file is refused; the text says what is wrong, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// What went wrong during a walk: the file is malformed, or it could not be read.
#[derive(Debug)]
pub enum WalkError {
    Malformed(Malformed),
    Io(io::Error),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, WalkError> {
    Err(WalkError::Malformed(Malformed(why.into())))
}

/// A reader that counts what it has consumed and can skip forward. Skipping
/// reads through a fixed buffer, so an input that is not a file (an
/// inflating decoder) costs no more memory than one that is.
struct Source<R> {
    inner: R,
    pos: u64,
    /// The input's length when known (a file): lets a skip past the end be
    /// found before reading, and skips be seeks.
    len: Option<u64>,
    scratch: [u8; SCRATCH],
}

impl<R: Read> Source<R> {
    /// Fills `buf`; `Ok(false)` when the input ended before its first byte.
    fn read_exact_or_end(&mut self, buf: &mut [u8]) -> Result<bool, WalkError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return bad(format!(
                        "it is truncated: it ends in the middle of an element header at byte {}",
                        self.pos
                    ));
                }
                Ok(n) => {
                    filled += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), WalkError> {
        if self.read_exact_or_end(buf)? {
            Ok(())
        } else {
            bad(format!(
                "it is truncated: it ends in the middle of an element header at byte {}",
                self.pos
            ))
        }
    }

    fn skip(&mut self, n: u64, what: impl Fn() -> String) -> Result<(), WalkError>
    where
        R: Skip,
    {
        if let Some(len) = self.len
            && self.pos.saturating_add(n) > len
        {
            return bad(format!(
                "{} declares {n} bytes but only {} remain: the instance is truncated or its lengths are wrong",
                what(),
                len - self.pos
            ));
        }
        if self.len.is_some() && self.inner.seek_forward(n)? {
            self.pos += n;
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let want = left.min(SCRATCH as u64) as usize;
            match self.inner.read(&mut self.scratch[..want]) {
                Ok(0) => {
                    return bad(format!(
                        "{} declares {n} bytes but only {} remain: the instance is truncated or its lengths are wrong",
                        what(),
                        n - left
                    ));
                }
                Ok(k) => {
                    left -= k as u64;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Skipping forward without reading, where the input allows it.
pub trait Skip: Read {
    /// Moves `n` bytes forward; `false` when this input cannot (it is then read through).
    fn seek_forward(&mut self, n: u64) -> io::Result<bool>;
}

impl<R: Read + io::Seek> Skip for io::BufReader<R> {
    fn seek_forward(&mut self, n: u64) -> io::Result<bool> {
        match i64::try_from(n) {
            Ok(n) => self.seek_relative(n).map(|()| true),
            Err(_) => Ok(false),
        }
    }
}

impl Skip for &[u8] {
    fn seek_forward(&mut self, n: u64) -> io::Result<bool> {
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(self.len());
        *self = &self[n..];
        Ok(true)
    }
}

/// An input that cannot seek: inflated data.
struct Stream<R>(R);

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Skip for Stream<R> {
    fn seek_forward(&mut self, _: u64) -> io::Result<bool> {
        Ok(false)
    }
}

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

impl Encoding {
    const IMPLICIT_LE: Encoding = Encoding {
        explicit: false,
        big_endian: false,
    };

    fn u16(self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// The preamble and the `DICM` marker that open a Part-10 file.
pub const PREAMBLE: usize = 132;

/// Why the first [`PREAMBLE`] bytes of a file are not the opening of a
/// Part-10 file (`complete`: all of them came), if they are not. Checked
/// as the part arrives too, so that garbage is not written out in full.
pub fn preamble_problem(first: &[u8], complete: bool) -> Option<&'static str> {
    if !complete || first.len() < PREAMBLE {
        return Some("it is not a DICOM Part-10 file (it is shorter than the preamble and the DICM marker)");
    }
    (&first[128..PREAMBLE] != b"DICM").then_some("it is not a DICOM Part-10 file (no DICM marker at byte 128)")
}

/// Walks the Part-10 file read from `input`, `len` bytes long. A deflated
/// data set may inflate to at most `max_inflated` bytes.
pub fn walk<R: Skip>(input: R, len: u64, max_inflated: u64) -> Result<Meta, WalkError> {
    walk_located(input, len, max_inflated).map(|(meta, _)| meta)
}

/// [`walk`], also saying where the data set's own Pixel Data element
/// (7FE0,0010) starts in the file, its header included: what comes before
/// it is the part of an instance that can be re-encoded without touching
/// the pixels. `None` when the data set has none, or is deflated (its
/// offsets are then in the inflated stream, not the file).
pub fn walk_located<R: Skip>(input: R, len: u64, max_inflated: u64) -> Result<(Meta, Option<u64>), WalkError> {
    let mut src = Source {
        inner: input,
        pos: 0,
        len: Some(len),
        scratch: [0; SCRATCH],
    };
    let mut preamble = [0u8; PREAMBLE];
    let read = src.read_exact_or_end(&mut preamble)?;
    if let Some(why) = preamble_problem(&preamble, read) {
        return bad(why);
    }
    let meta = read_meta(&mut src)?;
    match meta.transfer_syntax.clone().as_str() {
        DEFLATED_LE => {
            let rest = len - src.pos;
            let inflater = flate2::read::DeflateDecoder::new(io::Read::take(src.inner, rest));
            let mut inflated = Source {
                inner: Stream(LimitedInflate {
                    inner: inflater,
                    left: max_inflated,
                }),
                pos: 0,
                len: None,
                scratch: [0; SCRATCH],
            };
            let explicit = Encoding {
                explicit: true,
                big_endian: false,
            };
            walk_data_set(&mut inflated, explicit, &mut None)?;
            Ok((meta, None))
        }
        ts => {
            let encoding = Encoding {
                explicit: ts != IMPLICIT_VR_LE,
                big_endian: ts == EXPLICIT_VR_BE,
            };
            let mut pixel_data_at = None;
            walk_data_set(&mut src, encoding, &mut pixel_data_at)?;
            Ok((meta, pixel_data_at))
        }
    }
}

/// Inflated data, refused past a bound: a few kilobytes can inflate to gigabytes.
struct LimitedInflate<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for LimitedInflate<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                Malformed(format!("its deflated data set does not inflate: {e}")),
            )
        })?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Malformed("its deflated data set inflates to more than the maximum instance size".into()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn read_meta<R: Skip>(src: &mut Source<R>) -> Result<Meta, WalkError> {
    let le = Encoding {
        explicit: true,
        big_endian: false,
    };
    // PS3.10 §7.1: the group length comes first and says where the group
    // ends; the parser relies on it too.
    let mut head = [0u8; 12];
    src.read_exact(&mut head)?;
    if head[..8] != [0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00] {
        return bad("its file meta group does not start with its group length (0002,0000)");
    }
    let group_len = u64::from(le.u32([head[8], head[9], head[10], head[11]]));
    if group_len > MAX_META {
        return bad(format!(
            "its file meta group declares {group_len} bytes; more than {MAX_META} is not a real meta group"
        ));
    }
    let end = src.pos + group_len;
    let (mut ts, mut class, mut instance) = (None, None, None);
    while src.pos < end {
        let mut head = [0u8; 8];
        src.read_exact(&mut head)?;
        let (group, element) = (le.u16([head[0], head[1]]), le.u16([head[2], head[3]]));
        let vr = [head[4], head[5]];
        if group != 0x0002 {
            return bad(format!(
                "its file meta group holds element ({group:04X},{element:04X}); its group length is wrong"
            ));
        }
        if !vr.iter().all(u8::is_ascii_uppercase) {
            return bad(format!(
                "its file meta element (0002,{element:04X}) has no explicit VR; the file meta group is always explicit VR little endian"
            ));
        }
        let len = if long_length(vr) {
            let mut l = [0u8; 4];
            src.read_exact(&mut l)?;
            u64::from(le.u32(l))
        } else {
            u64::from(le.u16([head[6], head[7]]))
        };
        if src.pos + len > end {
            return bad(format!(
                "its file meta element (0002,{element:04X}) runs past the end of the group"
            ));
        }
        let slot = match element {
            0x0002 => &mut class,
            0x0003 => &mut instance,
            0x0010 => &mut ts,
            _ => {
                src.skip(len, || format!("file meta element (0002,{element:04X})"))?;
                continue;
            }
        };
        let mut value = [0u8; 64];
        if len as usize > value.len() {
            return bad(format!(
                "its file meta element (0002,{element:04X}) is {len} bytes long; a UID has at most 64"
            ));
        }
        src.read_exact(&mut value[..len as usize])?;
        let text = String::from_utf8_lossy(&value[..len as usize]);
        *slot = Some(text.trim_end_matches(['\0', ' ']).to_string());
    }
    let need = |v: Option<String>, name: &str| match v {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') => Ok(v),
        Some(v) if !v.is_empty() => bad(format!(
            "the {name} in its file meta group, `{}`, is an invalid UID",
            v.escape_debug()
        )),
        _ => bad(format!("its file meta group has no {name}")),
    };
    Ok(Meta {
        transfer_syntax: need(ts, "Transfer Syntax UID (0002,0010)")?,
        sop_class: need(class, "Media Storage SOP Class UID (0002,0002)")?,
        sop_instance: need(instance, "Media Storage SOP Instance UID (0002,0003)")?,
    })
}

/// VRs whose explicit header has two reserved bytes and a 4-byte length (PS3.5 §7.1.2).
fn long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    )
}

/// An open container on the walk's stack.
#[derive(Debug, Clone, Copy)]
enum Open {
    /// A sequence: items follow until its end or its delimiter.
    Sequence { end: Option<u64>, encoding: Encoding },
    /// An item of a sequence: a data set until its end or its delimiter.
    Item { end: Option<u64>, encoding: Encoding },
    /// Encapsulated pixel data: fragments until the sequence delimiter.
    Fragments { encoding: Encoding },
}

fn walk_data_set<R: Skip>(
    src: &mut Source<R>,
    top: Encoding,
    pixel_data_at: &mut Option<u64>,
) -> Result<(), WalkError> {
    // Never more than 2 × MAX_DEPTH + 1 entries: a fixed bound, not the file's say.
    let mut stack: Vec<Open> = Vec::with_capacity(2 * MAX_DEPTH + 2);
    let mut depth = 0usize;
    let result = walk_loop(src, top, &mut stack, &mut depth, pixel_data_at);
    match result {
        Err(WalkError::Io(e)) if e.get_ref().is_some_and(|i| i.is::<Malformed>()) => {
            let m = e.into_inner().and_then(|i| i.downcast::<Malformed>().ok()).map(|m| *m);
            Err(WalkError::Malformed(
                m.unwrap_or_else(|| Malformed("it is malformed".into())),
            ))
        }
        other => other,
    }
}

fn walk_loop<R: Skip>(
    src: &mut Source<R>,
    top: Encoding,
    stack: &mut Vec<Open>,
    depth: &mut usize,
    pixel_data_at: &mut Option<u64>,
) -> Result<(), WalkError> {
    loop {
        // Close every defined-length container that ends here.
        while let Some(open) = stack.last().copied() {
            let end = match open {
                Open::Sequence { end, .. } | Open::Item { end, .. } => end,
                Open::Fragments { .. } => None,
            };
            match end {
                Some(end) if src.pos == end => {
                    close(stack, depth);
                }
                Some(end) if src.pos > end => {
                    return bad(format!(
                        "an element runs past the end of its sequence or item at byte {end}"
                    ));
                }
                _ => break,
            }
        }
        let encoding = match stack.last() {
            Some(Open::Sequence { encoding, .. } | Open::Item { encoding, .. } | Open::Fragments { encoding }) => {
                *encoding
            }
            None => top,
        };
        let mut tag_bytes = [0u8; 4];
        let at = src.pos;
        if !src.read_exact_or_end(&mut tag_bytes)? {
            if stack.is_empty() {
                return Ok(());
            }
            return bad(format!(
                "it ends inside a sequence or item that never closes ({} open)",
                stack.len()
            ));
        }
        let tag = Tag(
            encoding.u16([tag_bytes[0], tag_bytes[1]]),
            encoding.u16([tag_bytes[2], tag_bytes[3]]),
        );
        let within = stack.last().copied();
        // Items and delimiters have no VR in any encoding.
        if tag.0 == 0xFFFE {
            let mut l = [0u8; 4];
            src.read_exact(&mut l)?;
            let len = encoding.u32(l);
            match (tag, within) {
                (ITEM, Some(Open::Sequence { encoding, .. })) => {
                    let end = (len != UNDEFINED).then(|| src.pos + u64::from(len));
                    check_fits(src, end, tag, at)?;
                    stack.push(Open::Item { end, encoding });
                }
                (ITEM, Some(Open::Fragments { .. })) => {
                    if len == UNDEFINED {
                        return bad(format!("a pixel data fragment at byte {at} has no length"));
                    }
                    src.skip(u64::from(len), || format!("the pixel data fragment at byte {at}"))?;
                }
                (ITEM_END, Some(Open::Item { end: None, .. })) => {
                    stack.pop();
                }
                (SEQUENCE_END, Some(Open::Sequence { end: None, .. })) => {
                    close(stack, depth);
                }
                (SEQUENCE_END, Some(Open::Fragments { .. })) => {
                    stack.pop();
                }
                _ => return bad(format!("it has a misplaced item or delimiter {tag} at byte {at}")),
            }
            continue;
        }
        if matches!(within, Some(Open::Sequence { .. } | Open::Fragments { .. })) {
            return bad(format!("it has element {tag} at byte {at} where only items may be"));
        }
        if within.is_none() && tag == PIXEL_DATA && pixel_data_at.is_none() {
            *pixel_data_at = Some(at);
        }
        let (vr, len) = if encoding.explicit {
            let mut vr = [0u8; 2];
            src.read_exact(&mut vr)?;
            if !vr.iter().all(u8::is_ascii_uppercase) {
                return bad(format!("element {tag} at byte {at} has no valid VR"));
            }
            let len = if long_length(vr) {
                let mut l = [0u8; 6];
                src.read_exact(&mut l)?;
                encoding.u32([l[2], l[3], l[4], l[5]])
            } else {
                let mut l = [0u8; 2];
                src.read_exact(&mut l)?;
                u32::from(encoding.u16(l))
            };
            (vr, len)
        } else {
            let mut l = [0u8; 4];
            src.read_exact(&mut l)?;
            let len = encoding.u32(l);
            // Implicit VR: the parser takes a sequence's VR from the dictionary,
            // so the walk does too.
            let vr = match StandardDataDictionary.by_tag(tag).map(|e| e.vr().relaxed()) {
                Some(VR::SQ) => *b"SQ",
                _ if len == UNDEFINED => *b"SQ",
                _ => *b"UN",
            };
            (vr, len)
        };
        match (&vr, len) {
            (b"SQ", _) => {
                let end = (len != UNDEFINED).then(|| src.pos + u64::from(len));
                check_fits(src, end, tag, at)?;
                open_sequence(stack, depth, end, encoding, tag)?;
            }
            // A sequence whose VR the sender did not know: implicit VR little
            // endian inside, whatever the outer encoding (PS3.5 §6.2.2).
            (b"UN", UNDEFINED) => {
                open_sequence(stack, depth, None, Encoding::IMPLICIT_LE, tag)?;
            }
            (b"OB" | b"OW", UNDEFINED) => stack.push(Open::Fragments { encoding }),
            (_, UNDEFINED) => return bad(format!("element {tag} at byte {at} has an undefined length")),
            _ => src.skip(u64::from(len), || format!("element {tag} at byte {at}"))?,
        }
    }
}

/// A defined-length container must end within the one holding it, and
/// within the file.
fn check_fits<R: Skip>(src: &Source<R>, end: Option<u64>, tag: Tag, at: u64) -> Result<(), WalkError> {
    if let (Some(end), Some(len)) = (end, src.len)
        && end > len
    {
        return bad(format!(
            "{tag} at byte {at} declares {} bytes but only {} remain: the instance is truncated or its lengths are wrong",
            end - src.pos,
            len - src.pos
        ));
    }
    Ok(())
}

fn open_sequence(
    stack: &mut Vec<Open>,
    depth: &mut usize,
    end: Option<u64>,
    encoding: Encoding,
    tag: Tag,
) -> Result<(), WalkError> {
    if *depth >= MAX_DEPTH {
        return bad(format!(
            "its sequences are nested more than {MAX_DEPTH} deep (at {tag})"
        ));
    }
    *depth += 1;
    stack.push(Open::Sequence { end, encoding });
    Ok(())
}

fn close(stack: &mut Vec<Open>, depth: &mut usize) {
    if let Some(Open::Sequence { .. }) = stack.pop() {
        *depth -= 1;
    }
}
