#!/usr/bin/env python3
"""Generate the DICOM test studies that retriever's tests and benchmarks use.

    gen_testdata.py OUTDIR [--large N] [--many N] [--today YYYYMMDD]

Writes Part-10 files (preamble + file meta) to OUTDIR/<study-label>/<series-number>/<sop-uid>.dcm
and OUTDIR/index.json, which describes every study, series and instance (with the sha256 of each
file). Everything is deterministic for a given day: fixed seeds and UIDs made from a fixed root and
counters. Study dates are relative to today because prior selection looks back from today.

The studies (see STUDIES below):
  * PAT001/HOSP_A: a current CT (ACC1001) and five priors (ACC1002..ACC1006) at 30, 200, 400, 800
    and 3000 days, the last beyond a 5-year lookback;
  * PAT002/HOSP_A: two studies (ACC2001, ACC2002);
  * PAT001/HOSP_B: one study (ACC3001) - same PatientID, other issuer: a prior-matching trap;
  * with --large N: ACCBIG/PAT900, N CT instances of 512x512 16-bit in 3 series;
  * with --large-priors: also 3 prior CT studies of PAT900 (ACCBIGP1..3, N/5 instances each of
    512x512, at 90, 400 and 900 days), for the router benchmark;
  * with --many N: ACCMANY/PAT901, N CT instances of 64x64 16-bit in 4 series (many small files).
Transfer syntaxes vary across studies (explicit and implicit VR little endian, RLE lossless,
deflated) and so do SOP classes (CT, MR, CR, DX, secondary capture).

A rerun with the same parameters on the same day does nothing (index.json records them); runs from
several processes at once are serialised with a lock file.
"""

import argparse
import datetime
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time

# pydicom and numpy are imported by load_libraries() only when there is work to do: the
# up-to-date check stays fast (the test harness runs it once per test binary).
np = pydicom = None

# SOP classes and transfer syntaxes (PS3.6), as strings so that no import is needed for them.
CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"
MRImageStorage = "1.2.840.10008.5.1.4.1.1.4"
ComputedRadiographyImageStorage = "1.2.840.10008.5.1.4.1.1.1"
DigitalXRayImageStorageForPresentation = "1.2.840.10008.5.1.4.1.1.1.1"
SecondaryCaptureImageStorage = "1.2.840.10008.5.1.4.1.1.7"
ImplicitVRLittleEndian = "1.2.840.10008.1.2"
ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
RLELossless = "1.2.840.10008.1.2.5"


def load_libraries():
    global np, pydicom
    import numpy
    import pydicom as pd
    import pydicom.dataset  # noqa: F401

    np, pydicom = numpy, pd


# Bump when the content changes, so that an existing OUTDIR is regenerated.
GENERATOR_VERSION = 1

# A root for UIDs of test data; every component after it is a counter without leading zeros.
UID_ROOT = "1.2.826.0.1.3680043.10.543."

PATIENTS = {
    "P1": dict(id="PAT001", issuer="HOSP_A", name="DOE^JOHN", birth="19560412", sex="M"),
    "P2": dict(id="PAT002", issuer="HOSP_A", name="ROE^JANE", birth="19710923", sex="F"),
    # Same PatientID as P1, another issuer: another person.
    "P3": dict(id="PAT001", issuer="HOSP_B", name="SMITH^ANNA", birth="19880101", sex="F"),
    "P9": dict(id="PAT900", issuer="HOSP_A", name="BIG^STUDY", birth="19650505", sex="O"),
    "P10": dict(id="PAT901", issuer="HOSP_A", name="MANY^SMALL", birth="19700707", sex="O"),
}

EXPLICIT = ExplicitVRLittleEndian
IMPLICIT = ImplicitVRLittleEndian
RLE = RLELossless
DEFLATED = DeflatedExplicitVRLittleEndian

# (number, label, patient, accession, days ago, study description, transfer syntax,
#  [(modality, SOP class, instance count, series description), ...])
# Study numbers 1..9 keep every study UID the same length, so a test can swap one for another
# in a response body without changing its length.
STUDIES = [
    (1, "p1-current-ct", "P1", "ACC1001", 0, "CT CHEST ABDOMEN", EXPLICIT,
     [("CT", CTImageStorage, 3, "AXIAL 5MM"), ("CT", CTImageStorage, 2, "CORONAL")]),
    (2, "p1-prior-ct-30d", "P1", "ACC1002", 30, "CT CHEST", IMPLICIT,
     [("CT", CTImageStorage, 3, "AXIAL")]),
    (3, "p1-prior-mr-200d", "P1", "ACC1003", 200, "MR BRAIN", RLE,
     [("MR", MRImageStorage, 2, "T1 AX"), ("MR", MRImageStorage, 2, "T2 AX")]),
    (4, "p1-prior-cr-400d", "P1", "ACC1004", 400, "CR CHEST 2 VIEWS", DEFLATED,
     [("CR", ComputedRadiographyImageStorage, 2, "PA LAT")]),
    (5, "p1-prior-ct-800d", "P1", "ACC1005", 800, "CT ABDOMEN", EXPLICIT,
     [("CT", CTImageStorage, 2, "AXIAL"), ("OT", SecondaryCaptureImageStorage, 1, "DOSE REPORT")]),
    (6, "p1-prior-ct-3000d", "P1", "ACC1006", 3000, "CT HEAD", IMPLICIT,
     [("CT", CTImageStorage, 2, "AXIAL")]),
    (7, "p2-dx-10d", "P2", "ACC2001", 10, "DX KNEE", RLE,
     [("DX", DigitalXRayImageStorageForPresentation, 1, "KNEE AP")]),
    (8, "p2-sc-100d", "P2", "ACC2002", 100, "OUTSIDE IMAGES", DEFLATED,
     [("OT", SecondaryCaptureImageStorage, 2, "SCANNED")]),
    (9, "p3-ct-60d", "P3", "ACC3001", 60, "CT SINUS", EXPLICIT,
     [("CT", CTImageStorage, 2, "AXIAL")]),
]

BIG_NUMBER = 99
MANY_NUMBER = 98
SMALL_SIZE = 64
BIG_SIZE = 512


def uid(*parts):
    value = UID_ROOT + ".".join(str(p) for p in parts)
    assert len(value) <= 64, value
    return value


def pixels(size, seed):
    """A deterministic 16-bit image with 12 significant bits: a gradient, a disc and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    image = (x * 2048 // size + y * 1024 // size).astype(np.uint16)
    disc = (x - size // 2) ** 2 + (y - size // 2) ** 2 < (size // 3) ** 2
    image[disc] += 600
    image += rng.integers(0, 64, size=(size, size), dtype=np.uint16)
    return np.minimum(image, 4095).astype(np.uint16)


def make_instance(study, patient, series, instance_number, sop_uid, arr, transfer_syntax):
    ds = pydicom.dataset.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = series["sop_class"]
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study["study_date"]
    ds.SeriesDate = study["study_date"]
    ds.ContentDate = study["study_date"]
    ds.StudyTime = "093000"
    ds.SeriesTime = "093000"
    ds.ContentTime = "0930%02d" % (instance_number % 60)
    ds.AccessionNumber = study["accession"]
    ds.Modality = series["modality"]
    ds.Manufacturer = "RETRIEVER TESTDATA"
    ds.InstitutionName = "TEST HOSPITAL"
    ds.ReferringPhysicianName = "REFERRER^ROBIN"
    ds.StudyDescription = study["description"]
    ds.SeriesDescription = series["description"]
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.IssuerOfPatientID = patient["issuer"]
    ds.PatientBirthDate = patient["birth"]
    ds.PatientSex = patient["sex"]
    ds.StudyInstanceUID = study["study_uid"]
    ds.SeriesInstanceUID = series["series_uid"]
    ds.StudyID = str(study["number"])
    ds.SeriesNumber = series["number"]
    ds.InstanceNumber = instance_number
    if series["sop_class"] in (CTImageStorage, MRImageStorage):
        ds.FrameOfReferenceUID = uid(4, study["number"], series["number"])
        ds.ImagePositionPatient = [0, 0, instance_number * 5]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = 5
        ds.PixelSpacing = [0.7, 0.7]
    if series["sop_class"] == CTImageStorage:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = 120
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
    elif series["sop_class"] == MRImageStorage:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTime = 10
        ds.RepetitionTime = 500
    elif series["sop_class"] == DigitalXRayImageStorageForPresentation:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
    elif series["sop_class"] == SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0

    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = uid(0, 1)
    meta.ImplementationVersionName = "RETRIEVER_TD_1"
    ds.file_meta = meta
    if transfer_syntax == RLELossless:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, arr, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        meta.TransferSyntaxUID = transfer_syntax
        ds.PixelData = arr.tobytes()
    ds.preamble = b"\0" * 128
    return ds


def write_instance(outdir, relpath, ds):
    path = os.path.join(outdir, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    with open(path, "rb") as f:
        data = f.read()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def study_record(number, label, patient_key, accession, days_ago, description, transfer_syntax,
                 today):
    patient = PATIENTS[patient_key]
    date = (today - datetime.timedelta(days=days_ago)).strftime("%Y%m%d")
    return {
        "label": label,
        "number": number,
        "patient_id": patient["id"],
        "issuer": patient["issuer"],
        "patient_name": patient["name"],
        "accession": accession,
        "study_uid": uid(1, number),
        "study_date": date,
        "days_ago": days_ago,
        "description": description,
        "transfer_syntax": str(transfer_syntax),
        "series": [],
    }


def generate_study(outdir, study, series_specs, transfer_syntax, size, seed_base):
    patient = next(p for p in PATIENTS.values()
                   if p["id"] == study["patient_id"] and p["issuer"] == study["issuer"])
    modalities = []
    base = None
    for s_index, (modality, sop_class, count, description) in enumerate(series_specs, start=1):
        series = {
            "series_uid": uid(2, study["number"], s_index),
            "number": s_index,
            "modality": modality,
            "sop_class": str(sop_class),
            "description": description,
            "instances": [],
        }
        if modality not in modalities:
            modalities.append(modality)
        for i in range(1, count + 1):
            sop_uid = uid(3, study["number"], s_index, i)
            if size == BIG_SIZE:
                # Big images: one base image, a per-instance offset keeps every file distinct
                # while generation stays fast.
                if base is None:
                    base = pixels(size, seed_base)
                arr = base.copy()
                arr[0, :8] = np.array([s_index, i >> 8, i & 0xFF, 0, 0, 0, 0, 0], dtype=np.uint16)
                arr[1:, :] = np.minimum(arr[1:, :] + ((s_index * 7 + i) % 32), 4095)
            else:
                arr = pixels(size, seed_base * 10000 + s_index * 100 + i)
            ds = make_instance(study, patient, series, i, sop_uid, arr, transfer_syntax)
            relpath = os.path.join(study["label"], str(s_index), sop_uid + ".dcm")
            info = write_instance(outdir, relpath, ds)
            series["instances"].append({
                "sop_uid": sop_uid,
                "sop_class": str(sop_class),
                "instance_number": i,
                "path": relpath,
                **info,
            })
        study["series"].append(series)
    study["modality"] = modalities[0]
    study["modalities"] = modalities
    study["num_instances"] = sum(len(s["instances"]) for s in study["series"])
    return study


def generate(outdir, large, today, many=0, large_priors=False):
    studies = []
    for number, label, pkey, acc, days, desc, ts, series in STUDIES:
        study = study_record(number, label, pkey, acc, days, desc, ts, today)
        studies.append(generate_study(outdir, study, series, ts, SMALL_SIZE, number))
    if large > 0:
        study = study_record(BIG_NUMBER, "big-ct", "P9", "ACCBIG", 1, "CT BIG", EXPLICIT, today)
        # Split N instances over 3 series as evenly as possible.
        counts = [large // 3 + (1 if k < large % 3 else 0) for k in range(3)]
        series = [("CT", CTImageStorage, c, "BIG SERIES %d" % (k + 1))
                  for k, c in enumerate(counts) if c > 0]
        studies.append(generate_study(outdir, study, series, EXPLICIT, BIG_SIZE, BIG_NUMBER))
    if large > 0 and large_priors:
        for k, days in enumerate((90, 400, 900), start=1):
            number = BIG_NUMBER - 3 - k
            study = study_record(number, "big-ct-prior-%d" % k, "P9", "ACCBIGP%d" % k, days, "CT BIG PRIOR",
                                 EXPLICIT, today)
            series = [("CT", CTImageStorage, max(1, large // 5), "PRIOR SERIES")]
            studies.append(generate_study(outdir, study, series, EXPLICIT, BIG_SIZE, number))
    if many > 0:
        study = study_record(MANY_NUMBER, "many-ct", "P10", "ACCMANY", 1, "CT MANY", EXPLICIT, today)
        counts = [many // 4 + (1 if k < many % 4 else 0) for k in range(4)]
        series = [("CT", CTImageStorage, c, "MANY SERIES %d" % (k + 1))
                  for k, c in enumerate(counts) if c > 0]
        studies.append(generate_study(outdir, study, series, EXPLICIT, SMALL_SIZE, MANY_NUMBER))
    return studies


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--large", type=int, default=0, metavar="N",
                        help="also write a big CT study (ACCBIG) of N 512x512 instances")
    parser.add_argument("--many", type=int, default=0, metavar="N",
                        help="also write a CT study (ACCMANY) of N small 64x64 instances")
    parser.add_argument("--large-priors", action="store_true",
                        help="with --large: also write 3 prior studies of the big study's patient")
    parser.add_argument("--today", help="YYYYMMDD to use as today (default: the local date)")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args()
    if args.large < 0 or args.many < 0:
        parser.error("--large and --many must be >= 0")
    today = (datetime.datetime.strptime(args.today, "%Y%m%d").date() if args.today
             else datetime.date.today())
    params = {"version": GENERATOR_VERSION, "today": today.strftime("%Y%m%d"),
              "large": args.large, "pydicom": importlib.metadata.version("pydicom")}
    # Only when asked, so that the parameters of existing data sets stay as they were.
    if args.many:
        params["many"] = args.many
    if args.large_priors:
        params["large_priors"] = True

    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)
    index_path = os.path.join(outdir, "index.json")
    with open(os.path.join(outdir, ".lock"), "w") as lock:
        # Several test binaries may ask for the same data at once: one generates, the others wait.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not args.force and os.path.exists(index_path):
            try:
                with open(index_path) as f:
                    if json.load(f).get("params") == params:
                        return 0
            except (OSError, ValueError):
                pass
        started = time.monotonic()
        load_libraries()
        if os.path.exists(index_path):
            os.remove(index_path)
        for entry in os.listdir(outdir):
            path = os.path.join(outdir, entry)
            if os.path.isdir(path) and not entry.startswith("."):
                shutil.rmtree(path)
        studies = generate(outdir, args.large, today, args.many, args.large_priors)
        index = {"params": params, "uid_root": UID_ROOT, "studies": studies}
        tmp = index_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(index, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, index_path)
        count = sum(s["num_instances"] for s in studies)
        print("gen_testdata: %d studies, %d instances in %s (%.1f s)"
              % (len(studies), count, outdir, time.monotonic() - started), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
