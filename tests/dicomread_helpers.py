"""Peers for the DICOM reader tests: SimpleITK, highdicom and nibabel volumes put on medannot's voxel grid."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def nibabel_test_file(name: str) -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / name


def pydicom_data_file(name: str) -> Path:
    """A file of the pydicom-data package (real DICOM test images)."""
    import data_store

    return Path(data_store.__file__).parent / "data" / name


def philips_enhanced_mr(folder: Path) -> Path:
    """nibabel's real Philips Enhanced MR (3D T1 MPRAGE, 176 frames 256x256, oblique sagittal), un-gzipped into ``folder``."""
    target = folder / "philips_mprage.dcm"
    if not target.exists():
        target.write_bytes(gzip.decompress(nibabel_test_file("philips_mprage.dcm.gz").read_bytes()))
    return target


def sitk_affine(img) -> np.ndarray:
    """RAS affine of a SimpleITK image (index (x, y, z) -> RAS mm)."""
    aff = np.eye(4)
    aff[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
    aff[:3, 3] = img.GetOrigin()
    return LPS_TO_RAS @ aff


def sitk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK ImageSeriesReader: array indexed (x, y, z) = (column, row, slice) and RAS affine."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), sitk_affine(img)


def sitk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK ReadImage of one file: array indexed (x, y, z) and RAS affine."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), sitk_affine(img)


def highdicom_volume(volume) -> tuple[np.ndarray, np.ndarray]:
    """A highdicom Volume's array and RAS affine (highdicom's affine maps its array index to LPS)."""
    return np.asarray(volume.array), LPS_TO_RAS @ np.asarray(volume.affine)


def on_our_grid(
    peer: np.ndarray, peer_affine: np.ndarray, our_affine: np.ndarray, our_shape: tuple[int, ...], atol_voxels: float = 1e-3
) -> np.ndarray:
    """``peer`` permuted and flipped onto our index grid; fails unless both grids hold the same voxel centres.

    The grids must differ only by axis order and direction (within ``atol_voxels``): every voxel of ours then has
    exactly one voxel of the peer at the same place in the patient.
    """
    t = np.linalg.inv(peer_affine) @ our_affine  # our index -> peer index
    rot = np.round(t[:3, :3])
    assert np.allclose(t[:3, :3], rot, atol=atol_voxels), f"grids differ by more than axis order and flips:\n{t.round(4)}"
    perm = [int(np.flatnonzero(rot[:, a])[0]) for a in range(3)]
    out = np.transpose(peer, perm)
    assert out.shape == tuple(our_shape), (out.shape, our_shape)
    for a in range(3):
        sign = rot[perm[a], a]
        start = 0.0 if sign > 0 else our_shape[a] - 1.0
        assert abs(t[perm[a], 3] - start) < atol_voxels, f"axis {a}: our voxel 0 is the peer's {t[perm[a], 3]:.4f}, expected {start}"
        if sign < 0:
            out = np.flip(out, axis=a)
    return out


def real_slice_series(folder: Path, name: str, steps_mm, reverse_names: bool = False, **tags) -> list[Path]:
    """Copies of one real slice (pydicom or pydicom-data file ``name``) moved along its normal by ``steps_mm``.

    Files are ``IM000.dcm``, ``IM001.dcm``... (numbered backwards with ``reverse_names``); ``tags`` are set on every copy.
    """
    import pydicom

    from iohelpers import pydicom_test_file

    folder.mkdir(parents=True, exist_ok=True)
    src = pydicom_test_file(name) if pydicom_test_file(name).exists() else pydicom_data_file(name)
    ds = pydicom.dcmread(src)
    origin = np.array([float(v) for v in ds.ImagePositionPatient])
    normal = np.cross(*np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3))
    paths = []
    for k, step in enumerate(steps_mm):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.5f}" for v in origin + step * normal]
        for key, value in tags.items():
            setattr(ds, key, value)
        paths.append(folder / f"IM{(len(steps_mm) - 1 - k) if reverse_names else k:03d}.dcm")
        ds.save_as(paths[-1])
    return paths


def nested_sequence(depth: int, undefined_length: bool = True) -> bytes:
    """A Referenced Series Sequence element (explicit VR little endian) nested ``depth`` items deep."""
    import struct

    tag = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00"
    if undefined_length:
        opening = tag + struct.pack("<I", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return opening * depth + closing * depth
    inner = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        inner = tag + struct.pack("<I", len(item)) + item
    return inner


def with_nested_sequence(src: Path, target: Path, depth: int, undefined_length: bool = True) -> Path:
    """``src`` (explicit VR little endian) with a deeply nested sequence inserted before PatientName (0010,0010)."""
    import struct

    raw = src.read_bytes()
    at = raw.find(struct.pack("<HH", 0x0010, 0x0010) + b"PN")
    target.write_bytes(raw[:at] + nested_sequence(depth, undefined_length) + raw[at:])
    return target
