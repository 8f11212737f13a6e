"""Images and masks as the server stores them: gzipped NIfTI bytes on the case image's grid.

A case image is stored as NIfTI (2D pictures as a one-slice volume, :meth:`Image.as_volume`); its masks
are uint8 label NIfTI files on exactly that grid. Correction effort compares two masks of a case.
"""

from __future__ import annotations

import gzip
import io
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medannot.data import Geometry, Image, ImageKind
from medannot.errors import GeometryError, InputError

GZIP_MAGIC = b"\x1f\x8b"
AFFINE_ATOL_MM = 1e-3


def to_nifti_bytes(image: Image) -> bytes:
    """Gzipped NIfTI bytes of ``image`` (2D images become one-slice volumes), written by medannot's writer."""
    from medannot.io import write_image

    with tempfile.TemporaryDirectory(prefix="medannot-srv-") as tmp:
        path = write_image(image.as_volume(), Path(tmp) / "image.nii.gz")
        return path.read_bytes()


def read_nifti_bytes(data: bytes, kind: ImageKind | str = ImageKind.INTENSITY, what: str = "upload") -> Image:
    """Parse NIfTI bytes (gzipped or not) with medannot's reader.

    Raises:
        InputError: If the bytes are not a readable NIfTI file (the message names ``what``).
    """
    from medannot.io.nifti import read_nifti

    suffix = ".nii.gz" if data[:2] == GZIP_MAGIC else ".nii"
    with tempfile.TemporaryDirectory(prefix="medannot-srv-") as tmp:
        path = Path(tmp) / f"{what}{suffix}"
        path.write_bytes(data)
        try:
            return read_nifti(path, kind=kind)
        except InputError as exc:
            raise InputError(f"{what}: {exc.reason}") from None


def case_geometry(affine: list) -> Geometry:
    """The 3D geometry of a stored case image from its 4x4 affine."""
    return Geometry.from_affine(np.asarray(affine, dtype=float))


@dataclass
class CheckedMask:
    """A mask that fits its case: the label array (X, Y, Z uint8) and the bytes to store."""

    array: np.ndarray
    data: bytes


def check_mask(data: bytes, shape: list[int], affine: list, label_values: set[int]) -> CheckedMask:
    """Validate an uploaded label mask against the case grid and label map.

    Args:
        data: NIfTI bytes (gzipped or not).
        shape: The case image's stored spatial shape (3 values).
        affine: The case image's 4x4 affine (RAS mm).
        label_values: Allowed label values (0 is always allowed).

    Returns:
        The mask; ``data`` is the original bytes when they already are gzipped uint8, else re-encoded.

    Raises:
        InputError: Unreadable, multi-channel, or holding values outside the label map.
        GeometryError: Not on the case image's grid (shape or affine differ by more than 1e-3 mm).
    """
    fast = _fast_uint8_mask(data, shape, affine, label_values)
    if fast is not None:
        return CheckedMask(fast, data)
    image = read_nifti_bytes(data, ImageKind.LABEL, what="mask")
    if image.channels != 1:
        raise InputError(f"mask: expected one label channel, got {image.channels}")
    _check_grid(list(image.spatial_shape), image.geometry, shape, affine)
    array = image.array[0]
    _check_values(array, label_values)
    mask = Image(array.astype(np.uint8)[None], image.geometry, ImageKind.LABEL, dict(image.meta))
    return CheckedMask(mask.array[0], to_nifti_bytes(mask))


def _check_grid(got_shape: list[int], got: Geometry, shape: list[int], affine: list) -> None:
    if list(got_shape) != list(shape):
        raise GeometryError(f"mask: shape {list(got_shape)} is not the image's {list(shape)}; save the mask on the image grid")
    if not got.isclose(case_geometry(affine), atol=AFFINE_ATOL_MM):
        raise GeometryError(f"mask: affine {got!r} is not the image's {case_geometry(affine)!r}; save the mask on the image grid")


def _check_values(array: np.ndarray, label_values: set[int]) -> None:
    allowed = set(label_values) | {0}
    top = int(array.max(initial=0))
    if top <= 255 and allowed >= set(range(top + 1)):
        return  # every value up to the maximum is allowed: one pass, no temporary array
    values = {int(v) for v in np.unique(array)}
    unknown = sorted(values - allowed)
    if unknown:
        raise InputError(f"mask: label values {unknown[:10]} are not in the project's label map {sorted(label_values)}")


def _fast_uint8_mask(data: bytes, shape: list[int], affine: list, label_values: set[int]) -> np.ndarray | None:
    """The common case without copies: a gzipped, unscaled uint8 3D NIfTI-1. None: use the general reader.

    The header is parsed by nibabel; the voxels are viewed in place in the decompressed bytes.
    """
    import nibabel as nib

    if data[:2] != GZIP_MAGIC:
        return None
    try:
        raw = gzip.decompress(data)
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw[:352]), check=True)
    except (OSError, EOFError, ValueError, zlib.error, nib.spatialimages.HeaderDataError):
        return None
    dims = tuple(int(d) for d in header.get_data_shape())
    slope, inter = header.get_slope_inter()
    if header.get_data_dtype() != np.uint8 or len(dims) != 3 or slope not in (None, 1.0) or inter not in (None, 0.0):
        return None
    offset = int(header.get_data_offset())
    if len(raw) < offset + int(np.prod(dims)):
        return None
    try:
        geometry = Geometry.from_affine(header.get_best_affine())
    except GeometryError:
        return None
    _check_grid(list(dims), geometry, shape, affine)
    array = np.frombuffer(raw, np.uint8, count=int(np.prod(dims)), offset=offset).reshape(dims, order="F")
    _check_values(array, label_values)
    return array


def mask_array(data: bytes) -> tuple[np.ndarray, tuple[float, ...]]:
    """The label array (X, Y, Z) and voxel spacing (mm) of stored mask bytes."""
    image = read_nifti_bytes(data, ImageKind.LABEL, what="stored mask")
    return image.array[0], image.spacing


def correction_effort(proposal: np.ndarray, accepted: np.ndarray, spacing: tuple[float, ...], spatial_dims: int,
                      seconds: float, label_values: list[int]) -> dict:
    """How much a reviewer changed the proposal: Dice, HD95 (mm), voxels changed, time.

    Per label value of the label map present in either mask: Dice and HD95 (MONAI's definition,
    medannot's empty rule: both empty -> Dice 1, HD95 0; one empty -> Dice 0 and HD95 the image diagonal).
    ``dice`` and ``hd95_mm`` are the means over those labels (1.0 and 0.0 when neither mask has any label).
    2D cases are measured on their single slice with the in-plane spacing.

    Args:
        proposal: The model's label array.
        accepted: The accepted label array, same shape.
        spacing: Voxel spacing in mm of the 3D arrays.
        spatial_dims: 2 for a picture stored as one slice, else 3.
        seconds: Time the reviewer spent (s), as reported by the page.
        label_values: Label values of the project (0 excluded).
    """
    from medannot.evaluation.metrics import dice, hd95

    p, a, sp = proposal, accepted, tuple(spacing)
    if spatial_dims == 2 and p.ndim == 3 and p.shape[2] == 1:
        p, a, sp = p[..., 0], a[..., 0], sp[:2]
    per_label: dict[str, dict[str, float]] = {}
    for value in label_values:
        pv, av = p == value, a == value
        if not pv.any() and not av.any():
            continue
        per_label[str(value)] = {"dice": dice(pv, av), "hd95_mm": hd95(pv, av, sp)}
    n = len(per_label)
    return {
        "dice": float(np.mean([m["dice"] for m in per_label.values()])) if n else 1.0,
        "hd95_mm": float(np.mean([m["hd95_mm"] for m in per_label.values()])) if n else 0.0,
        "voxels_changed": int(np.count_nonzero(proposal != accepted)),
        "seconds": float(seconds),
        "per_label": per_label,
    }


def gzip_if_needed(data: bytes) -> bytes:
    """Gzip ``data`` unless it already is."""
    return data if data[:2] == GZIP_MAGIC else gzip.compress(data, compresslevel=6)
