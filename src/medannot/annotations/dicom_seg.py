"""DICOM SEG output and input with highdicom: label maps that viewers and PACS read.

:func:`write_dicom_seg` turns a label image on a DICOM series' grid into a BINARY DICOM
Segmentation that references every source instance. One segment per foreground label of the
label map (segment numbers 1..N in label-value order): its SegmentLabel is the label name,
its RecommendedDisplayCIELabValue the label-map colour, its property category/type the
SNOMED CT codes of :mod:`medannot.annotations.segment_codes` (generic Tissue when unknown),
SegmentAlgorithmType AUTOMATIC and an AlgorithmIdentificationSequence naming the model and
version. Frames where a segment is empty are omitted (highdicom ``omit_empty_frames``).

Empty labels (nothing segmented at all) still give a valid SEG: every segment is described and
one empty frame of segment 1 is stored (a SEG with zero frames is not valid DICOM: NumberOfFrames
must be >= 1); dciodvfy and highdicom accept it (tested). highdicom alone would store every frame
of every segment then (300 slices x 10 segments of zeros).

:func:`read_dicom_seg` reads a SEG (BINARY, FRACTIONAL or LABELMAP) back to a label image in RAS mm.
Label values are the segment numbers unless a label map is given, which maps segment labels to
values by name (so labels 1, 2, 5 written by :func:`write_dicom_seg` read back as 1, 2, 5).
"""

from __future__ import annotations

import logging
import sqlite3
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot import __version__
from medannot.annotations.dicom_grid import dcmread_object, onto_grid
from medannot.annotations.dicom_read_checks import check_same_series, check_seg
from medannot.annotations.dicom_uids import OutputUids
from medannot.annotations.labelmap import LabelInfo, LabelMap, default_color
from medannot.annotations.segment_codes import codes_for_label
from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io.dicom_geometry import frame_planes, frame_slice_indices, grid_from_slice_row_column

__all__ = ["SEG_SOP_CLASS_UID", "read_dicom_seg", "segment_label_map", "write_dicom_seg"]

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
_MAX_SEGMENTS = 65535


def _coded(concept: tuple[str, str, str]):
    import highdicom as hd

    value, scheme, meaning = concept
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _present_values(lab: np.ndarray) -> list[int]:
    """Sorted label values present; 8/16-bit labels are counted in contiguous chunks (bincount), faster than np.unique."""
    if lab.dtype.kind not in "ub" or lab.dtype.itemsize > 2:
        return [int(v) for v in np.unique(lab)]
    counts = np.zeros(int(np.iinfo(lab.dtype).max if lab.dtype.kind == "u" else 1) + 1, dtype=np.int64)
    flat = lab if lab.flags.c_contiguous else lab.T if lab.T.flags.c_contiguous else np.ascontiguousarray(lab)
    for chunk in flat.reshape(flat.shape[0], -1):
        found = np.bincount(chunk)
        counts[: found.size] += found
    return [int(v) for v in np.flatnonzero(counts)]


def _segments_of(label_map: LabelMap, present: Sequence[int]) -> list[LabelInfo]:
    """Foreground labels to describe: every label of the map plus values present but unnamed."""
    infos = {info.value: info for info in label_map.foreground}
    for v in present:
        if v != 0 and v not in infos:
            infos[v] = LabelInfo(int(v), f"label_{v}", default_color(int(v)))
    return [infos[v] for v in sorted(infos)]


def _segment_descriptions(
    segments: Sequence[LabelInfo], algorithm_name: str, algorithm_version: str, family: Any, algorithm_type: str
) -> list[Any]:
    import highdicom as hd
    from highdicom.seg import SegmentAlgorithmTypeValues

    try:
        kind = SegmentAlgorithmTypeValues(str(algorithm_type).upper())
    except ValueError:
        valid = ", ".join(v.value for v in SegmentAlgorithmTypeValues)
        raise InputError(f"unknown segment algorithm type {algorithm_type!r}; expected one of: {valid}") from None
    algorithm = None
    if kind is not SegmentAlgorithmTypeValues.MANUAL:
        algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, family=family, version=algorithm_version)
    out = []
    for number, info in enumerate(segments, start=1):
        codes = codes_for_label(info.name)
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=info.name[:64],
                segmented_property_category=_coded(codes.category),
                segmented_property_type=_coded(codes.type),
                algorithm_type=kind,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*info.color),
            )
        )
    return out


_TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                        "StudyDate", "StudyTime", "ReferringPhysicianName")  # fmt: skip


def _hoistable(ds: Any) -> list[str]:
    """Functional groups an enhanced image gives per frame, identically for every frame, but not in the shared group."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    if not per_frame or int(ds.get("NumberOfFrames") or 1) < 2:
        return []
    out = []
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if shared is not None and keyword in shared:
            continue
        values = [item.get(keyword) for item in per_frame]
        if values[0] is not None and all(v is not None and v == values[0] for v in values[1:]):
            out.append(keyword)
    return out


def _shallow(ds: Any) -> Any:
    """A dataset with its own element dict holding the same elements: setting an attribute on it leaves ``ds``
    alone (pydicom's copy.copy and Dataset(ds) share the dict; a deep copy of 200 frames' groups takes seconds)."""
    from pydicom.dataset import Dataset

    return Dataset({tag: ds.get_item(tag) for tag in ds.keys()})


def highdicom_source(ds: Any) -> Any:
    """``ds``, or a header copy that highdicom accepts as the first source image.

    Type 2 patient/study attributes it lacks are added empty (as DICOM allows); an enhanced
    multi-frame image that repeats its pixel measures / orientation in every frame (as Philips
    does) gets them in the shared functional group, where highdicom looks.
    """
    from pydicom.dataset import Dataset

    missing = [k for k in _TYPE2_PATIENT_STUDY if k not in ds]
    hoist = _hoistable(ds)
    if not missing and not hoist:
        return ds
    out = _shallow(ds)
    if getattr(ds, "file_meta", None) is not None:
        out.file_meta = ds.file_meta
    for keyword in missing:
        setattr(out, keyword, None)
    if hoist:
        shared = _shallow(ds.SharedFunctionalGroupsSequence[0]) if ds.get("SharedFunctionalGroupsSequence") else Dataset()
        for keyword in hoist:
            setattr(shared, keyword, ds.PerFrameFunctionalGroupsSequence[0].get(keyword))
        if "SharedFunctionalGroupsSequence" in out:
            del out.SharedFunctionalGroupsSequence  # a new element: setting the old one's value would change ``ds`` too
        out.SharedFunctionalGroupsSequence = [shared]
    return out


def write_dicom_seg(
    labels: Image,
    source_datasets: Sequence[Any],
    label_map: LabelMap | Mapping[Any, Any] | None,
    algorithm_name: str,
    algorithm_version: str,
    path: str | Path,
    *,
    series_number: int = 900,
    series_description: str = "medannot segmentation",
    algorithm_family: Any = None,
    algorithm_type: str = "AUTOMATIC",
    workers: int = 0,
    uids: OutputUids | None = None,
) -> Path:
    """Write ``labels`` as a BINARY DICOM SEG referencing ``source_datasets``; atomically.

    Args:
        labels: 3D label image on the source series grid, medannot's DICOM layout ``(1, columns, rows, slices)``
            in RAS mm (as :func:`medannot.io.read_image` reads the series, or as ``annotate`` writes it).
        source_datasets: pydicom datasets of the series the labels were made on; headers suffice
            (:func:`medannot.annotations.dicom_grid.load_source_datasets`), in any order: each frame is
            matched to its slice by position. One enhanced multi-frame dataset is accepted too.
        label_map: Names and colours (``LabelMap`` or a bundle's ``labels`` dict); values present in
            ``labels`` but not in the map become ``label_<v>``; None names every present value so.
        algorithm_name: Model (or method) name for the AlgorithmIdentificationSequence.
        algorithm_version: Its version (the bundle version).
        path: Output ``.dcm`` file.
        series_number: SeriesNumber of the new SEG series.
        series_description: SeriesDescription of the new SEG series.
        algorithm_family: highdicom/pydicom code of the algorithm family (default: DCM Artificial Intelligence).
        algorithm_type: SegmentAlgorithmType: AUTOMATIC (a model: the default), SEMIAUTOMATIC, or MANUAL
            (no algorithm identification is written then).
        workers: Frame-encoding worker processes for highdicom (0: none).
        uids: The SEG's SeriesInstanceUID and SOPInstanceUID (:func:`medannot.annotations.dicom_uids.output_uids`:
            derived from the source series and the model, so a re-run makes the same object); None draws new ones.

    Returns:
        The written path.

    Raises:
        GeometryError: If the labels are not on the grid of the source frames.
        InputError: No source datasets, not a label image, or source headers that highdicom refuses
            (e.g. no FrameOfReferenceUID).
        OutputError: If the file cannot be written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from medannot.io.atomic import atomic_path

    if not labels.is_label:
        raise InputError(f"DICOM SEG needs a label image, got {labels.kind.value}")
    lab = labels.scalar()
    if labels.ndim != 3:
        raise GeometryError("DICOM SEG needs a 3D label image on the source series grid; got a 2D image")
    planes = frame_planes(source_datasets)
    ks = frame_slice_indices(planes, labels.geometry, labels.spatial_shape)
    if not isinstance(label_map, LabelMap):
        label_map = LabelMap.parse(label_map) if label_map is not None else LabelMap()
    present = _present_values(lab)
    segments = _segments_of(label_map, present)
    if not segments:
        segments = [LabelInfo(1, "label_1", default_color(1))]
    if len(segments) > _MAX_SEGMENTS:
        raise InputError(f"{len(segments)} labels do not fit a DICOM SEG (at most {_MAX_SEGMENTS} segments)")
    lut = np.zeros(int(max(present[-1], segments[-1].value)) + 1, dtype=np.uint16 if len(segments) > 255 else np.uint8)
    for number, info in enumerate(segments, start=1):
        lut[info.value] = number
    # frames (n, rows, columns) in source-frame order, values = segment numbers
    in_order = bool(np.array_equal(ks, np.arange(lab.shape[2])))
    stack = lab.transpose(2, 1, 0) if in_order else lab[:, :, ks].transpose(2, 1, 0)
    identity = all(info.value == number for number, info in enumerate(segments, start=1)) and lab.dtype.itemsize <= lut.itemsize
    frames = np.ascontiguousarray(stack, dtype=lut.dtype) if identity else lut[stack]
    empty = not frames.any()
    if empty:  # one frame must exist: a placeholder pixel, cleared again after construction (never in the caller's array)
        frames = np.zeros_like(frames)
        frames[0, 0, 0] = 1
    descriptions = _segment_descriptions(
        segments, algorithm_name, algorithm_version or __version__, algorithm_family or codes.cid7162.ArtificialIntelligence,
        algorithm_type,
    )
    try:
        with warnings.catch_warnings():
            # highdicom re-checks the source's patient name; odd names in real data are not ours to fix
            warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
            seg = hd.seg.Segmentation(
                source_images=[highdicom_source(source_datasets[0]), *source_datasets[1:]],
                pixel_array=frames if len(source_datasets) > 1 or frames.shape[0] > 1 else frames[0],
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=uids.series if uids is not None else generate_uid(),
                series_number=series_number,
                sop_instance_uid=uids.instance if uids is not None else generate_uid(),
                instance_number=1,
                manufacturer="medannot",
                manufacturer_model_name=algorithm_name[:64],
                software_versions=f"medannot {__version__}",
                device_serial_number="none",
                series_description=series_description[:64],
                content_label="SEGMENTATION",
                content_description=f"{algorithm_name} {algorithm_version}"[:64],
                content_creator_name=None,
                omit_empty_frames=True,
                workers=workers,
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"cannot build a DICOM SEG from these source images: {' '.join(str(exc).split())}") from None
    if empty:
        _clear_pixels(seg)
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            seg.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the DICOM SEG ({exc.strerror or exc})", out) from exc
    return out


def _clear_pixels(seg: Any) -> None:
    """Zero the single placeholder pixel of an all-empty SEG (BINARY frames are bit-packed)."""
    seg.PixelData = bytes(len(seg.PixelData))


def segment_label_map(seg: Any) -> LabelMap:
    """``{segment number: (SegmentLabel, colour)}`` of a SEG dataset; colours from its CIELab values."""
    import highdicom as hd

    out = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        color: Any = default_color(number)
        if "RecommendedDisplayCIELabValue" in item:
            color = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in item.RecommendedDisplayCIELabValue)).to_rgb()
        out[number] = {"name": str(item.get("SegmentLabel", f"segment_{number}")), "color": list(color)}
    return LabelMap.parse(out)


def _values_for_segments(segments: LabelMap, label_map: LabelMap | None) -> dict[int, int]:
    """Segment number -> label value: by name through ``label_map`` when given, else the number itself."""
    if label_map is None:
        return {n: n for n in segments if n != 0}
    by_name = {info.name.strip().lower(): info.value for info in label_map.foreground}
    mapping = {}
    for n, info in segments.items():
        if n != 0:
            mapping[n] = by_name.get(info.name.strip().lower(), n)
    if len(set(mapping.values())) != len(mapping):
        raise InputError(f"segment names map several segments to one label value: {mapping}; give a label map without clashes")
    return mapping


def read_dicom_seg(
    path: str | Path,
    reference_geometry: Geometry | None = None,
    reference_shape: Sequence[int] | None = None,
    label_map: LabelMap | None = None,
    reference_datasets: Sequence[Any] | None = None,
) -> Image:
    """Read a DICOM SEG back to a label image in RAS mm.

    Args:
        path: The SEG file.
        reference_geometry: Grid of the source series (e.g. :func:`medannot.annotations.dicom_grid.series_grid`
            or the image read from it); with ``reference_shape``, the labels are returned on that grid,
            voxel for voxel (slices the SEG omits are background).
        reference_shape: Spatial shape ``(columns, rows, slices)`` of the reference grid.
        label_map: Maps segment labels to label values by name; without it values are segment numbers.
        reference_datasets: Headers of the series the labels are to be put on: a SEG made on another series (its
            referenced series or frame of reference differ) is refused.

    Returns:
        A 3D label image ``(1, columns, rows, slices)`` (uint8, or uint16 past 255 segments). Without a
        reference the grid spans the SEG's own frames (first to last non-empty slice).
        ``meta["segments"]`` is the SEG's label map (value -> name, colour); ``meta["source_series_uids"]``
        the SeriesInstanceUIDs it references.

    Raises:
        InputError: Not a DICOM SEG, unreadable, damaged (:func:`medannot.annotations.dicom_read_checks.check_seg`),
            made on another series, overlapping segments that cannot be one label map.
        GeometryError: Frames not on one regular grid, or not on the reference grid; non-finite frame geometry.
    """
    import highdicom as hd

    p = Path(path)
    if (reference_geometry is None) != (reference_shape is None):
        raise InputError("read_dicom_seg: give reference_geometry and reference_shape together")
    ds = dcmread_object(p)
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS_UID:
        raise InputError(f"not a DICOM SEG (Modality {ds.get('Modality', '?')}, SOP class {ds.get('SOPClassUID', '?')})", p)
    check_seg(ds, p)
    check_same_series(ds, reference_datasets or [], p, "DICOM SEG")
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
        segments = segment_label_map(seg)
        values = _values_for_segments(segments, label_map)
        logging.getLogger("highdicom").setLevel(logging.ERROR)
        volume = seg.get_volume(combine_segments=True, relabel=False, dtype=np.uint16 if len(values) > 255 else np.uint8)
    except (ValueError, RuntimeError, KeyError, AttributeError, IndexError, TypeError, OverflowError, ZeroDivisionError,
            NotImplementedError, sqlite3.Error) as exc:
        text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "") or type(exc).__name__
        raise InputError(f"cannot read the DICOM SEG ({text[:160]}); the file is damaged or uses a layout medannot does not read", p) from None
    arr = np.asarray(volume.array)
    if arr.ndim != 3:
        raise InputError(f"DICOM SEG volume has shape {arr.shape}; expected (slices, rows, columns)", p)
    lut = np.arange(max(max(values, default=0), int(arr.max(initial=0))) + 1)
    for n, v in values.items():
        lut[n] = v
    lab = lut[arr].astype(np.uint16 if lut.max(initial=0) > 255 else np.uint8)
    lab, geometry = grid_from_slice_row_column(lab, volume.affine, p)  # medannot's (column, row, slice) layout
    meta = {
        "source": str(p),
        "format": "dicom-seg",
        "segments": {v: segments[n].name for n, v in values.items()},
        "segment_colors": {v: list(segments[n].color) for n, v in values.items()},
        "source_series_uids": [str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])],
        "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
        "FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "")),
    }
    image = Image(np.ascontiguousarray(lab)[None], geometry, ImageKind.LABEL, meta)
    if reference_geometry is not None and reference_shape is not None:
        try:
            image = onto_grid(image, reference_geometry, reference_shape, what="DICOM SEG frames")
        except GeometryError as exc:
            raise GeometryError(exc.reason, p) from None
    return image
