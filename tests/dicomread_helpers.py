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
