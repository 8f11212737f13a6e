"""Checks every volume reader applies once a header is parsed: a declared size within the memory limit and one that
its compressed bytes can hold, a world transform a scanner can produce, and finite intensities (the same bounds as
the NIfTI reader's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medannot.data.image import ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io._common import check_allocation, count_nonfinite, to_label_array
from medannot.io.bounded import check_declared

#: Voxel sizes (mm) and distance of the first voxel from the world origin (mm) a real image can have.
MIN_SPACING_MM, MAX_SPACING_MM, MAX_ORIGIN_MM = 1e-6, 1e5, 1e7
#: deflate (gzip, zlib) cannot compress better than ~1032:1: a header declaring more data per compressed byte is forged.
MAX_DEFLATE_RATIO = 1100


def check_declared_size(path: Path, nbytes: int, what: str, compressed_size: int | None = None) -> None:
    """Refuse before allocating: more than the memory limit in force (:func:`medannot.io._common.check_allocation`),
    or, for deflate-compressed data of ``compressed_size`` bytes, more than deflate can reach.

    Raises:
        InputError: One line naming the file.
    """
    check_allocation(path, nbytes, what)
    if compressed_size is not None:
        try:
            check_declared(nbytes, nbytes, str(path), compressed_size, MAX_DEFLATE_RATIO)
        except InputError as exc:
            text = exc.reason.removeprefix(f"{path}: ")
            raise InputError(f"{what} {text}; the file is truncated or its header is forged", path) from None


def check_world_affine(affine: np.ndarray, where: Path) -> None:
    """Refuse a non-finite affine, voxel sizes outside 1e-6 .. 1e5 mm, or an origin more than 1e7 mm away.

    Raises:
        GeometryError: One line naming the file.
    """
    aff = np.asarray(affine, dtype=np.float64)
    n = aff.shape[0] - 1
    if not np.all(np.isfinite(aff)):
        raise GeometryError("the header's voxel-to-world transform is not finite; the header is damaged", where)
    with np.errstate(over="ignore", invalid="ignore"):
        spacing = np.sqrt(np.sum(aff[:n, :n] ** 2, axis=0))
    if not np.all(np.isfinite(spacing)) or np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise GeometryError(f"the header gives voxel sizes of {', '.join(f'{v:.3g}' for v in spacing)} mm; expected "
                            f"{MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm: the header is damaged", where)
    if np.any(np.abs(aff[:n, n]) > MAX_ORIGIN_MM):
        raise GeometryError(f"the header places the image {np.max(np.abs(aff[:n, n])):.3g} mm from the origin; the header is damaged",
                            where)


def check_finite_values(arr: np.ndarray, where: Path) -> None:
    """Refuse NaN or infinite intensities (counted in chunks, bounded memory); integer arrays pass at once.

    Raises:
        InputError: How many values are not finite and what to do.
    """
    bad = count_nonfinite(arr)
    if bad:
        raise InputError(f"{bad} of {arr.size} voxel values are NaN or infinite; medannot needs finite intensities: replace them "
                         "(e.g. by 0) and save the image again", where)


def native_voxels(arr: np.ndarray, kind: ImageKind, where: Path) -> np.ndarray:
    """Voxels as medannot keeps them: native byte order; labels as unsigned integers (``to_label_array``);
    intensities checked finite (:func:`check_finite_values`) and float64 narrowed to float32.

    Raises:
        InputError: Non-finite intensities, or label values that are not whole non-negative numbers.
    """
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if kind is ImageKind.LABEL:
        return to_label_array(arr, where)
    check_finite_values(arr, where)
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


