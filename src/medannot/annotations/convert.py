"""``medannot convert``: label maps between NIfTI, DICOM SEG and RTSTRUCT.

The source format is recognised from the file (``.nii``/``.nii.gz``; a DICOM file's SOP class).
The target format comes from ``to`` or the destination name: ``.nii``/``.nii.gz`` is NIfTI,
``.dcm`` is DICOM SEG unless ``to="rtstruct"``.

A reference DICOM series (the one the labels belong to) is required to write SEG or RTSTRUCT
(they reference its instances) and to read an RTSTRUCT (contours are rasterised on its grid);
reading a SEG with it puts the labels on the full series grid, without it on the SEG's own frames.
NIfTI labels on the series' voxels in another axis order (e.g. reoriented to RAS) are moved
onto the series grid exactly; labels on another grid are refused, never resampled silently.

Label names come from ``label_map`` (``--labels "1=liver,2=tumour"`` or a bundle's ``--model``),
else from the source (segment labels, ROI names), else ``label_<v>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medannot.annotations.dicom_outputs import OutputFormat
from medannot.annotations.labelmap import LabelMap
from medannot.data.image import Image
from medannot.errors import ConfigError, InputError

__all__ = ["convert_labels", "detect_format", "parse_label_spec", "target_format"]

_NIFTI = (".nii", ".nii.gz")


def parse_label_spec(text: str | None) -> LabelMap | None:
    """``"1=liver,2=tumour"`` (or a JSON object ``{"1": "liver"}``) -> :class:`LabelMap`; empty -> None (:meth:`LabelMap.from_text`).

    Raises:
        ConfigError: If an entry is not ``value=name`` with an integer value.
    """
    return LabelMap.from_text(text)


def detect_format(path: str | Path) -> OutputFormat:
    """Format of an existing label file: NIfTI by suffix, DICOM SEG / RTSTRUCT by SOP class.

    Raises:
        InputError: Missing file, or neither NIfTI nor a SEG / RTSTRUCT.
    """
    from medannot.annotations.dicom_grid import dcmread_object
    from medannot.annotations.dicom_seg import SEG_SOP_CLASS_UID
    from medannot.annotations.rtstruct import RTSTRUCT_SOP_CLASS_UID

    p = Path(path)
    if not p.is_file():
        raise InputError("file not found; check the path", p)
    if p.name.lower().endswith(_NIFTI):
        return OutputFormat.NIFTI
    try:
        ds = dcmread_object(p, stop_before_pixels=True)
    except InputError:
        raise InputError("expected NIfTI labels (.nii/.nii.gz), a DICOM SEG or an RTSTRUCT; this is none of them", p) from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop == SEG_SOP_CLASS_UID:
        return OutputFormat.DICOM_SEG
    if sop == RTSTRUCT_SOP_CLASS_UID:
        return OutputFormat.RTSTRUCT
    raise InputError(f"DICOM file is neither a SEG nor an RTSTRUCT (Modality {ds.get('Modality', '?')}); nothing to convert", p)


def target_format(path: str | Path, to: str | None = None) -> OutputFormat:
    """Format to write: ``to`` when given, else NIfTI for ``.nii``/``.nii.gz`` and DICOM SEG for ``.dcm``.

    Raises:
        ConfigError: Unknown ``to``, or a destination name that says nothing.
    """
    if to:
        fmt = next((f for f in OutputFormat if f.value == to.strip().lower() and f.is_label_map), None)
        if fmt is None:
            valid = ", ".join(f.value for f in OutputFormat if f.is_label_map)
            raise ConfigError(f"unknown target format {to!r}; expected one of: {valid}")
        return fmt
    name = Path(path).name.lower()
    if name.endswith(_NIFTI):
        return OutputFormat.NIFTI
    if name.endswith(".dcm"):
        return OutputFormat.DICOM_SEG
    raise ConfigError(f"cannot tell the target format from {Path(path).name!r}; name it .nii.gz or .dcm, or pass --to")


def _algorithm_of(path: Path, fmt: OutputFormat) -> tuple[str, str, str] | None:
    """(type, name, version) recorded in a SEG's first segment or an RTSTRUCT's first ROI, if any."""
    from medannot.annotations.dicom_grid import dcmread_object

    ds = dcmread_object(path, stop_before_pixels=True)
    if fmt is OutputFormat.DICOM_SEG and ds.get("SegmentSequence"):
        item = ds.SegmentSequence[0]
        algo = item.get("SegmentationAlgorithmIdentificationSequence")
        if algo:
            return str(item.SegmentAlgorithmType), str(algo[0].AlgorithmName), str(algo[0].AlgorithmVersion)
        return str(item.get("SegmentAlgorithmType", "MANUAL")), "", ""
    if fmt is OutputFormat.RTSTRUCT and ds.get("StructureSetROISequence"):
        roi = ds.StructureSetROISequence[0]
        name, _, version = str(roi.get("ROIGenerationDescription", "") or "").partition(" ")
        return str(roi.get("ROIGenerationAlgorithm", "") or "MANUAL"), name, version
    return None


def convert_labels(
    src: str | Path,
    dst: str | Path,
    reference: str | Path | None = None,
    label_map: LabelMap | None = None,
    to: str | None = None,
    algorithm: tuple[str, str, str] | None = None,
) -> tuple[Path, OutputFormat, OutputFormat]:
    """Convert a label file between NIfTI, DICOM SEG and RTSTRUCT.

    Args:
        src: NIfTI labels, a DICOM SEG or an RTSTRUCT.
        dst: Output file.
        reference: The DICOM series folder the labels belong to (required to write SEG/RTSTRUCT and to read RTSTRUCT).
        label_map: Names and colours (overrides the source's names; maps DICOM segment/ROI names to values).
        to: Target format (``nifti``, ``dicom-seg``, ``rtstruct``); default from ``dst``'s suffix.
        algorithm: ``(type, name, version)`` written into SEG/RTSTRUCT; default: the source DICOM's own, else
            ``("MANUAL", "", "")`` (medannot does not claim a model made labels it only converts).

    Returns:
        (written path, source format, target format).

    Raises:
        InputError: Unreadable source, missing reference, same source and target format.
        GeometryError: Labels not on the reference series' voxels.
        ConfigError: Unknown target format.
    """
    from medannot import __version__
    from medannot.annotations.dicom_grid import load_source_datasets, onto_grid, series_grid
    from medannot.io import read_image, write_image

    src, dst = Path(src), Path(dst)
    source_fmt, target_fmt = detect_format(src), target_format(dst, to)
    if source_fmt is target_fmt:
        raise InputError(f"source and target are both {source_fmt.value}; nothing to convert", src)
    if reference is None and (target_fmt.needs_dicom or source_fmt is OutputFormat.RTSTRUCT):
        why = "write a DICOM SEG or RTSTRUCT (they reference its images)" if target_fmt.needs_dicom else "rasterise RTSTRUCT contours"
        raise InputError(f"--reference SERIES_DIR (the DICOM series the labels belong to) is needed to {why}", src)
    sources: list[Any] = load_source_datasets(Path(reference)) if reference is not None else []
    grid = series_grid(sources) if sources else None

    labels: Image
    if source_fmt is OutputFormat.NIFTI:
        labels = read_image(src, kind="label")
    elif source_fmt is OutputFormat.DICOM_SEG:
        from medannot.annotations.dicom_seg import read_dicom_seg

        labels = read_dicom_seg(src, grid[0] if grid else None, grid[1] if grid else None, label_map=label_map, reference_datasets=sources)
    elif grid is not None:
        from medannot.annotations.rtstruct import read_rtstruct

        labels = read_rtstruct(src, grid[0], grid[1], label_map=label_map, reference_datasets=sources)
    if label_map is None:
        names = labels.meta.get("segments")
        if names:
            colors = labels.meta.get("segment_colors", {})
            label_map = LabelMap.parse({v: {"name": n, "color": colors.get(v)} if v in colors else n for v, n in names.items()})
    if grid is not None:
        labels = onto_grid(labels, grid[0], grid[1], what=f"labels of {src.name}")

    if target_fmt is OutputFormat.NIFTI:
        return write_image(labels, dst), source_fmt, target_fmt
    if algorithm is None:
        algorithm = (_algorithm_of(src, source_fmt) if source_fmt.needs_dicom else None) or ("MANUAL", "", "")
    kind, name, version = algorithm
    name = name or "medannot convert"
    if target_fmt is OutputFormat.DICOM_SEG:
        from medannot.annotations.dicom_seg import write_dicom_seg

        path = write_dicom_seg(labels, sources, label_map, name, version or __version__, dst, algorithm_type=kind)
    else:
        from medannot.annotations.rtstruct import write_rtstruct

        path = write_rtstruct(labels, sources, label_map, name, version or __version__, dst, algorithm_type=kind)
    return path, source_fmt, target_fmt
