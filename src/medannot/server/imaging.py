"""Images and masks as the server stores them: gzipped NIfTI bytes on the case image's grid.

A case image is stored as NIfTI (2D pictures as a one-slice volume, :meth:`Image.as_volume`); its masks
are uint8 label NIfTI files on exactly that grid, always written by the server (a posted mask is
checked and re-encoded, never stored as sent). Reading a posted mask is bounded by its case's grid: the
header comes first, then exactly the declared voxels (see :mod:`medannot.io.bounded`). Correction
effort compares two masks of a case.
"""

from __future__ import annotations

import io
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from medannot.data import Geometry, Image, ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io.bounded import BoundedGzipReader, InflateLimits, declared_nbytes, is_gzip, read_exactly

AFFINE_ATOL_MM = 1e-3
NIFTI1_HEADER, NIFTI2_HEADER = 348, 540
MAX_NIFTI_EXTENSIONS = 1 << 20
"""Most bytes of NIfTI header extensions accepted between the header and the voxels (1 MiB)."""
MAX_ITEMSIZE = 16
"""Largest NIfTI voxel size (complex128): what a mask on a given grid can declare at most."""


def to_nifti_bytes(image: Image) -> bytes:
    """Gzipped NIfTI bytes of ``image`` (2D images become one-slice volumes), written by medannot's writer."""
    from medannot.io import write_image

    with tempfile.TemporaryDirectory(prefix="medannot-srv-") as tmp:
        path = write_image(image.as_volume(), Path(tmp) / "image.nii.gz")
        return path.read_bytes()


def read_nifti_bytes(data: bytes, kind: ImageKind | str = ImageKind.INTENSITY, what: str = "upload") -> Image:
    """Parse NIfTI bytes (gzipped or not) with medannot's reader (for bytes the server wrote or checked).

    Raises:
        InputError: If the bytes are not a readable NIfTI file (the message names ``what``, never a path).
    """
    from medannot.io.nifti import read_nifti

    suffix = ".nii.gz" if is_gzip(data[:2]) else ".nii"
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
    """A mask that fits its case: the label array (X, Y, Z uint8) and the bytes to store (re-encoded by the server)."""

    array: np.ndarray
    data: bytes


@dataclass
class NiftiHead:
    """A NIfTI header read from the start of a stream, before any voxel is read.

    Attributes:
        raw: The bytes read so far (the header: 348 or 540 bytes).
        header: nibabel's header object.
        shape: Declared data shape (up to 7 dimensions).
        dtype: Declared voxel type.
        offset: Byte offset of the voxels (after the header and its extensions).
        nbytes: ``offset`` + the declared voxel bytes: what a complete single file holds.
    """

    raw: bytes
    header: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    nbytes: int


def nifti_stream(src: IO[bytes], compressed_size: int | None, limits: InflateLimits, what: str) -> IO[bytes]:
    """``src`` itself for plain NIfTI bytes, or a capped inflating stream for gzipped ones (:mod:`medannot.io.bounded`)."""
    start = src.tell()
    magic = src.read(2)
    src.seek(start)
    if is_gzip(magic):
        return BoundedGzipReader(src, limits, compressed_size, what)  # type: ignore[return-value]  # a readable binary stream
    return src


def read_nifti_head(stream: IO[bytes], what: str) -> NiftiHead:
    """Parse the NIfTI-1 or NIfTI-2 header at the start of ``stream`` (reads 348 or 540 bytes, nothing more).

    Raises:
        InputError: Not NIfTI, a damaged header, a negative dimension, or more than
            :data:`MAX_NIFTI_EXTENSIONS` bytes of header extensions.
    """
    import nibabel as nib

    raw = read_exactly(stream, NIFTI1_HEADER, what)
    sizes = {struct.unpack("<i", raw[:4])[0], struct.unpack(">i", raw[:4])[0]}
    kind: type[nib.Nifti1Header]
    if NIFTI2_HEADER in sizes:
        raw += read_exactly(stream, NIFTI2_HEADER - NIFTI1_HEADER, what)
        kind = nib.Nifti2Header
    elif NIFTI1_HEADER in sizes:
        kind = nib.Nifti1Header
    else:
        raise InputError(f"{what}: not a NIfTI file (no NIfTI header); send a .nii or .nii.gz file")
    try:
        header = kind.from_fileobj(io.BytesIO(raw), check=True)
        shape = tuple(int(d) for d in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
    except (nib.spatialimages.HeaderDataError, nib.spatialimages.HeaderTypeError, ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{what}: damaged NIfTI header ({str(exc).splitlines()[0][:120]})") from None
    if offset < len(raw) or offset > len(raw) + 4 + MAX_NIFTI_EXTENSIONS:
        raise InputError(f"{what}: voxel offset {offset} is outside {len(raw)}-{len(raw) + 4 + MAX_NIFTI_EXTENSIONS} "
                         "(a damaged header or oversized extensions)")
    nbytes = offset + declared_nbytes(shape, dtype.itemsize, what)
    return NiftiHead(raw, header, shape, dtype, offset, nbytes)


def check_mask(src: bytes | IO[bytes], shape: list[int], affine: list, label_values: set[int],
               compressed_size: int | None = None) -> CheckedMask:
    """Validate a posted label mask against the case grid and label map, reading no more than the grid needs.

    The header is read first (a bounded inflate of the first bytes): a shape other than the case's is
    refused before any voxel is inflated; then exactly the declared voxels are read, from a stream
    capped at what the case grid can need, so a gzip bomb stops there and bytes after the voxels are
    never read. What is stored is always re-encoded by the server (uint8 label NIfTI with the case
    image's affine), never the bytes as sent.

    Args:
        src: NIfTI bytes or a binary file object (gzipped or not).
        shape: The case image's stored spatial shape (3 values).
        affine: The case image's 4x4 affine (RAS mm).
        label_values: Allowed label values (0 is always allowed).
        compressed_size: Size of ``src`` in bytes when known (default: ``len(src)`` for bytes).

    Raises:
        InputError: Unreadable, truncated, multi-channel, a decompression bomb, or values outside the label map.
        GeometryError: Not on the case image's grid (shape or affine differ by more than 1e-3 mm).
    """
    if isinstance(src, (bytes, bytearray)):
        compressed_size = len(src)
        src = io.BytesIO(src)
    voxels = int(np.prod(shape))
    cap = NIFTI2_HEADER + 4 + MAX_NIFTI_EXTENSIONS + voxels * MAX_ITEMSIZE
    stream = nifti_stream(src, compressed_size, InflateLimits(max_bytes=cap), "mask")
    head = read_nifti_head(stream, "mask")
    spatial = list(head.shape[:3]) + [1] * (3 - len(head.shape[:3]))
    channels = int(np.prod(head.shape[3:])) if len(head.shape) > 3 else 1
    if channels != 1:
        raise InputError(f"mask: expected one label channel, got {channels}")
    if spatial != list(shape):
        raise GeometryError(f"mask: shape {spatial} is not the image's {list(shape)}; save the mask on the image grid")
    raw = head.raw + read_exactly(stream, head.nbytes - len(head.raw), "mask")
    array = _fast_uint8_mask(raw, head, shape, affine, label_values) if len(head.shape) == 3 else None
    if array is None:
        image = read_nifti_bytes(raw, ImageKind.LABEL, what="mask")
        if image.channels != 1:
            raise InputError(f"mask: expected one label channel, got {image.channels}")
        _check_grid(list(image.as_volume().spatial_shape), image.as_volume().geometry, shape, affine)
        array = image.as_volume().array[0]
        _check_values(array, label_values)
    mask = Image(np.asarray(array, dtype=np.uint8).reshape(shape)[None], case_geometry(affine), ImageKind.LABEL)
    del raw
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


def _fast_uint8_mask(raw: bytes, head: NiftiHead, shape: list[int], affine: list, label_values: set[int]) -> np.ndarray | None:
    """The common case without copies: an unscaled uint8 mask, viewed in place in ``raw``. None: use the general reader."""
    slope, inter = head.header.get_slope_inter()
    if head.dtype != np.uint8 or slope not in (None, 1.0) or inter not in (None, 0.0):
        return None
    try:
        geometry = Geometry.from_affine(head.header.get_best_affine())
    except (GeometryError, ValueError, np.linalg.LinAlgError):
        return None
    _check_grid(list(shape), geometry, shape, affine)
    array = np.frombuffer(raw, np.uint8, count=int(np.prod(shape)), offset=head.offset).reshape(shape, order="F")
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
