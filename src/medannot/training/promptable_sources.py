"""Objects to segment with prompts: every real mask that can be had offline, split into TRAIN and HELD-OUT.

An :class:`ObjectCase` is one object: an intensity image (2D or 3D), the object's bool mask on its grid,
the source it came from and its split. The split is fixed per source and documented here; the
accuracy claims of the promptable network (and the classical baselines' numbers next to them) use only
HELD-OUT objects, which no training example ever contains (neither their masks nor their images).

TRAIN (real masks):

- ``mni152-tissue-3d`` / ``mni152-tissue-2d``: connected regions of the MNI152 2009a hard tissue labels
  (grey matter, white matter, and the CSF spaces enclosed by the brain, i.e. ventricles), in 3D and in 2D
  slices (9 per axis), on the MNI152 T1 (medannot's ``data_samples/mni152``).
- ``nuclei-left``: the stardist nuclei lying entirely in columns < 256, on the left half of the image only.

HELD-OUT (real masks, never trained on):

- ``colin27-aal``: six deep grey-matter structures of the AAL atlas (Caudate, Putamen, Thalamus, left and
  right; Tzourio-Mazoyer et al. 2002, drawn by hand on this very head) on the Colin27 T1 (``ch2.nii.gz``),
  3D, from Debian's ``mricron-data`` (``aal.nii.gz``).
- ``colin27-aal-2d``: the same six structures on the axial slice through each one's centre.
- ``colin27-brain``: the hand-edited Colin27 brain mask (``ch2better.nii.gz`` > 0, brought onto the 1 mm
  grid of ``ch2.nii.gz``), 3D; a large object (about 140 x 175 x 135 voxels).
- ``nuclei-right``: the stardist nuclei lying entirely in columns >= 256, on the right half of the image.
- ``mr-overlay-lesions``: the hand-drawn lesion outline (filled) stored as an overlay in pydicom-data's
  ``MR-SIEMENS-DICOM-WithOverlays.dcm`` (abdominal MR), 2D (pydicom's ``examples_overlay.dcm`` is a crop of
  the same slice and outline, so it is not a second case).

Nuclei that straddle column 256 belong to neither split. The MNI152 template is symmetric and a
different brain from Colin27; both are T1 brains, so the brain cases are "another head, other
structures", not another modality. The DICOM SEG ``liver.dcm`` has no image (its CT is not shipped), so
its three liver outlines only serve as object *shapes* for synthetic training objects
(:mod:`medannot.training.promptable_synth`).

Sources whose package or file is missing are skipped by :func:`object_cases` unless ``require_all``.
"""

from __future__ import annotations

import enum
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np
from scipy import ndimage as ndi

from medannot.data.geometry import Geometry
from medannot.data.image import Image
from medannot.errors import InputError

__all__ = ["ObjectCase", "OBJECT_SOURCES", "Split", "object_cases", "object_sources"]

NUCLEI_SPLIT_COLUMN = 256
MRICRON = Path("/usr/share/mricron/templates")
AAL_STRUCTURES = {71: "Caudate_L", 72: "Caudate_R", 73: "Putamen_L", 74: "Putamen_R", 77: "Thalamus_L", 78: "Thalamus_R"}


class Split(enum.StrEnum):
    """Whether a source may train the network or is held out for its accuracy claim."""

    TRAIN = "train"
    HELD_OUT = "held-out"


@dataclass(frozen=True, eq=False)
class ObjectCase:
    """One object: ``image`` (single-channel intensity), ``mask`` (bool, the image's spatial shape)."""

    name: str
    source: str
    split: Split
    image: Image
    mask: np.ndarray

    @property
    def ndim(self) -> int:
        """Spatial dimensions (2 or 3)."""
        return self.image.ndim


@dataclass(frozen=True)
class ObjectSource:
    """A named group of objects with a fixed split."""

    name: str
    split: Split
    ndim: int
    loader: Callable[[], Iterator[ObjectCase]]
    needs: str


def _read(path: Path, kind: str = "intensity") -> Image:
    from medannot.io import read_image

    return read_image(path, kind=kind)


def _components(mask: np.ndarray, min_size: int) -> list[np.ndarray]:
    lab = cc3d.connected_components(mask, connectivity=4 if mask.ndim == 2 else 6)
    counts = np.bincount(lab.ravel())
    return [lab == k for k in np.flatnonzero(counts >= min_size) if k != 0]


DATA_SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"
_MNI = "mni152/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def _mni_labels() -> tuple[Image, np.ndarray]:
    """MNI152 T1 and hard labels 1 GM, 2 WM (the larger probability, at least 0.5), 3 CSF enclosed by tissue."""
    t1 = _read(DATA_SAMPLES / _MNI.format("t1"))
    gm = _read(DATA_SAMPLES / _MNI.format("gm")).array[0].astype(np.float32) / 255.0
    wm = _read(DATA_SAMPLES / _MNI.format("wm")).array[0].astype(np.float32) / 255.0
    lab = np.zeros(gm.shape, np.uint8)
    lab[(gm >= wm) & (gm >= 0.5)] = 1
    lab[(wm > gm) & (wm >= 0.5)] = 2
    outside = cc3d.connected_components(lab == 0, connectivity=6)
    border = np.unique(np.concatenate([outside[0].ravel(), outside[-1].ravel(), outside[:, 0].ravel(), outside[:, -1].ravel(),
                                       outside[:, :, 0].ravel(), outside[:, :, -1].ravel()]))
    csf = (lab == 0) & ~np.isin(outside, border)  # label-0 spaces enclosed by tissue: ventricles
    out = lab.copy()
    out[csf] = 3
    return t1, out


_TISSUE = {1: "gm", 2: "wm", 3: "csf"}


def _mni3d() -> Iterator[ObjectCase]:
    t1, lab = _mni_labels()
    for value, tissue in _TISSUE.items():
        for n, comp in enumerate(_components(lab == value, 200)):
            yield ObjectCase(f"mni152/{tissue}/{n}", "mni152-tissue-3d", Split.TRAIN, t1, comp)


def _mni2d() -> Iterator[ObjectCase]:
    t1, lab = _mni_labels()
    vol = t1.array[0]
    for ax in range(3):
        for f in np.linspace(0.3, 0.7, 9):
            k = int(f * (vol.shape[ax] - 1))
            img = Image.from_spatial(np.take(vol, k, axis=ax).astype(np.float32), spacing=(1.0, 1.0))
            sl = np.take(lab, k, axis=ax)
            for value, tissue in _TISSUE.items():
                for n, comp in enumerate(_components(sl == value, 30)):
                    yield ObjectCase(f"mni152/ax{ax}-{k}/{tissue}/{n}", "mni152-tissue-2d", Split.TRAIN, img, comp)


def _nuclei(left: bool) -> Iterator[ObjectCase]:
    img = _read(DATA_SAMPLES / "stardist" / "img2d.tif").array[0].astype(np.float32)
    inst = _read(DATA_SAMPLES / "stardist" / "mask2d.tif", kind="label").array[0]
    c = NUCLEI_SPLIT_COLUMN
    half = (slice(None), slice(0, c)) if left else (slice(None), slice(c, None))
    image = Image.from_spatial(img[half], spacing=(1.0, 1.0))
    sub = inst[half]
    for value in np.unique(inst):
        if value == 0:
            continue
        cols = np.nonzero(inst == value)[1]
        if (left and cols.max() < c) or (not left and cols.min() >= c):
            yield ObjectCase(f"nuclei/{int(value)}", "nuclei-left" if left else "nuclei-right",
                             Split.TRAIN if left else Split.HELD_OUT, image, sub == value)


def _colin_aal(two_d: bool) -> Iterator[ObjectCase]:
    ch2 = _read(MRICRON / "ch2.nii.gz")
    aal = _read(MRICRON / "aal.nii.gz", kind="label")
    ch2.check_same_grid(aal, "Colin27 ch2 and AAL")
    vol, lab = ch2.array[0].astype(np.float32), aal.array[0]
    for value, name in AAL_STRUCTURES.items():
        mask = lab == value
        if not two_d:
            yield ObjectCase(f"colin27/{name}", "colin27-aal", Split.HELD_OUT, Image.from_spatial(vol, ch2.geometry), mask)
            continue
        k = int(round(float(np.mean(np.nonzero(mask)[2]))))
        sl = mask[:, :, k]
        comp = max(_components(sl, 1), key=lambda m: int(m.sum()))
        yield ObjectCase(f"colin27/{name}/axial-{k}", "colin27-aal-2d", Split.HELD_OUT,
                         Image.from_spatial(vol[:, :, k], spacing=ch2.spacing[:2]), comp)


def _colin_brain() -> Iterator[ObjectCase]:
    from medannot.data.image import ImageKind
    from medannot.transforms.spatial import resample_to_grid

    ch2 = _read(MRICRON / "ch2.nii.gz")
    better = _read(MRICRON / "ch2better.nii.gz")
    mask = Image((better.array > 0).astype(np.uint8), better.geometry, ImageKind.LABEL)
    on_ch2 = resample_to_grid(mask, ch2.geometry, ch2.spatial_shape, order=0).array[0] > 0
    on_ch2 = max(_components(on_ch2, 1), key=lambda m: int(m.sum()))
    yield ObjectCase("colin27/brain", "colin27-brain", Split.HELD_OUT, Image.from_spatial(ch2.array[0].astype(np.float32), ch2.geometry), on_ch2)


def _package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {package!r} is not installed; pip install -e '.[dev]'")
    return Path(list(spec.submodule_search_locations)[0]) / rel


OVERLAY_FILES = (("data_store", "data/MR-SIEMENS-DICOM-WithOverlays.dcm"),)
"""pydicom's ``examples_overlay.dcm`` is a crop of the same slice with the same lesion outline, so it is not a second case."""


def overlay_mask(path: Path, group: int = 0x6000) -> np.ndarray:
    """The overlay plane ``group`` of a DICOM file as a filled bool mask (rows, columns) on the image's grid."""
    import pydicom

    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ov = np.asarray(ds.overlay_array(group)) != 0
    origin = [int(v) - 1 for v in ds.get((group, 0x0050)).value]  # 1-based row, column of the overlay's first pixel
    out = np.zeros((int(ds.Rows), int(ds.Columns)), bool)
    r0, c0 = origin
    rs, cs = slice(max(r0, 0), min(r0 + ov.shape[0], out.shape[0])), slice(max(c0, 0), min(c0 + ov.shape[1], out.shape[1]))
    out[rs, cs] = ov[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0]
    return ndi.binary_fill_holes(ndi.binary_closing(out, iterations=1)) | out


def _overlays() -> Iterator[ObjectCase]:
    for package, rel in OVERLAY_FILES:
        path = _package_file(package, rel)
        img = _read(path)
        mask = overlay_mask(path)
        if mask.shape != img.spatial_shape:
            raise InputError(f"overlay shape {mask.shape} differs from the image's {img.spatial_shape}", path)
        comp = max(_components(mask, 1), key=lambda m: int(m.sum()))
        yield ObjectCase(f"mr-overlay/{path.stem}", "mr-overlay-lesions", Split.HELD_OUT,
                         Image.from_spatial(img.array[0].astype(np.float32), img.geometry), comp)


OBJECT_SOURCES: tuple[ObjectSource, ...] = (
    ObjectSource("mni152-tissue-3d", Split.TRAIN, 3, _mni3d, "medannot data_samples"),
    ObjectSource("mni152-tissue-2d", Split.TRAIN, 2, _mni2d, "medannot data_samples"),
    ObjectSource("nuclei-left", Split.TRAIN, 2, lambda: _nuclei(True), "medannot data_samples"),
    ObjectSource("colin27-aal", Split.HELD_OUT, 3, lambda: _colin_aal(False), "Debian mricron-data"),
    ObjectSource("colin27-aal-2d", Split.HELD_OUT, 2, lambda: _colin_aal(True), "Debian mricron-data"),
    ObjectSource("colin27-brain", Split.HELD_OUT, 3, _colin_brain, "Debian mricron-data"),
    ObjectSource("nuclei-right", Split.HELD_OUT, 2, lambda: _nuclei(False), "medannot data_samples"),
    ObjectSource("mr-overlay-lesions", Split.HELD_OUT, 2, _overlays, "pydicom 3.0.2 and pydicom-data 1.0.0"),
)


def object_sources(split: Split | str | None = None, ndim: int | None = None) -> list[ObjectSource]:
    """The sources of one split (or all) and one dimensionality (or both)."""
    sp = None if split is None else Split(split)
    return [s for s in OBJECT_SOURCES if (sp is None or s.split is sp) and (ndim is None or s.ndim == ndim)]


def object_cases(split: Split | str | None = None, ndim: int | None = None, sources: list[str] | None = None,
                 require_all: bool = False) -> list[ObjectCase]:
    """Load the objects of the chosen sources.

    Args:
        split: ``"train"``, ``"held-out"`` or None (both).
        ndim: 2, 3 or None (both).
        sources: Only these source names (None = all of the split).
        require_all: Raise instead of skipping a source whose files are missing.

    Raises:
        InputError: Unknown source name, or a missing source with ``require_all``.
    """
    known = {s.name for s in OBJECT_SOURCES}
    unknown = sorted(set(sources or []) - known)
    if unknown:
        raise InputError(f"unknown object sources {unknown}; known: {sorted(known)}")
    out: list[ObjectCase] = []
    for s in object_sources(split, ndim):
        if sources is not None and s.name not in sources:
            continue
        try:
            out.extend(s.loader())
        except InputError as exc:
            if require_all:
                raise InputError(f"object source {s.name!r} is missing ({exc}); it needs {s.needs}") from None
    return out


def geometry_2d(spacing: tuple[float, float]) -> Geometry:
    """A 2D identity-direction geometry with ``spacing`` (mm)."""
    return Geometry(spacing=spacing)
