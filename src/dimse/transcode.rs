//! Lossless conversion of an instance to an uncompressed transfer syntax the
//! destination accepted, for when it does not take the file's own syntax:
//! implicit ⇄ explicit VR little endian, explicit VR big endian and deflated
//! to little endian, and decompression of what dicom-rs decodes (RLE, the
//! JPEG family via the pure-Rust jpeg-decoder). Nothing is ever re-encoded
//! with loss; lossy-compressed sources are decompressed only when allowed.
//!
//! A converted instance is built in memory (the whole object is read and
//! decoded); instances sent in their own syntax never are.

use std::path::Path;

use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::association::chain;
use super::{DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use crate::coerce::Coercions;
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// Encapsulated syntaxes whose pixel data is bit-exact after decoding.
/// (JPEG XL JPEG recompression, .111, is lossless over a lossy JPEG, so it
/// is not here.)
const LOSSLESS_ENCAPSULATED: &[&str] = &[
    RLE_LOSSLESS,
    "1.2.840.10008.1.2.1.98",  // encapsulated uncompressed explicit VR LE
    "1.2.840.10008.1.2.4.57",  // JPEG lossless, non-hierarchical (process 14)
    "1.2.840.10008.1.2.4.70",  // JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  // JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless only
    "1.2.840.10008.1.2.4.110", // JPEG XL lossless
    "1.2.840.10008.1.2.4.201", // HTJ2K lossless
    "1.2.840.10008.1.2.4.202", // HTJ2K lossless RPCL
];

/// Syntaxes we convert into: uncompressed little endian.
pub fn is_uncompressed_le(ts: &str) -> bool {
    ts == EXPLICIT_VR_LE || ts == IMPLICIT_VR_LE
}

/// Whether a file in `source` can be converted to an uncompressed little
/// endian syntax without loss (or, with `decompress_lossy`, at least without
/// any loss beyond the one already in the file).
pub fn can_convert(source: &str, decompress_lossy: bool) -> bool {
    if is_uncompressed_le(source) || source == EXPLICIT_VR_BE || source == DEFLATED_EXPLICIT_VR_LE {
        return TransferSyntaxRegistry
            .get(source)
            .is_some_and(|ts| ts.can_decode_dataset());
    }
    let Some(ts) = TransferSyntaxRegistry.get(source) else {
        return false;
    };
    if !ts.is_encapsulated_pixel_data() || !ts.can_decode_all() {
        return false;
    }
    LOSSLESS_ENCAPSULATED.contains(&source) || decompress_lossy
}

/// Reads the instance at `path` and encodes its data set (without the file
/// meta group) in `target`, one of the uncompressed little endian syntaxes,
/// with `coerce` applied.
pub fn convert(path: &Path, source: &str, target: &str, coerce: &Coercions) -> Result<Vec<u8>, String> {
    let target_ts = TransferSyntaxRegistry
        .get(target)
        .filter(|_| is_uncompressed_le(target))
        .ok_or_else(|| format!("cannot convert to transfer syntax {target}"))?;
    let mut obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| format!("could not parse it: {}", chain(&e)))?;
    let encapsulated = TransferSyntaxRegistry
        .get(source)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data());
    if encapsulated {
        // Decoders are third-party code fed with outside data; a panic in
        // one must fail this instance, not the whole run.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decompress(&mut obj, source)))
            .map_err(|_| "the pixel data decoder crashed".to_string())??;
    }
    coerce
        .apply(&mut obj)
        .map_err(|why| format!("it could not be coerced: {why}"))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, target_ts)
        .map_err(|e| format!("could not encode it in {target}: {}", chain(&e)))?;
    Ok(out)
}

/// Replaces encapsulated pixel data by its decoded native form, and fixes
/// the attributes that describe the pixel layout.
fn decompress(obj: &mut DefaultDicomObject, source: &str) -> Result<(), String> {
    let int = |tag: Tag| -> Option<u32> { obj.get(tag).and_then(|e| e.to_int::<u32>().ok()) };
    let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let rows = int(tags::ROWS).unwrap_or(0) as u64;
    let cols = int(tags::COLUMNS).unwrap_or(0) as u64;
    let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u64;
    let bits = int(tags::BITS_ALLOCATED).unwrap_or(0);
    let pmi = obj
        .get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();

    // What the photometric interpretation becomes. jpeg-decoder turns
    // YCbCr into RGB for lossy JPEG; RLE keeps the samples as they are.
    let new_pmi: &str = if samples == 1 || source == RLE_LOSSLESS || pmi == "RGB" {
        &pmi
    } else if (source == JPEG_BASELINE || source == JPEG_EXTENDED) && pmi.starts_with("YBR_FULL") {
        "RGB"
    } else {
        return Err(format!(
            "decompressing {samples}-sample {pmi} pixel data from {source} is not supported"
        ));
    };
    if bits != 8 && bits != 16 {
        return Err(format!(
            "decompressing pixel data of {bits} bits allocated is not supported"
        ));
    }

    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| format!("could not decode the pixel data: {}", chain(&e)))?;
    let expected = rows * cols * samples as u64 * frames * (bits as u64 / 8);
    if decoded.data().len() as u64 != expected {
        return Err(format!(
            "the decoded pixel data has {} bytes where {rows}×{cols}×{samples}×{frames} samples of {bits} bits need {expected}",
            decoded.data().len()
        ));
    }
    let (vr, mut bytes) = if bits == 16 {
        let words = decoded.data_ow();
        (VR::OW, words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>())
    } else {
        (VR::OB, decoded.into_data())
    };
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let len = bytes.len() as u32;
    obj.put(DataElement::new_with_len(
        tags::PIXEL_DATA,
        vr,
        Length::defined(len),
        PrimitiveValue::from(bytes),
    ));
    if samples > 1 {
        // Decoders hand the samples interleaved (colour-by-pixel).
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    if new_pmi != pmi {
        let new_pmi = new_pmi.to_string();
        obj.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, new_pmi));
    }
    // Only meaningful for encapsulated pixel data.
    obj.remove_element(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::meta::FileMetaTableBuilder;
    use dicom_object::{FileDicomObject, InMemDicomObject};
    use dicom_transfer_syntax_registry::entries;

    #[test]
    fn conversion_capabilities() {
        assert!(can_convert(IMPLICIT_VR_LE, false));
        assert!(can_convert(EXPLICIT_VR_LE, false));
        assert!(can_convert(EXPLICIT_VR_BE, false));
        assert!(can_convert(DEFLATED_EXPLICIT_VR_LE, false));
        assert!(can_convert(RLE_LOSSLESS, false));
        assert!(can_convert("1.2.840.10008.1.2.4.70", false));
        // Lossy JPEG only with the opt-in; JPEG 2000 has no decoder here.
        assert!(!can_convert(JPEG_BASELINE, false));
        assert!(can_convert(JPEG_BASELINE, true));
        assert!(!can_convert("1.2.840.10008.1.2.4.91", true));
        assert!(!can_convert("1.2.3.4", true));
    }

    /// Builds a small explicit VR LE CT-like instance on disk.
    fn sample(dir: &Path, ts: &str) -> std::path::PathBuf {
        let mut ds = InMemDicomObject::new_empty();
        ds.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.7",
        ));
        ds.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"));
        ds.put(DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^Jane"));
        ds.put(DataElement::new(
            tags::SMALLEST_IMAGE_PIXEL_VALUE,
            VR::SS,
            PrimitiveValue::from(-5i16),
        ));
        ds.put(DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(1u16),
        ));
        ds.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2u16)));
        ds.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(2u16)));
        ds.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16u16),
        ));
        ds.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![1, 2, 65535, 4].into()),
        ));
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("1.2.3.4.5")
            .transfer_syntax(ts)
            .build()
            .unwrap();
        let obj = FileDicomObject::new_empty_with_meta(meta);
        let mut obj = obj;
        for e in ds {
            obj.put(e);
        }
        let path = dir.join("in.dcm");
        obj.write_to_file(&path).unwrap();
        path
    }

    #[test]
    fn explicit_to_implicit_and_back_keeps_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), EXPLICIT_VR_LE);
        let implicit = convert(&path, EXPLICIT_VR_LE, IMPLICIT_VR_LE, &Coercions::default()).unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(&implicit[..], &entries::IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        assert_eq!(back.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(), "Doe^Jane");
        // The signed "xs" element survives thanks to Pixel Representation.
        assert_eq!(
            back.element(tags::SMALLEST_IMAGE_PIXEL_VALUE)
                .unwrap()
                .to_int::<i32>()
                .unwrap(),
            -5
        );
        assert_eq!(
            back.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().as_ref(),
            &[1, 0, 2, 0, 255, 255, 4, 0]
        );

        // And implicit → explicit: write the implicit form as a file, convert.
        let dir2 = tempfile::tempdir().unwrap();
        let p2 = sample(dir2.path(), IMPLICIT_VR_LE);
        let explicit = convert(&p2, IMPLICIT_VR_LE, EXPLICIT_VR_LE, &Coercions::default()).unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(&explicit[..], &entries::EXPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        let e = back.element(tags::SMALLEST_IMAGE_PIXEL_VALUE).unwrap();
        assert_eq!(e.vr(), VR::SS);
        assert_eq!(e.to_int::<i32>().unwrap(), -5);
        assert_eq!(back.element(tags::PATIENT_NAME).unwrap().vr(), VR::PN);
    }

    #[test]
    fn refuses_other_targets() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), EXPLICIT_VR_LE);
        assert!(convert(&path, EXPLICIT_VR_LE, RLE_LOSSLESS, &Coercions::default()).is_err());
    }
}
