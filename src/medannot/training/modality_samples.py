"""Real images of five kinds (CT, MR, ultrasound, radiograph, microscopy) that ship inside installed packages.

Used to train and test the bundled ``modality`` classifier without downloading anything. Each *source* is one
acquisition (a DICOM file or study, a volume, a photograph); its class comes from the DICOM Modality tag or
from what the package documents the image to be. Sources whose package or file is missing are skipped and
reported by :func:`modality_sources_status`.

Every source is read through :mod:`medannot.io`, the loader ``medannot annotate`` uses, so the model is trained on
the pixels it is later shown: :func:`medannot.io.read_image` for every source it reads (palette-colour and YCbCr
DICOM become RGB, MONOCHROME1 radiographs are inverted so bone is bright, RescaleSlope/Intercept applied), and
:func:`medannot.io.read_dicom_frames` (the same pixel steps, frame by frame) for the four DICOM files ``read_image``
refuses to stack in 3D: a cine MR without frame positions, two Siemens mosaics and two colour ultrasound clips
(``kind="dicom-frames"``; ``medannot annotate`` refuses those files too). Colour becomes grey with the shared named
step :func:`medannot.io.to_grey` (mean of R, G, B), as the classifier's input preparation does at inference.

Each source gives several 2D grey views, exact sub-arrays of what ``read_image`` returns: a volume gives 4 slices
per axis between 25 % and 75 % of the axis (12), a multi-frame file up to 8 evenly spaced frames (a 3D DICOM image's
frames are its slices along the last array axis, as the classifier cuts a volume), a single picture itself plus
its four corner crops of 60 % side (5).

Packages: pydicom 3.0.2 (``pydicom/data/test_files``), pydicom-data 1.0.0 (``data_store/data``), deid-data
0.0.20, nibabel 5.4.2 (``nibabel/tests/data``), scikit-image 0.26.0 (``skimage/data``), medannot's own samples
(MNI152 T1, stardist nuclei), Debian ``mricron-data`` (Colin27 T1) and ``invesalius-examples`` (a head CT).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medannot.data.image import Image
from medannot.errors import InputError
from medannot.io import read_dicom_frames, read_image, to_grey
from medannot.training.classification_data import ClassSample

__all__ = [
    "MODALITY_CLASSES",
    "MODALITY_SOURCES",
    "export_modality_folder",
    "modality_samples",
    "modality_source_images",
    "modality_source_paths",
    "modality_sources_status",
    "source_views",
]

MODALITY_CLASSES = ["ct", "mr", "us", "xray", "microscopy"]


@dataclass(frozen=True)
class ModalitySource:
    """One real acquisition: ``(package, relative path)`` pairs read the same way, its class and its group name.

    ``kind`` says how it is read and cut into views: ``dicom`` (read_image; frames of a 3D image are its views),
    ``dicom-frames`` (read_dicom_frames: files read_image refuses), ``nifti`` / ``inv3`` (read_image; a volume:
    slices along each axis), ``raster`` (read_image; a picture and its corner crops).
    """

    group: str
    label: str
    files: tuple[tuple[str, str], ...]
    kind: str = "dicom"  # dicom | dicom-frames | nifti | raster | inv3


#: Where each package comes from, for the message when a source is missing.
_INSTALL = {
    "pydicom": "pip install pydicom==3.0.2",
    "data_store": "pip install pydicom-data==1.0.0 (a dev dependency: pip install -e '.[dev]')",
    "deid_data": "pip install deid-data==0.0.20 (a dev dependency: pip install -e '.[dev]')",
    "nibabel": "pip install nibabel==5.4.2",
    "skimage": "pip install scikit-image==0.26.0",
    "medannot": "medannot's own data_samples (reinstall medannot)",
    "/usr/share/doc/invesalius-examples/examples": "Debian package invesalius-examples (scripts/system_deps.txt: make system-deps)",
    "/usr/share/mricron/templates": "Debian package mricron-data (scripts/system_deps.txt: make system-deps)",
}


def _package_dir(package: str) -> Path | None:
    if package.startswith("/"):
        return Path(package)
    if package == "medannot":
        return Path(__file__).resolve().parent.parent / "data_samples"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


PD, PDD, DEID, NIB, SKI = "pydicom", "data_store", "deid_data", "nibabel", "skimage"
T, D = "data/test_files/", "data/"

MODALITY_SOURCES: list[ModalitySource] = [
    # CT
    ModalitySource("ct_small", "ct", ((PD, T + "CT_small.dcm"),)),
    ModalitySource("ct_693", "ct", ((PDD, D + "693_UNCR.dcm"),)),
    ModalitySource("ct_pancreas", "ct", ((PDD, D + "explicit_VR-UN.dcm"),)),
    ModalitySource("ct_enhanced", "ct", ((PDD, D + "eCT_Supplemental.dcm"),)),
    ModalitySource("ct_brain_deid", "ct", ((DEID, "data/humans/ctbrain1.dcm"), (DEID, "data/humans/ctbrain2.dcm"))),
    ModalitySource("ct_cranium", "ct", (("/usr/share/doc/invesalius-examples/examples", "Cranium.inv3"),), "inv3"),
    # MR
    ModalitySource("mr_small", "mr", ((PD, T + "MR_small.dcm"),)),
    ModalitySource("mr2", "mr", ((PDD, D + "MR2_UNCR.dcm"),)),
    ModalitySource("mr_emri", "mr", ((PDD, D + "emri_small.dcm"),), "dicom-frames"),
    ModalitySource("mr_abdomen", "mr", ((PDD, D + "MR-SIEMENS-DICOM-WithOverlays.dcm"),)),
    ModalitySource("mr_dti", "mr", ((NIB, "tests/data/0.dcm"), (NIB, "tests/data/1.dcm")), "dicom-frames"),
    ModalitySource("mr_mni152", "mr", (("medannot", "mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),), "nifti"),
    ModalitySource("mr_colin27", "mr", (("/usr/share/mricron/templates", "ch2.nii.gz"),), "nifti"),
    ModalitySource("mr_nibabel_anat", "mr", ((NIB, "tests/data/anatomical.nii"),), "nifti"),
    # Ultrasound
    ModalitySource("us1", "us", ((PDD, D + "US1_UNCR.dcm"),)),
    ModalitySource("us_ob", "us", ((PDD, D + "OBXXXX1A.dcm"),)),
    ModalitySource("us_tee", "us", ((PDD, D + "color-pl.dcm"),)),
    ModalitySource("us_aloka", "us", ((PDD, D + "gdcm-US-ALOKA-16.dcm"),)),
    ModalitySource("us_3d", "us", ((PDD, D + "color3d_jpeg_baseline.dcm"),), "dicom-frames"),
    ModalitySource("us_kidney", "us", ((DEID, "data/ultrasounds/GREYSCALE_IMAGE.dcm"),)),
    ModalitySource("us_rgb", "us", ((DEID, "data/ultrasounds/RGB_IMAGE.dcm"),)),
    ModalitySource("us_echo", "us", ((DEID, "data/ultrasounds/ultrasound-multiframe.dcm"),), "dicom-frames"),
    ModalitySource("us_rgb_color", "us", ((PD, T + "examples_rgb_color.dcm"),)),
    # Radiographs
    ModalitySource("xr_chest", "xray", ((PDD, D + "RG1_UNCR.dcm"),)),
    ModalitySource("xr_extremity", "xray", ((PDD, D + "RG3_UNCR.dcm"),)),
    ModalitySource("xr_cat_chest", "xray", ((DEID, "data/animals/cat.dcm"),)),
    # Microscopy
    ModalitySource("mic_nuclei", "microscopy", (("medannot", "stardist/img2d.tif"),), "raster"),
    ModalitySource("mic_ihc", "microscopy", ((SKI, "data/ihc.png"),), "raster"),
    ModalitySource("mic_cell", "microscopy", ((SKI, "data/cell.png"),), "raster"),
]


def modality_source_images(source: ModalitySource, paths: list[Path] | None = None) -> list[Image]:
    """The images of one source, read through :mod:`medannot.io` (see the module docstring).

    Returns:
        One image per file (``read_image``), or one 2D image per frame for ``kind="dicom-frames"``.

    Raises:
        InputError: A file is missing (``paths`` not given and the package absent) or unreadable.
    """
    paths = paths if paths is not None else modality_source_paths(source)
    if paths is None:
        raise InputError(f"modality source {source.group!r} is missing ({source.files[0][1]} not found)")
    if source.kind == "dicom-frames":
        return [frame for p in paths for frame in read_dicom_frames(p)]
    return [read_image(p) for p in paths]


def _volume_views(vol: np.ndarray) -> list[np.ndarray]:
    out = []
    for axis in range(3):
        n = vol.shape[axis]
        for f in np.linspace(0.25, 0.75, 4):
            out.append(np.take(vol, int(f * (n - 1)), axis=axis))
    return out


def _picture_views(img: np.ndarray) -> list[np.ndarray]:
    h, w = img.shape
    ch, cw = int(0.6 * h), int(0.6 * w)
    return [img] + [img[r : r + ch, c : c + cw] for r in (0, h - ch) for c in (0, w - cw)]


def source_views(source: ModalitySource, images: list[Image]) -> list[np.ndarray]:
    """The 2D grey views (float32, full resolution) training takes from a source's images.

    Every view is an exact sub-array of :func:`medannot.io.to_grey` of an image (a volume's first channel).
    """
    if source.kind in ("nifti", "inv3"):
        return _volume_views(np.asarray(images[0].array[0], dtype=np.float32))
    frames: list[np.ndarray] = []
    for image in images:
        grey = to_grey(image.array)[0]
        frames += [grey[:, :, k] for k in range(grey.shape[2])] if image.ndim == 3 else [grey]
    if len(frames) > 8:
        frames = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, 8)]
    return frames if len(frames) > 1 else _picture_views(frames[0])


def read_inv3_volume(path: Path) -> np.ndarray:
    """The HU volume (float32, axes slice/row/column) of an InVesalius ``.inv3`` project, read by :mod:`medannot.io`."""
    return np.asarray(read_image(path).array[0], dtype=np.float32).transpose(2, 1, 0)


def modality_source_paths(source: ModalitySource) -> list[Path] | None:
    """The files of a source on this machine, None when one is missing."""
    return _paths(source)


def _paths(source: ModalitySource) -> list[Path] | None:
    out = []
    for package, rel in source.files:
        base = _package_dir(package)
        if base is None or not (base / rel).is_file():
            return None
        out.append(base / rel)
    return out


def modality_sources_status() -> dict[str, list[str]]:
    """``{"found": [...], "missing": [...]}``: which source groups are available on this machine."""
    found: list[str] = []
    missing: list[str] = []
    for s in MODALITY_SOURCES:
        (found if _paths(s) is not None else missing).append(s.group)
    return {"found": found, "missing": missing}


def modality_samples(groups: list[str] | None = None, max_side: int = 256, require_all: bool = False) -> list[ClassSample]:
    """The available modality sources as 2D grey samples ``(1, H, W)`` (float32), largest side at most ``max_side``.

    Args:
        groups: Only these source groups (None = all).
        max_side: Views larger than this are reduced by block averaging (keeps memory small).
        require_all: Refuse to go on when a wanted source is missing (the bundled model's training uses this,
            so a machine without a package cannot silently train on less data than its card says).

    Returns:
        Samples named ``<group>#<view>``, grouped by source. Missing sources are skipped unless ``require_all``.

    Raises:
        InputError: ``require_all`` and a source is missing (named, with the package that provides it), or a
            named group that does not exist.
    """
    from skimage.transform import downscale_local_mean

    known = {s.group for s in MODALITY_SOURCES}
    unknown = sorted(set(groups or []) - known)
    if unknown:
        raise InputError(f"unknown modality source groups {unknown}; known: {sorted(known)}")
    out = []
    for source in MODALITY_SOURCES:
        if groups is not None and source.group not in groups:
            continue
        paths = _paths(source)
        if paths is None:
            if require_all:
                package = source.files[0][0]
                where = source.files[0][1]
                raise InputError(f"modality source {source.group!r} is missing ({where} not found); install "
                                 f"{_INSTALL.get(package, package)}", _package_dir(package) or package)
            continue
        for i, view in enumerate(source_views(source, modality_source_images(source, paths))):
            factor = int(np.ceil(max(view.shape) / max_side))
            if factor > 1:
                view = downscale_local_mean(view, (factor, factor))
            out.append(ClassSample(np.asarray(view, np.float32)[None], source.label, source.group, f"{source.group}#{i}"))
    return out


def export_modality_folder(out: str | Path, groups: list[str] | None = None, require_all: bool = False) -> int:
    """Write the samples as a folder per class of 16-bit PNGs: ``out/<class>/<group>__<view>.png``.

    Intensities are clipped to the 0.5-99.5th percentiles of each view and scaled to 0-65535 (a constant view
    becomes zeros). The ``__`` in the name lets :mod:`medannot.retrieval` leave out neighbours from the same source.

    Returns:
        The number of images written.
    """
    from PIL import Image as PILImage

    n = 0
    for s in modality_samples(groups=groups, require_all=require_all):
        a = s.array[0]
        lo, hi = np.percentile(a, [0.5, 99.5])
        u16 = (np.clip((a - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16) if hi > lo else np.zeros(a.shape, np.uint16)
        dest = Path(out) / s.label / f"{s.name.replace('#', '__')}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(u16).save(dest)
        n += 1
    return n
