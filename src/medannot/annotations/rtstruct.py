"""RT Structure Set (RTSTRUCT) output and input with pydicom: closed planar contours per slice.

:func:`write_rtstruct` draws, on every source slice, the outlines of each label with
``skimage.measure.find_contours`` at level 0.5 on the binary mask (a marching-squares outline
through the midpoints between inside and outside pixel centres), drops exactly collinear
points, and stores them as CLOSED_PLANAR contours in patient LPS mm. One ROI per foreground
label of the label map: ROINumber is the label value, ROIName the label name, ROIDisplayColor
its colour, ROIGenerationAlgorithm AUTOMATIC; each contour references its source image.
Holes become inner contours of the same ROI and are read back with the even-odd rule
(as 3D Slicer, plastimatch and rt-utils read them).

:func:`read_rtstruct` rasterises the contours back onto the grid of the reference series with
``skimage.draw.polygon`` (pixel centres inside the polygon, even-odd across the contours of a
ROI on a slice). Because the written outline never passes through a pixel centre, writing then
reading gives back the same mask, voxel for voxel (Dice 1.0 per label, measured in the tests);
contours drawn by other software are polygons, so expect small differences at their edges.
Where ROIs overlap, the one listed later wins.

Why not rt-utils (PyPI): it needs OpenCV for its contours, assumes axial series, and its masks are
(rows, columns, slices) in file order; the pydicom code here is short and handles any orientation.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot import __version__
from medannot.annotations.dicom_grid import dcmread_object
from medannot.annotations.dicom_read_checks import check_rtstruct, check_same_series
from medannot.annotations.labelmap import LabelInfo, LabelMap, default_color
from medannot.annotations.segment_codes import codes_for_label
from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io.dicom_geometry import frame_planes, frame_slice_indices, lps_to_ras

__all__ = ["RTSTRUCT_SOP_CLASS_UID", "read_rtstruct", "write_rtstruct"]

RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"
_STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired), as RT systems expect
_PLANE_TOL_VOXELS = 0.1


def _ds_value(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS), to about 1e-6 mm."""
    for digits in (6, 5, 4, 3):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        if len(text) <= 16:
            return "0" if text in ("-0", "") else text
    return f"{value:.6g}"


def _contour_data(points: np.ndarray) -> Any:
    """ContourData (3006,0050) as an encoded element: formatting ~100k DS values through pydicom's
    per-value DS objects takes seconds, this takes milliseconds (the file is Implicit VR, so no 64 KiB limit)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    values = points.ravel().tolist()
    if max(map(abs, values), default=0.0) < 1e8:  # "-12345678.123456" is 16 characters: DS's limit
        encoded = "\\".join(map("{:.6f}".format, values)).encode("ascii")
    else:
        encoded = "\\".join(map(_ds_value, values)).encode("ascii")
    if len(encoded) % 2:
        encoded += b" "
    return RawDataElement(Tag(0x30060050), "DS", len(encoded), encoded, 0, True, True, True, False)


def _slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines ``(n, 2)`` in (row, column) pixel units of a 2D mask (rows, columns)."""
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(mask.astype(np.uint8), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = approximate_polygon(c - 1.0, tolerance=0)  # removes exactly collinear points only
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            out.append(c)
    return out


def _code_item(concept: tuple[str, str, str]) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = concept
    return item


def _base_dataset(src: Any, series_description: str, label: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ImplicitVRLittleEndian, generate_uid

    now = _dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(RTSTRUCT_SOP_CLASS_UID)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # 32-bit lengths: long contours fit
    ds.SpecificCharacterSet = src.get("SpecificCharacterSet", "ISO_IR 100")
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS_UID
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):  # fmt: skip
        setattr(ds, keyword, src.get(keyword, None))
    for keyword in ("IssuerOfPatientID", "PatientAge", "StudyDescription"):
        if keyword in src:
            setattr(ds, keyword, src.get(keyword))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 901
    ds.SeriesDescription = series_description[:64]
    ds.OperatorsName = None
    ds.Manufacturer = "medannot"
    ds.ManufacturerModelName = label[:64]
    ds.SoftwareVersions = f"medannot {__version__}"
    ds.InstanceNumber = 1
    ds.StructureSetLabel = label[:16] or "medannot"
    ds.StructureSetName = label[:64]
    ds.StructureSetDate = ds.InstanceCreationDate
    ds.StructureSetTime = ds.InstanceCreationTime
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def write_rtstruct(
    labels: Image,
    source_datasets: Sequence[Any],
    label_map: LabelMap | Mapping[Any, Any] | None,
    algorithm_name: str,
    algorithm_version: str,
    path: str | Path,
    *,
    series_description: str = "medannot structures",
    algorithm_type: str = "AUTOMATIC",
) -> Path:
    """Write ``labels`` as an RTSTRUCT of closed planar contours on the source slices; atomically.

    Args:
        labels: 3D label image on the source series grid (medannot's DICOM layout, RAS mm).
        source_datasets: pydicom datasets (headers suffice) of the single-frame source series, any order.
        label_map: Names and colours; values present but not in the map become ``label_<v>``.
        algorithm_name: Model (or method) name, recorded in ROIGenerationDescription.
        algorithm_version: Its version.
        path: Output ``.dcm`` file.
        series_description: SeriesDescription of the new RTSTRUCT series.
        algorithm_type: ROIGenerationAlgorithm: AUTOMATIC (a model: the default), SEMIAUTOMATIC or MANUAL.

    Returns:
        The written path. A label with no voxels still gets its ROI (without contours).

    Raises:
        GeometryError: If the labels are not on the source grid.
        InputError: No source datasets, a multi-frame source, a source without FrameOfReferenceUID.
        OutputError: If the file cannot be written.
    """
    from pydicom.dataset import Dataset

    from medannot.io.atomic import atomic_path

    if not labels.is_label or labels.ndim != 3:
        raise InputError("RTSTRUCT needs a 3D label image on the source series grid")
    algorithm_type = str(algorithm_type).upper()
    if algorithm_type not in ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"):
        raise InputError(f"unknown ROI generation algorithm {algorithm_type!r}; expected AUTOMATIC, SEMIAUTOMATIC or MANUAL")
    lab = labels.scalar()
    planes = frame_planes(source_datasets)
    if len(planes) != len(source_datasets):
        raise InputError("RTSTRUCT contours reference single-frame images; this source is an enhanced multi-frame image")
    ks = frame_slice_indices(planes, labels.geometry, labels.spatial_shape)
    src = source_datasets[0]
    frame_of_reference = str(src.get("FrameOfReferenceUID", "") or "")
    if not frame_of_reference:
        raise InputError("the source images have no FrameOfReferenceUID; an RTSTRUCT cannot be placed without it")
    if not isinstance(label_map, LabelMap):
        label_map = LabelMap.parse(label_map) if label_map is not None else LabelMap()
    infos = {info.value: info for info in label_map.foreground}
    for v in np.unique(lab):
        if v != 0 and int(v) not in infos:
            infos[int(v)] = LabelInfo(int(v), f"label_{v}", default_color(int(v)))
    rois = [infos[v] for v in sorted(infos)]

    ds = _base_dataset(src, series_description, algorithm_name)
    contour_images = []
    for p in planes:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = p.sop_class_uid, p.sop_instance_uid
        contour_images.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID = str(src.SeriesInstanceUID)
    series_item.ContourImageSequence = contour_images
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = _STUDY_COMPONENT_SOP_CLASS
    study_item.ReferencedSOPInstanceUID = str(src.StudyInstanceUID)
    study_item.RTReferencedSeriesSequence = [series_item]
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = src.get("PositionReferenceIndicator", None)
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame_of_reference
    frame_item.RTReferencedStudySequence = [study_item]
    ds.ReferencedFrameOfReferenceSequence = [frame_item]

    roi_items, contour_items, observations = [], [], []
    for info in rois:
        roi = Dataset()
        roi.ROINumber = info.value
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        roi.ROIName = info.name[:64]
        roi.ROIGenerationAlgorithm = algorithm_type
        roi.ROIGenerationDescription = f"{algorithm_name} {algorithm_version}".strip()[:64]
        roi_items.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = info.value
        roi_contour.ROIDisplayColor = list(info.color)
        contours = []
        for p, k in zip(planes, ks):
            mask = lab[:, :, k].T == info.value  # (rows, columns)
            if not mask.any():
                continue
            for outline in _slice_contours(mask):
                points = p.pixel_to_lps(outline)  # LPS mm
                image_item = Dataset()
                image_item.ReferencedSOPClassUID, image_item.ReferencedSOPInstanceUID = p.sop_class_uid, p.sop_instance_uid
                contour = Dataset()
                contour.ContourImageSequence = [image_item]
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(points)
                contour[0x30060050] = _contour_data(points)
                contour.set_original_encoding(True, True, contour._character_set)  # so pydicom writes the raw value as is
                contours.append(contour)
        if contours:
            roi_contour.ContourSequence = contours
        contour_items.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = info.value
        observation.ReferencedROINumber = info.value
        observation.RTROIInterpretedType = codes_for_label(info.name).rt_interpreted_type
        observation.ROIInterpreter = None
        observations.append(observation)
    ds.StructureSetROISequence = roi_items
    ds.ROIContourSequence = contour_items
    ds.RTROIObservationsSequence = observations

    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the RTSTRUCT ({exc.strerror or exc})", out) from exc
    return out


def roi_label_map(ds: Any) -> LabelMap:
    """``{ROINumber: (ROIName, ROIDisplayColor)}`` of an RTSTRUCT dataset."""
    colors = {}
    for item in ds.get("ROIContourSequence", []):
        if "ROIDisplayColor" in item:
            colors[int(item.ReferencedROINumber)] = [int(c) for c in item.ROIDisplayColor]
    out = {}
    for roi in ds.get("StructureSetROISequence", []):
        number = int(roi.ROINumber)
        out[number] = {"name": str(roi.get("ROIName", f"roi_{number}")), "color": colors.get(number, list(default_color(number)))}
    return LabelMap.parse(out)


def read_rtstruct(
    path: str | Path,
    reference_geometry: Geometry,
    reference_shape: Sequence[int],
    label_map: LabelMap | None = None,
    reference_datasets: Sequence[Any] | None = None,
) -> Image:
    """Rasterise an RTSTRUCT's closed planar contours onto the reference series grid.

    Args:
        path: The RTSTRUCT file.
        reference_geometry: Grid of the series the contours were drawn on (RAS mm), e.g.
            :func:`medannot.annotations.dicom_grid.series_grid` of its headers.
        reference_shape: Its spatial shape ``(columns, rows, slices)``.
        label_map: Maps ROI names to label values; without it the value is the ROINumber
            (ROIs numbered above 65535 are refused).
        reference_datasets: Headers of the reference series: contours in another frame of reference, or of
            another series, are refused.

    Returns:
        Label image on the reference grid (uint8, or uint16 past 255); ``meta["segments"]`` maps value -> ROI name.
        ROIs without contours are listed but empty; POINT/OPEN contours are ignored.

    Raises:
        InputError: Not an RTSTRUCT, unreadable, damaged (:func:`medannot.annotations.dicom_read_checks.check_rtstruct`),
            or drawn on another series.
        GeometryError: A contour that does not lie in a slice plane of the reference grid, or is not finite.
    """
    from skimage.draw import polygon

    p = Path(path)
    ds = dcmread_object(p)
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS_UID:
        raise InputError(f"not an RTSTRUCT (Modality {ds.get('Modality', '?')}, SOP class {ds.get('SOPClassUID', '?')})", p)
    check_rtstruct(ds, p)
    check_same_series(ds, reference_datasets or [], p, "RTSTRUCT")
    rois = roi_label_map(ds)
    by_name = {} if label_map is None else {i.name.strip().lower(): i.value for i in label_map.foreground}
    values = {n: by_name.get(info.name.strip().lower(), n) for n, info in rois.items() if n != 0}
    if values and max(values.values()) > np.iinfo(np.uint16).max:
        raise InputError(f"ROI numbers up to {max(values.values())} do not fit a label image; give a label map", p)
    shape = tuple(int(s) for s in reference_shape)
    dtype = np.uint16 if max(values.values(), default=0) > 255 else np.uint8
    out = np.zeros(shape, dtype=dtype)
    for roi_contour in ds.get("ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        value = values.get(number, number)
        inside: dict[int, np.ndarray] = {}  # slice index -> 2D even-odd fill of this ROI's contours
        for contour in roi_contour.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR" or not contour.get("ContourData"):
                continue
            points = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64).reshape(-1, 3)
            idx = reference_geometry.world_to_index(lps_to_ras(points))
            k = int(round(float(np.median(idx[:, 2]))))
            if np.max(np.abs(idx[:, 2] - k)) > _PLANE_TOL_VOXELS or not 0 <= k < shape[2]:
                raise GeometryError(
                    f"a contour of ROI {number} ({rois[number].name if number in rois else '?'}) does not lie on a slice of the "
                    f"reference series (slice index {np.round(idx[:, 2].min(), 3)} to {np.round(idx[:, 2].max(), 3)}); "
                    "give the series the RTSTRUCT was drawn on",
                    p,
                )
            ii, jj = polygon(idx[:, 0], idx[:, 1], shape=shape[:2])
            plane = inside.setdefault(k, np.zeros(shape[:2], dtype=bool))
            plane[ii, jj] ^= True
        for k, plane in inside.items():
            out[:, :, k][plane] = value
    meta = {
        "source": str(p),
        "format": "rtstruct",
        "segments": {values[n]: info.name for n, info in rois.items() if n != 0},
        "segment_colors": {values[n]: list(info.color) for n, info in rois.items() if n != 0},
    }
    return Image(out[None], reference_geometry, ImageKind.LABEL, meta)
