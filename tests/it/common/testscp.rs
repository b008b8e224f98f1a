//! The pynetdicom storage SCP of `scripts/test_scp.py` as a destination that misbehaves on
//! request (chosen statuses, transfer syntaxes, AE title checks, aborts, stalls), stopped when
//! dropped; and test instances made with pydicom in any transfer syntax.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use retriever::dimse::Destination;

use super::{python, repo_root};

/// A running `scripts/test_scp.py`, listening on 127.0.0.1, writing what it stores into a
/// temporary directory as `<SOPInstanceUID>.dcm` and logging every C-STORE request.
pub struct TestScp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestScp {
    /// `test_scp.py --port 0 --out DIR --log LOG --assoc-log LOG ARGS...`; waits for it to listen. Its test
    /// declares the `python` peer. The AE title is `TESTSCP` unless `--ae-title` is given.
    pub fn start(args: &[&str]) -> TestScp {
        let dir = tempfile::Builder::new()
            .prefix("retriever-testscp-")
            .tempdir()
            .expect("create a directory for test_scp.py");
        let out = dir.path().join("received");
        std::fs::create_dir(&out).expect("create test_scp.py's output directory");
        let script = repo_root().join("scripts/test_scp.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--port", "0", "--out"])
            .arg(&out)
            .arg("--log")
            .arg(dir.path().join("requests.log"))
            .arg("--assoc-log")
            .arg(dir.path().join("associations.log"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start `{}`: {e}", script.display()));
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let Some(port) = line.strip_prefix("ready ").and_then(|p| p.trim().parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("test_scp.py did not start: {line:?}");
        };
        TestScp { child, port, dir }
    }

    /// `AE@127.0.0.1:PORT`, as `retriever --to` takes it.
    pub fn address(&self, ae: &str) -> String {
        format!("{ae}@127.0.0.1:{}", self.port)
    }

    /// The same, as the library takes it.
    pub fn dest(&self, ae: &str) -> Destination {
        Destination {
            ae_title: ae.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: self.port,
        }
    }

    /// Where stored instances are written.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("received")
    }

    /// Stored instances by SOP Instance UID (files still being written are left out).
    pub fn received(&self) -> BTreeMap<String, PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let uid = name.strip_suffix(".dcm")?.to_owned();
                Some((uid, e.path()))
            })
            .collect()
    }

    pub fn received_sop_uids(&self) -> BTreeSet<String> {
        self.received().into_keys().collect()
    }

    /// Every C-STORE request so far as (SOP Instance UID, status as `0x0000` or `abort`), in
    /// the order they came.
    pub fn requests(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(uid, status)| (uid.to_owned(), status.to_owned()))
            .collect()
    }

    /// How many associations were established so far.
    pub fn associations(&self) -> usize {
        let text = std::fs::read_to_string(self.dir.path().join("associations.log")).unwrap_or_default();
        text.lines().filter(|l| l.starts_with("established ")).count()
    }

    /// The path of a stored instance; panics if it was not stored.
    pub fn file(&self, sop_uid: &str) -> PathBuf {
        self.received()
            .remove(sop_uid)
            .unwrap_or_else(|| panic!("test_scp.py did not store {sop_uid}"))
    }
}

impl Drop for TestScp {
    fn drop(&mut self) {
        // Closing its stdin ends it too; killing is quicker.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Pillow is importable (to make JPEG test instances).
pub fn pillow_ok() -> bool {
    Command::new(python())
        .args(["-c", "import PIL"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes instances with pydicom from a JSON list of specs; each also gets a `.raw` file with its
/// native pixel bytes (little endian, interleaved). All belong to one study and series.
const MAKE_INSTANCES: &str = r#"
import json, sys, numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid, RLELossless
from pydicom.encaps import encapsulate
out, specs = sys.argv[1], json.loads(sys.argv[2])
for i, s in enumerate(specs):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = s.get("sop", "1.2.840.10008.5.1.4.1.1.7")
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = s.get("patient", "P1")
    ds.StudyDate = "20240131"
    ds.StudyInstanceUID = s.get("study", "1.2.826.0.1.3680043.8.498.1")
    ds.SeriesInstanceUID = s.get("series", "1.2.826.0.1.3680043.8.498.2")
    ds.AccessionNumber = s.get("accession", "")
    ds.Modality = "CT" if ds.SOPClassUID.endswith(".1.1.2") else "OT"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelSpacing = [0.5, 0.25]
    ds.InstanceNumber = i + 1
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = ds.SOPClassUID
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", "private note")
    rows, cols = s.get("rows", 8), s.get("cols", 8)
    ds.Rows, ds.Columns = rows, cols
    rng = np.random.default_rng(i)
    if s.get("rgb"):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        arr = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
        arr = rng.integers(-2048, 2048, (rows, cols), dtype=np.int16)
        ds.SmallestImagePixelValue = int(arr.min())
        ds["SmallestImagePixelValue"].VR = "SS"
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    ts = s["ts"]
    if ts == "1.2.840.10008.1.2.5":
        ds.compress(RLELossless, encoding_plugin="pydicom")
        if s.get("rgb"):
            ds.PlanarConfiguration = 1  # allowed for RLE; decoders give pixel-interleaved samples
    elif ts == "1.2.840.10008.1.2.4.50":
        import io
        from PIL import Image
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        del ds.SmallestImagePixelValue
        gray = (np.add.outer(np.arange(rows), np.arange(cols)) * 4 % 256).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(gray, "L").save(buf, format="JPEG", quality=90)
        jpg = buf.getvalue()
        raw = Image.open(io.BytesIO(jpg)).tobytes()
        ds.file_meta.TransferSyntaxUID = ts
        ds.LossyImageCompression = "01"
        ds.PixelData = encapsulate([jpg])
        ds["PixelData"].VR = "OB"
    elif ts == "1.2.840.10008.1.2.4.90":
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(62)])
        ds["PixelData"].VR = "OB"
    else:
        ds.file_meta.TransferSyntaxUID = ts
    name = f"{out}/{i:04}.dcm"
    ds.save_as(name, enforce_file_format=True)
    open(name[:-4] + ".raw", "wb").write(raw)
print("done")
"#;

/// A made instance: its file, and its pixel samples as raw little-endian bytes.
pub struct Made {
    pub path: PathBuf,
    pub raw_pixels: Vec<u8>,
}

/// Makes one instance per spec in `dir`. A spec is a JSON object: `ts` (transfer syntax UID:
/// explicit or implicit VR LE, RLE, JPEG baseline `.4.50` which needs Pillow, or a fake JPEG
/// 2000 `.4.90`), and optionally `sop` (SOP class), `rgb`, `rows`, `cols`, `study`, `series`,
/// `patient`, `accession`.
pub fn make_instances(dir: &Path, specs: &[&str]) -> Vec<Made> {
    let json = format!("[{}]", specs.join(","));
    let out = Command::new(python())
        .args(["-c", MAKE_INSTANCES])
        .arg(dir)
        .arg(json)
        .stdin(Stdio::null())
        .output()
        .expect("run python to make test instances");
    assert!(
        out.status.success(),
        "making instances failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (0..specs.len())
        .map(|i| Made {
            path: dir.join(format!("{i:04}.dcm")),
            raw_pixels: std::fs::read(dir.join(format!("{i:04}.raw"))).expect("read .raw"),
        })
        .collect()
}
