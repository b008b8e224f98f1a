//! A tiny DICOM Part-10 writer for tests: valid instances, and hostile ones
//! (lengths that lie, sequences that never close or nest too deep) built
//! element by element. Self-contained, so that the integration tests include
//! this same file rather than keep a copy.

#![allow(dead_code)]

pub const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// Data set bytes, written element by element in one encoding.
#[derive(Debug, Clone)]
pub struct Writer {
    pub out: Vec<u8>,
    pub explicit: bool,
    pub big_endian: bool,
}

impl Writer {
    pub fn new(explicit: bool, big_endian: bool) -> Writer {
        Writer {
            out: Vec::new(),
            explicit,
            big_endian,
        }
    }

    /// For the transfer syntax `ts` (deflated is written as explicit little endian).
    pub fn for_syntax(ts: &str) -> Writer {
        Writer::new(ts != IMPLICIT_LE, ts == EXPLICIT_BE)
    }

    fn u16(&mut self, v: u16) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }

    /// An element header declaring `len` bytes, whatever follows.
    pub fn header(&mut self, group: u16, element: u16, vr: &str, len: u32) -> &mut Writer {
        self.u16(group);
        self.u16(element);
        if self.explicit {
            self.out.extend_from_slice(vr.as_bytes());
            if matches!(
                vr,
                "OB" | "OD" | "OF" | "OL" | "OV" | "OW" | "SQ" | "SV" | "UC" | "UN" | "UR" | "UT" | "UV"
            ) {
                self.out.extend_from_slice(&[0, 0]);
                self.u32(len);
            } else {
                self.u16(len as u16);
            }
        } else {
            self.u32(len);
        }
        self
    }

    /// A whole element, its value padded to an even length.
    pub fn element(&mut self, group: u16, element: u16, vr: &str, value: &[u8]) -> &mut Writer {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(if matches!(vr, "UI" | "OB" | "UN") { 0 } else { b' ' });
        }
        self.header(group, element, vr, value.len() as u32);
        self.out.extend_from_slice(&value);
        self
    }

    pub fn text(&mut self, group: u16, element: u16, vr: &str, value: &str) -> &mut Writer {
        self.element(group, element, vr, value.as_bytes())
    }

    /// An item (or fragment) header declaring `len` bytes (`u32::MAX`: undefined).
    pub fn item(&mut self, len: u32) -> &mut Writer {
        self.u16(0xFFFE);
        self.u16(0xE000);
        self.u32(len);
        self
    }

    pub fn item_end(&mut self) -> &mut Writer {
        self.u16(0xFFFE);
        self.u16(0xE00D);
        self.u32(0);
        self
    }

    pub fn sequence_end(&mut self) -> &mut Writer {
        self.u16(0xFFFE);
        self.u16(0xE0DD);
        self.u32(0);
        self
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Writer {
        self.out.extend_from_slice(bytes);
        self
    }

    /// `depth` sequences of undefined length, each in an item of the one
    /// above; `closed` says whether they are closed again.
    pub fn nested(&mut self, depth: usize, closed: bool) -> &mut Writer {
        for _ in 0..depth {
            // Referenced Image Sequence: an SQ in the dictionary, as implicit VR needs.
            self.header(0x0008, 0x1140, "SQ", u32::MAX);
            self.item(u32::MAX);
        }
        if closed {
            for _ in 0..depth {
                self.item_end();
                self.sequence_end();
            }
        }
        self
    }
}

/// The identity of a test instance.
#[derive(Debug, Clone)]
pub struct Ids<'a> {
    pub study: &'a str,
    pub series: &'a str,
    pub sop: &'a str,
    pub patient: Option<&'a str>,
    pub issuer: Option<&'a str>,
}

impl<'a> Ids<'a> {
    pub fn new(study: &'a str, series: &'a str, sop: &'a str, patient: Option<&'a str>) -> Ids<'a> {
        Ids {
            study,
            series,
            sop,
            patient,
            issuer: None,
        }
    }
}

/// The identifying elements of `ids`, in tag order up to (not including) the
/// Study Instance UID: SOP Class, SOP Instance, Patient ID and its issuer.
pub fn identity(w: &mut Writer, ids: &Ids) {
    w.text(0x0008, 0x0016, "UI", CT_IMAGE);
    w.text(0x0008, 0x0018, "UI", ids.sop);
    if let Some(p) = ids.patient {
        w.text(0x0010, 0x0020, "LO", p);
    }
    if let Some(i) = ids.issuer {
        w.text(0x0010, 0x0021, "LO", i);
    }
}

/// The Study and Series Instance UIDs.
pub fn study_series(w: &mut Writer, ids: &Ids) {
    w.text(0x0020, 0x000D, "UI", ids.study);
    w.text(0x0020, 0x000E, "UI", ids.series);
}

/// A small valid instance's data set in `ts`: identity, a nested sequence,
/// and 16 bytes of pixel data.
pub fn data_set(ts: &str, ids: &Ids) -> Vec<u8> {
    data_set_with_pixels(ts, ids, &[0x11; 16])
}

/// [`data_set`] with `pixels` as its pixel data.
pub fn data_set_with_pixels(ts: &str, ids: &Ids, pixels: &[u8]) -> Vec<u8> {
    let mut w = Writer::for_syntax(ts);
    identity(&mut w, ids);
    w.header(0x0008, 0x1140, "SQ", u32::MAX)
        .item(u32::MAX)
        .text(0x0008, 0x1150, "UI", CT_IMAGE)
        .item_end()
        .sequence_end();
    study_series(&mut w, ids);
    w.element(
        0x0028,
        0x0010,
        "US",
        &if w.big_endian {
            4u16.to_be_bytes()
        } else {
            4u16.to_le_bytes()
        },
    );
    w.element(0x7FE0, 0x0010, "OW", pixels);
    w.out
}

/// A Part-10 file: preamble, meta group (always explicit VR little endian)
/// and `data_set` as given.
pub fn part10(ts: &str, sop_class: &str, sop: &str, data_set: &[u8]) -> Vec<u8> {
    let mut meta = Writer::new(true, false);
    meta.element(0x0002, 0x0001, "OB", &[0, 1])
        .text(0x0002, 0x0002, "UI", sop_class)
        .text(0x0002, 0x0003, "UI", sop)
        .text(0x0002, 0x0010, "UI", ts)
        .text(0x0002, 0x0012, "UI", "1.2.3.4.5.6");
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let mut group = Writer::new(true, false);
    group.element(0x0002, 0x0000, "UL", &(meta.out.len() as u32).to_le_bytes());
    out.extend_from_slice(&group.out);
    out.extend_from_slice(&meta.out);
    out.extend_from_slice(data_set);
    out
}

/// A small valid instance file in `ts`.
pub fn instance(ts: &str, ids: &Ids) -> Vec<u8> {
    part10(ts, CT_IMAGE, ids.sop, &data_set(ts, ids))
}
