"""DICOM SR measurement reports (TID 1500) with highdicom: the numbers of a DICOM SEG, for PACS and viewers.

:func:`write_dicom_sr` writes a Comprehensive 3D SR holding one *Imaging Measurement Report* (TID 1500):

- per segment of the SEG, a volumetric group (TID 1411) that references the segment (SEG SOP instance and
  segment number, and the source series) with its **volume** in mm^3 (UCUM ``mm3``, method "Sum of segmented
  voxel method for volume", DCM 126030); finding category and type are the segment's own codes;
- per lesion of a lesion label (see :mod:`medannot.annotations.measurements`), a planar group (TID 1410) whose
  region is the diameter itself (an SCOORD3D polyline of its two ends in the frame of reference, patient LPS mm)
  and whose measurement is the **longest axial diameter** (SCT 103339001 "Long axis", mm); the tracking identifier
  names the label and lesion (``"tumour lesion 2"``).

Every group and measurement names the algorithm (name, version) that made the labels; the observer is a device
(medannot). The SEG and the source images are the SR's evidence (CurrentRequestedProcedureEvidenceSequence).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot import __version__
from medannot.annotations.dicom_seg import SEG_SOP_CLASS_UID, highdicom_source
from medannot.annotations.dicom_uids import OutputUids
from medannot.annotations.labelmap import default_color
from medannot.annotations.measurements import LabelMeasurement, Measurements
from medannot.annotations.segment_codes import codes_for_label
from medannot.errors import InputError, OutputError

__all__ = ["COMPREHENSIVE_3D_SR_SOP_CLASS_UID", "SR_FILE", "segment_numbers", "write_dicom_sr"]

COMPREHENSIVE_3D_SR_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.34"
SR_FILE = "sr.dcm"

#: Procedure reported, by the source series' Modality (LOINC); other modalities get SCT "Imaging procedure".
_PROCEDURES = {"CT": ("25045-6", "LN", "CT unspecified body region"), "MR": ("25056-3", "LN", "MRI unspecified body region"),
               "PT": ("44136-0", "LN", "PET unspecified body region")}
_IMAGING_PROCEDURE = ("363679005", "SCT", "Imaging procedure")
_VOLUME_METHOD = ("126030", "DCM", "Sum of segmented voxel method for volume")


def _code(concept: tuple[str, str, str]) -> Any:
    import highdicom as hd

    value, scheme, meaning = concept
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def segment_numbers(seg: Any, measurements: Measurements) -> dict[int, LabelMeasurement]:
    """SEG segment number -> the measured label it holds.

    :func:`medannot.annotations.dicom_seg.write_dicom_seg` numbers the segments 1..N in label-value order over
    the label map's labels and the values present; so do the measurements. The segment labels are checked.
    A SEG of nothing at all holds one empty placeholder segment: it is measured as volume 0.

    Raises:
        InputError: The SEG's segments are not the measured labels (another SEG, or other labels).
    """
    described = {int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence}
    labels = list(measurements.labels)
    if not labels and set(described) == {1}:  # nothing labelled: write_dicom_seg describes one empty placeholder segment
        return {1: LabelMeasurement(1, described[1], default_color(1), 0, 0.0)}
    mapping = dict(enumerate(labels, start=1))
    if set(described) != set(mapping) or any(described[n] != m.name[:64] for n, m in mapping.items()):
        raise InputError(f"the DICOM SEG's segments {described} are not the measured labels "
                         f"{ {n: m.name for n, m in mapping.items()} }; write the SR from the SEG of the same labels")
    return mapping


def _lps(point_ras: Sequence[float]) -> list[float]:
    x, y, z = (float(v) for v in point_ras)
    return [-x, -y, z]


def _groups(seg: Any, measurements: Measurements, algorithm: Any, series_uid: str, uids: OutputUids) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    groups: list[Any] = []
    frame_of_reference = str(seg.FrameOfReferenceUID)
    for number, label in segment_numbers(seg, measurements).items():
        concept = codes_for_label(label.name)
        category, kind = _code(concept.category), _code(concept.type)
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.child("segment", number), identifier=f"{label.name} (segment {number})"[:64]),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=SEG_SOP_CLASS_UID, sop_instance_uid=str(seg.SOPInstanceUID), segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
            ),
            finding_type=kind,
            finding_category=category,
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=codes.SCT.Volume, value=float(label.volume_mm3), unit=codes.UCUM.CubicMillimeter,
                                            method=_code(_VOLUME_METHOD), algorithm_id=algorithm)],
        ))
        for lesion in label.lesions or ():
            ends = np.array([_lps(p) for p in lesion.endpoints_mm])
            single = lesion.long_axis_mm == 0.0
            region = hd.sr.ImageRegion3D(
                graphic_type=hd.sr.GraphicTypeValues3D.POINT if single else hd.sr.GraphicTypeValues3D.POLYLINE,
                graphic_data=ends[:1] if single else ends, frame_of_reference_uid=frame_of_reference,
            )
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.child("lesion", number, lesion.id),
                                                             identifier=f"{label.name} lesion {lesion.id}"[:64]),
                referenced_region=region,
                finding_type=kind,
                finding_category=category,
                algorithm_id=algorithm,
                measurements=[hd.sr.Measurement(name=codes.SCT.LongAxis, value=float(lesion.long_axis_mm), unit=codes.UCUM.Millimeter,
                                                algorithm_id=algorithm)],
            ))
    return groups


def write_dicom_sr(
    seg: Any,
    source_datasets: Sequence[Any],
    measurements: Measurements,
    algorithm_name: str,
    algorithm_version: str,
    path: str | Path,
    *,
    series_number: int = 901,
    series_description: str = "medannot measurements",
    uids: OutputUids | None = None,
    device_uid: str | None = None,
) -> Path:
    """Write the TID 1500 measurement report of ``measurements`` for the DICOM SEG ``seg``; atomically.

    Args:
        seg: The DICOM SEG (pydicom dataset, or its file) made by :func:`~medannot.annotations.dicom_seg.write_dicom_seg`
            from the same labels.
        source_datasets: The source series' headers (the SEG's evidence; pixel data not needed).
        measurements: :func:`medannot.annotations.measurements.measure` of the labels (3D).
        algorithm_name: Model or method name (AlgorithmIdentification).
        algorithm_version: Its version.
        path: Output ``.dcm`` file.
        series_number: SeriesNumber of the new SR series.
        series_description: SeriesDescription of the new SR series.
        uids: The SR's SeriesInstanceUID and SOPInstanceUID (:func:`medannot.annotations.dicom_uids.output_uids`);
            its tracking identifiers are derived from them. None draws new ones.
        device_uid: The observer device's UID (the model's); None draws one.

    Returns:
        The written path.

    Raises:
        InputError: Not a SEG, 2D measurements, segments that are not the measured labels, or source headers
            highdicom refuses.
        OutputError: The file cannot be written.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from medannot.io.atomic import atomic_path

    if isinstance(seg, (str, Path)):
        seg = pydicom.dcmread(seg)
    if str(seg.get("SOPClassUID", "")) != SEG_SOP_CLASS_UID:
        raise InputError(f"a DICOM SR measurement report needs the DICOM SEG it measures; got SOP class {seg.get('SOPClassUID', '?')}")
    if measurements.ndim != 3:
        raise InputError("a DICOM SR measurement report needs 3D labels on a DICOM series; this case is 2D")
    if not source_datasets:
        raise InputError("a DICOM SR measurement report needs the source series' headers; none given")
    source = highdicom_source(source_datasets[0])
    series_uid = str(source.SeriesInstanceUID)
    if uids is None:
        uids = OutputUids(str(generate_uid()), str(generate_uid()), deterministic=False)
    version = algorithm_version or __version__
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name[:64], version=version[:64])
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid or generate_uid(), name=algorithm_name[:64], manufacturer_name="medannot", model_name=f"{algorithm_name} {version}"[:64],
        ),
    )
    procedure = _code(_PROCEDURES.get(str(source.get("Modality", "")).upper(), _IMAGING_PROCEDURE))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
            report = hd.sr.MeasurementReport(
                observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                procedure_reported=procedure,
                imaging_measurements=_groups(seg, measurements, algorithm, series_uid, uids),
            )
            sr = hd.sr.Comprehensive3DSR(
                evidence=[seg, source, *source_datasets[1:]],
                content=report[0],
                series_instance_uid=uids.series,
                series_number=series_number,
                sop_instance_uid=uids.instance,
                instance_number=1,
                manufacturer="medannot",
                series_description=series_description[:64],
                is_complete=True,
                software_versions=f"medannot {__version__}",
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"cannot build the DICOM SR from these source images: {' '.join(str(exc).split())}") from None
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            sr.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the DICOM SR ({exc.strerror or exc})", out) from exc
    return out
