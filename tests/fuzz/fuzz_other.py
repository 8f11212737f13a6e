"""Zip archives, special files and folders, masks for ``evaluate``, DICOM SEG and RTSTRUCT for ``convert``."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from fuzz_dicom import ct_slice, lenient, raw_replace, to_bytes
from fuzz_nifti import base_volume, gz, nifti_bytes, patch
from fuzz_raster import picture, pil_bytes

IMAGE = ("otsu", "nuclei")


def zip_bytes(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def zip_prefixed_zeros(name: str, prefix: bytes, zeros: int) -> bytes:
    """A one-member deflated zip of ``prefix`` followed by ``zeros`` zero bytes, made without compressing them all:
    a full-flushed deflate block of 64 MiB of zeros is independent of what precedes it, so it is repeated."""
    chunk = 64 << 20
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = [head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)]
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = block.compress(bytes(chunk)) + block.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(zeros, chunk)
    body += [one] * n
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    body.append(tail.compress(bytes(rest)) + tail.flush(zlib.Z_FINISH))
    data = b"".join(body)
    crc = zlib.crc32(prefix)
    zero_chunk = bytes(chunk)
    for _ in range(n):
        crc = zlib.crc32(zero_chunk, crc)
    crc = zlib.crc32(bytes(rest), crc)
    size = len(prefix) + zeros
    raw = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0) + raw
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def _local_header_patch(blob: bytes, offset_in_header: int, fmt: str, value: int) -> bytes:
    """Patch the first local file header and its central directory entry (same field)."""
    out = bytearray(blob)
    struct.pack_into("<" + fmt, out, offset_in_header, value)
    central = blob.find(b"PK\x01\x02")
    central_offsets = {6: 8, 8: 10, 14: 16, 18: 20, 22: 24}  # local field offset -> central field offset
    if central >= 0 and offset_in_header in central_offsets:
        struct.pack_into("<" + fmt, out, central + central_offsets[offset_in_header], value)
    return bytes(out)


def _zips(w) -> None:
    png = pil_bytes(picture(), "PNG")
    nii = nifti_bytes(base_volume())
    series = [(f"series/IM{k:04d}.dcm", to_bytes(ct_slice(k, "1.2.826.0.1.3680043.8.498.77.5"))) for k in range(5)]
    w.file("zip/one-png", "zip/one_png.zip", zip_bytes([("pic.png", png)]), "zip", IMAGE, "accept", "a zip holding one PNG")
    w.file("zip/one-nifti", "zip/one_nifti.zip", zip_bytes([("vol.nii", nii)]), "zip", IMAGE, "accept", "a zip holding one NIfTI")
    w.file("zip/dicom-series", "zip/series.zip", zip_bytes(series), "zip", IMAGE, "accept", "a zip of one DICOM series")
    w.file("zip/empty", "zip/empty.zip", zip_bytes([]), "zip", IMAGE, "refuse", "an empty archive")
    w.file("zip/two-pictures", "zip/two.zip", zip_bytes([("a.png", png), ("b.png", png)]), "zip", IMAGE, "any", "two pictures")
    w.file("zip/nested", "zip/nested.zip", zip_bytes([("inner.zip", zip_bytes([("pic.png", png)]))]), "zip", IMAGE, "any", "a zip in a zip")
    w.file("zip/traversal", "zip/traversal.zip", zip_bytes([("../../../../tmp/evil.png", png)]), "zip", IMAGE, "any", "a ../ member name")
    w.file("zip/bomb-1.5GiB", "zip/bomb.zip", zip_prefixed_zeros("zeros.nii", b"", 1536 << 20), "zip", IMAGE, "refuse",
           "a member inflating to 1.5 GiB of zeros")
    hdr = bytearray(nii[:352])
    struct.pack_into("<hhh", hdr, 42, 512, 512, 300)
    w.file("zip/nifti-bomb-150MB", "zip/nifti_bomb.zip", zip_prefixed_zeros("vol.nii", bytes(hdr), 512 * 512 * 300 * 2), "zip", IMAGE,
           "refuse", "a NIfTI of 150 MB of zeros in 150 KB")
    one = zip_bytes([("pic.png", png)])
    w.file("zip/size-lies-small", "zip/size_small.zip", _local_header_patch(one, 22, "I", 100), "zip", IMAGE, "refuse",
           "declares 100 bytes, inflates to more")
    w.file("zip/size-lies-large", "zip/size_large.zip", _local_header_patch(one, 22, "I", len(png) + 5000), "zip", IMAGE, "refuse",
           "declares more bytes than it inflates to")
    w.file("zip/encrypted-flag", "zip/encrypted.zip", _local_header_patch(one, 6, "H", 1), "zip", IMAGE, "refuse", "encrypted flag")
    w.file("zip/method-99", "zip/method99.zip", _local_header_patch(one, 8, "H", 99), "zip", IMAGE, "refuse", "compression method 99")
    w.file("zip/crc-wrong", "zip/crc.zip", _local_header_patch(one, 14, "I", 0xDEADBEEF), "zip", IMAGE, "refuse", "wrong CRC")
    w.file("zip/truncated", "zip/truncated.zip", one[: len(one) // 2], "zip", IMAGE, "refuse", "truncated archive")
    w.file("zip/central-only", "zip/central.zip", one[one.find(b"PK\x01\x02"):], "zip", IMAGE, "refuse", "a central directory only")
    w.file("zip/many-members", "zip/many.zip", zip_bytes([(f"f{i}.txt", b"") for i in range(20000)], zipfile.ZIP_STORED), "zip", IMAGE, "refuse",
           "20,000 empty members")
    w.file("zip/stored-png", "zip/stored.zip", zip_bytes([("pic.png", png)], zipfile.ZIP_STORED), "zip", IMAGE, "accept", "stored")
    w.file("zip/bad-member", "zip/bad_member.zip", zip_bytes([("pic.png", png[: len(png) // 2])]), "zip", IMAGE, "refuse",
           "a truncated picture inside")
    rng = w.rng
    for i in range(30):
        blob = bytearray(one)
        for _ in range(rng.randint(1, 3)):
            blob[rng.randrange(0, len(blob))] = rng.randrange(256)
        w.file(f"zip/random-{i}", f"zip/rnd_{i:03d}.zip", bytes(blob), "zip", ("otsu",), "any", "random archive bytes")


def _special(w) -> None:
    png = pil_bytes(picture(), "PNG")
    dcm = to_bytes(ct_slice())
    both = ("otsu", "deid")
    os.mkfifo(w.path("special/fifo.nii"))
    w.add("special/fifo-nii", "special/fifo.nii", "special", both, "refuse", "a FIFO named .nii")
    os.mkfifo(w.path("special/fifo"))
    w.add("special/fifo", "special/fifo", "special", both, "refuse", "a FIFO without suffix")
    for name in ("zero.nii.gz", "zero.dcm", "zero.png", "zero"):
        os.symlink("/dev/zero", w.path(f"special/{name}"))
        w.add(f"special/devzero-{name}", f"special/{name}", "special", both, "refuse", "a link to /dev/zero")
    os.symlink("/dev/null", w.path("special/null.nii"))
    w.add("special/devnull", "special/null.nii", "special", both, "refuse", "a link to /dev/null")
    sock_path = w.path("special/sock.png")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()
    w.add("special/socket", "special/sock.png", "special", both, "refuse", "a socket")
    os.symlink(w.path("special/loop_b.nii"), w.path("special/loop_a.nii"))
    os.symlink(w.path("special/loop_a.nii"), w.path("special/loop_b.nii"))
    w.add("special/link-loop", "special/loop_a.nii", "special", both, "refuse", "a symbolic link loop")
    os.symlink(w.path("special/nowhere.nii"), w.path("special/dangling.nii"))
    w.add("special/dangling", "special/dangling.nii", "special", both, "refuse", "a dangling link")

    deep = w.path("special/deep/x").parent
    for tag, payload, name in (("png", png, "pic.png"), ("dcm", dcm, "IM0001.dcm")):
        cur = str(deep / tag)
        os.makedirs(cur)
        for _ in range(1000):
            cur = os.path.join(cur, "d")
            os.mkdir(cur)
        with open(os.path.join(cur, name), "wb") as fh:
            fh.write(payload)
        w.add(f"special/deep-1000-{tag}", f"special/deep/{tag}", "special", both, "any", "a picture 1,000 folders deep")
    loop = w.path("special/dirloop/x").parent
    loop.mkdir(parents=True, exist_ok=True)
    (loop / "IM0001.dcm").write_bytes(dcm)
    os.symlink(loop, loop / "self")
    w.add("special/dir-self-link", "special/dirloop", "special", both, "any", "a folder linking to itself")
    wide = w.path("special/wide/x").parent
    wide.mkdir(parents=True, exist_ok=True)
    for i in range(1500):
        (wide / f"junk{i:05d}").write_bytes(b"x" * (i % 7))
    w.add("special/wide-junk", "special/wide", "special", both, "refuse", "1,500 files, none an image")
    empty = w.path("special/empty/x").parent
    empty.mkdir(parents=True, exist_ok=True)
    w.add("special/empty-folder", "special/empty", "special", both, "refuse", "an empty folder")
    hidden = w.path("special/hidden/.x").parent
    (hidden / ".secret.png").write_bytes(png)
    w.add("special/hidden-only", "special/hidden", "special", ("otsu",), "refuse", "only hidden files")
    odd = w.path("special/odd/x").parent
    odd.mkdir(parents=True, exist_ok=True)
    (odd / "new\nline.png").write_bytes(png)
    os.makedirs(os.fsencode(odd / "latin"), exist_ok=True)
    with open(os.path.join(os.fsencode(odd / "latin"), b"caf\xe9.png"), "wb") as fh:
        fh.write(png)
    w.add("special/newline-name", "special/odd/new\nline.png", "special", ("otsu",), "any", "a newline in the name")
    w.add("special/latin1-name", "special/odd/latin", "special", ("otsu",), "any", "a file name that is not UTF-8")
    for tag, text in (("not-json", "{oops"), ("list", "[1, 2]"), ("escape", json.dumps({"training": [{"image": "../../etc/passwd"}]})),
                      ("labels-bad", json.dumps({"labels": {"x": [1, {"a": 2}]}, "training": []})),
                      ("huge-number", '{"labels": {"1": "a"}, "file_ending": ".nii.gz", "numTraining": 1e999}'),
                      ("deep", "[" * 100000 + "]" * 100000)):
        d = w.path(f"special/dataset_{tag}/dataset.json")
        d.write_text(text)
        w.add(f"special/dataset-{tag}", f"special/dataset_{tag}", "special", ("otsu",), "any", f"dataset.json: {tag}")


def _mask(shape=(20, 16, 10), seed: int = 0) -> np.ndarray:
    vol = base_volume()
    lab = (vol > 500).astype(np.uint8)
    lab[:6] *= 2
    return lab


def _masks(w) -> None:
    def pair(tag: str, pred: bytes, truth: bytes, expect: str, note: str, suffix: str = ".nii.gz") -> None:
        w.path(f"masks/{tag}_truth{suffix}").write_bytes(truth)
        w.file(f"mask/{tag}", f"masks/{tag}_pred{suffix}", pred, "mask", ("evaluate",), expect, note, extra=f"masks/{tag}_truth{suffix}")

    lab = _mask()
    good = gz(nifti_bytes(lab))
    pair("valid", good, good, "accept", "a valid pair")
    pair("empty", gz(nifti_bytes(np.zeros_like(lab))), gz(nifti_bytes(np.zeros_like(lab))), "accept", "both empty")
    rng = np.random.default_rng(3)
    cells = np.zeros((60, 60, 20), np.uint16)
    for i in range(2000):
        x, y, z = rng.integers(0, 58), rng.integers(0, 58), rng.integers(0, 19)
        cells[x:x + 2, y:y + 2, z:z + 1] = i + 1
    pair("labels-2000", gz(nifti_bytes(cells)), gz(nifti_bytes(cells)), "any", "2,000 labels")
    vol = base_volume()
    pair("intensity-int16", gz(nifti_bytes(vol)), good, "refuse", "an intensity image (int16, noisy) as the prediction")
    pair("intensity-truth", good, gz(nifti_bytes(vol)), "refuse", "an intensity image as the truth")
    pair("intensity-uint8", gz(nifti_bytes((vol // 4).astype(np.uint8))), good, "refuse", "a uint8 intensity image as a mask")
    pair("intensity-float", gz(nifti_bytes(vol.astype(np.float32) / 7)), good, "refuse", "a float intensity image as a mask")
    pair("ct-negative", gz(nifti_bytes((vol - 1024).astype(np.int16))), good, "refuse", "CT values (negative) as a mask")
    pair("nan", gz(nifti_bytes(np.where(lab > 0, np.nan, 0).astype(np.float32))), good, "refuse", "NaN in a float mask")
    pair("half", gz(nifti_bytes(lab.astype(np.float32) / 2)), good, "refuse", "0.5 values")
    pair("shape-differs", gz(nifti_bytes(lab[:, :, :8])), good, "refuse", "another shape")
    pair("spacing-differs", gz(nifti_bytes(lab, spacing=(1.0, 1.0, 1.0))), good, "refuse", "another spacing")
    pair("4d", gz(nifti_bytes(np.stack([lab, lab], -1))), good, "refuse", "two channels")
    pair("huge-value", gz(nifti_bytes(lab.astype(np.uint32) * 2_000_000_000)), good, "any", "label values of 2e9")
    pair("u64", gz(nifti_bytes(lab.astype(np.uint64) << np.uint64(60))), good, "any", "uint64 labels 2^60")
    pair("thin", gz(nifti_bytes((np.arange(32767) % 3).astype(np.uint8).reshape(1, 1, 32767))),
         gz(nifti_bytes((np.arange(32767) % 2).astype(np.uint8).reshape(1, 1, 32767))), "any", "1x1x32767 masks")
    pair("truncated", good[: len(good) // 2], good, "refuse", "a truncated prediction")
    hdr = bytearray(nifti_bytes(lab)[:352])
    struct.pack_into("<hhh", hdr, 42, 1024, 1024, 600)
    from fuzz_nifti import zero_members

    pair("bomb", gz(bytes(hdr)) + zero_members(1024 * 1024 * 600), good, "refuse", "a gzip bomb as the prediction")
    pair("spacing-nan", gz(patch(patch(nifti_bytes(lab), "pixdim1", float("nan")), "srow_x0", float("nan"))), good, "refuse", "NaN spacing")
    g = (picture() > 120).astype(np.uint8)
    pair("png", pil_bytes(g, "PNG"), pil_bytes(g, "PNG"), "accept", "PNG masks", ".png")
    pair("png-rgb", pil_bytes(np.dstack([g * 255, g * 128, 255 - g * 255]), "PNG"), pil_bytes(g, "PNG"), "refuse",
         "a colour picture as a mask", ".png")
    pair("png-rgb-grey", pil_bytes(np.dstack([g * 255] * 3), "PNG"), pil_bytes(g, "PNG"), "any",
         "a 0/255 mask stored as RGB with equal channels (read as grey: label 255)", ".png")
    pair("png-photo", pil_bytes(picture(), "PNG"), pil_bytes(g, "PNG"), "refuse", "a grey photograph as a mask", ".png")
    for i in range(10):
        blob = bytearray(good)
        blob[w.rng.randrange(10, len(blob))] ^= 0x40
        pair(f"random-{i}", bytes(blob), good, "refuse", "one changed byte in the gzip stream")


def _reference_series(w) -> tuple[Path, list]:
    folder = w.path("segref/series/x").parent
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(6):
        (folder / f"IM{k:04d}.dcm").write_bytes(to_bytes(_complete(ct_slice(k, "1.2.826.0.1.3680043.8.498.77.7"))))
    from medannot.annotations.dicom_grid import load_source_datasets

    return folder, load_source_datasets(folder)


def _complete(ds):
    ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.PatientSex, ds.ReferringPhysicianName = "120000", "1", "ACC1", "O", ""
    ds.Manufacturer = "fuzz"
    return ds


def _seg_rt(w) -> None:
    from medannot.annotations.dicom_seg import write_dicom_seg
    from medannot.annotations.rtstruct import write_rtstruct
    from medannot.io import read_image

    folder, sources = _reference_series(w)
    image = read_image(folder)
    from medannot.data.image import Image, ImageKind

    lab = (image.array > -500).astype(np.uint8)
    lab[:, :14] *= 2
    labels = Image(lab, image.geometry, ImageKind.LABEL, {})
    seg_path = w.path("seg/valid.dcm")
    write_dicom_seg(labels, sources, {1: "tissue", 2: "left"}, "fuzz", "1", seg_path)
    rt_path = w.path("rtstruct/valid.dcm")
    write_rtstruct(labels, sources, {1: "tissue", 2: "left"}, "fuzz", "1", rt_path)
    ref = "segref/series"
    w.add("seg/valid", "seg/valid.dcm", "seg", ("convert",), "accept", "a valid SEG", extra=ref)
    w.add("rtstruct/valid", "rtstruct/valid.dcm", "rtstruct", ("convert",), "accept", "a valid RTSTRUCT", extra=ref)
    w.add("seg/valid-no-reference", "seg/valid.dcm", "seg", ("convert",), "accept", "a valid SEG without --reference")

    import pydicom

    def seg_variant(tag: str, change, expect: str, note: str, reference: str | None = ref) -> None:
        with lenient():
            ds = pydicom.dcmread(seg_path)
            change(ds)
            w.file(f"seg/{tag}", f"seg/{tag}.dcm", to_bytes(ds), "seg", ("convert",), expect, note, extra=reference)

    def pos(i: int, value):
        def change(ds):
            ds.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient = value
        return change

    seg_variant("ipp-nan", pos(0, ["nan", "nan", "nan"]), "refuse", "NaN frame position")
    seg_variant("ipp-nan-noref", pos(0, ["nan", "nan", "nan"]), "refuse", "NaN frame position, no reference", None)
    seg_variant("ipp-inf", pos(0, ["inf", 0, 0]), "refuse", "infinite frame position")
    seg_variant("ipp-2-values", pos(0, [0, 0]), "refuse", "a position of 2 values")
    seg_variant("ipp-off-grid", pos(0, [-20.0, -22.0, 3.3]), "refuse", "a frame between slices")
    seg_variant("no-plane-position", lambda ds: delattr(ds.PerFrameFunctionalGroupsSequence[0], "PlanePositionSequence"), "refuse",
                "a frame without a position")
    seg_variant("no-segments", lambda ds: delattr(ds, "SegmentSequence"), "refuse", "no SegmentSequence")
    seg_variant("segment-99", lambda ds: setattr(ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0],
                                                  "ReferencedSegmentNumber", 99), "refuse", "a frame of segment 99")
    seg_variant("frames-more", lambda ds: setattr(ds, "NumberOfFrames", int(ds.NumberOfFrames) + 50), "refuse", "more frames declared")
    seg_variant("pixels-short", lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 2]), "refuse", "pixels cut")
    seg_variant("rows-differ", lambda ds: setattr(ds, "Rows", 31), "refuse", "Rows 31")
    seg_variant("spacing-nan", lambda ds: setattr(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0], "PixelSpacing",
                                                   ["nan", "nan"]), "refuse", "NaN PixelSpacing")
    seg_variant("iop-nan", lambda ds: setattr(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0],
                                               "ImageOrientationPatient", ["nan"] * 6), "refuse", "NaN orientation")

    def other_series(ds):
        for item in ds.ReferencedSeriesSequence:
            item.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77.999"
            for inst in item.ReferencedInstanceSequence:
                inst.ReferencedSOPInstanceUID = inst.ReferencedSOPInstanceUID + ".9"
        for frame in ds.PerFrameFunctionalGroupsSequence:
            for d in frame.get("DerivationImageSequence", []):
                for s in d.get("SourceImageSequence", []):
                    s.ReferencedSOPInstanceUID = s.ReferencedSOPInstanceUID + ".9"
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77.998"

    seg_variant("other-series", other_series, "refuse", "a SEG of another series")
    seg_variant("fractional-max0", lambda ds: (setattr(ds, "SegmentationType", "FRACTIONAL"), setattr(ds, "MaximumFractionalValue", 0)),
                "any", "FRACTIONAL with maximum 0")
    data = seg_path.read_bytes()
    w.file("seg/truncated", "seg/truncated.dcm", data[: len(data) - 40], "seg", ("convert",), "refuse", "truncated SEG", extra=ref)

    def rt_variant(tag: str, change, expect: str, note: str, raw: tuple[str, bytes] | None = None) -> None:
        with lenient():
            ds = pydicom.dcmread(rt_path)
            change(ds)
            blob = to_bytes(ds) if raw is None else raw_replace(to_bytes(ds), *raw)
            w.file(f"rtstruct/{tag}", f"rtstruct/{tag}.dcm", blob, "rtstruct", ("convert",), expect, note, extra=ref)

    def contour(values):
        def change(ds):
            ds.ROIContourSequence[0].ContourSequence[0].ContourData = values
        return change

    rt_variant("no-referenced-roi", lambda ds: delattr(ds.ROIContourSequence[0], "ReferencedROINumber"), "refuse",
               "no ReferencedROINumber")
    rt_variant("contour-5-values", contour([0, 0, 2, 1, 1]), "refuse", "a contour of 5 values")
    rt_variant("contour-nan", contour(["nan", 0, 2, 1, 1, 2, 0, 1, 2]), "refuse", "NaN coordinates")
    rt_variant("contour-inf", contour(["inf", 0, 2, 1, 1, 2, 0, 1, 2]), "refuse", "infinite coordinates")
    rt_variant("contour-text", lambda ds: None, "refuse", "coordinates that are not numbers", ("ContourData", b"a\\b\\c"))
    rt_variant("contour-huge", contour(["1e30", 0, 2, 0, "1e30", 2, "-1e30", 0, 2]), "any", "coordinates of 1e30 mm")
    rt_variant("contour-empty", contour([]), "any", "an empty contour")
    rt_variant("contour-off-plane", contour([-10, -10, 3.1, 10, -10, 3.1, 0, 10, 3.1]), "refuse", "a contour between slices")
    big = np.stack([np.cos(np.linspace(0, 6.28, 200000)) * 8 - 9, np.sin(np.linspace(0, 6.28, 200000)) * 8 - 9,
                    np.full(200000, 4.0)], -1).ravel()
    rt_variant("contour-200k", lambda ds: None, "any", "a contour of 200,000 points", ("ContourData", b"\\".join(b"%.3f" % v for v in big)))
    rt_variant("roi-99", lambda ds: setattr(ds.ROIContourSequence[0], "ReferencedROINumber", 99), "refuse", "a contour of ROI 99")
    rt_variant("no-roi-sequence", lambda ds: delattr(ds, "StructureSetROISequence"), "refuse", "no StructureSetROISequence")
    rt_variant("roi-number-text", lambda ds: None, "refuse", "ROINumber 'x'", ("ROINumber", b"x"))
    rt_variant("type-point", lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourGeometricType", "POINT"), "any",
               "POINT contour")
    rt_variant("other-frame", lambda ds: setattr(ds.ReferencedFrameOfReferenceSequence[0], "FrameOfReferenceUID", "1.2.3.999"), "refuse",
               "contours in another frame of reference")
    data = rt_path.read_bytes()
    w.file("rtstruct/truncated", "rtstruct/truncated.dcm", data[: len(data) // 2], "rtstruct", ("convert",), "refuse", "truncated",
           extra=ref)


def generate(w) -> None:
    _zips(w)
    _special(w)
    _masks(w)
    _seg_rt(w)
