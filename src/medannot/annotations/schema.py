"""One annotation schema per case: label summaries, instances and provenance.

The schema is what ``annotation.json`` holds. Sizes are in mm^3 for 3D images
and mm^2 for 2D images; boxes are given both in voxel indices (inclusive
``[min, max]`` per array axis) and in world RAS mm (the box's corner voxel
centres mapped through the affine, then the axis-aligned world extent).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from medannot import __version__

SCHEMA_VERSION = "1.0"


@dataclass
class Provenance:
    """Who or what made an annotation, from what, when, with which settings.

    Args:
        source: ``"model"`` for a trained bundle, ``"classical"`` for a training-free method.
        name: Bundle or method name.
        version: Bundle version (empty for classical methods).
        sha256: SHA-256 of the bundle weights (empty for classical methods).
        parameters: Every setting that changes the output (TTA, thresholds, seeds...).
        input: Path of the input and identifiers (DICOM UIDs) if any.
    """

    source: str
    name: str
    version: str = ""
    sha256: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    medannot_version: str = __version__
    host: str = field(default_factory=platform.node)
    user: str = field(default_factory=lambda: _safe_user())


def _safe_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


@dataclass
class Instance:
    """One connected object of a label.

    Args:
        id: Instance number, 1-based, unique within the case (it is the value in ``instances.nii.gz``/``.png``).
        label: Label value the instance belongs to.
        voxels: Number of voxels (pixels in 2D).
        size: Volume in mm^3 (3D) or area in mm^2 (2D).
        bbox_voxels: ``[[min, max], ...]`` inclusive indices per array axis.
        bbox_mm: ``[[min, max], ...]`` world RAS extent of the box's voxel centres per world axis.
        centroid_mm: World RAS position of the centroid.
        score: Mean model probability of the label inside the instance (None for classical methods).
    """

    id: int
    label: int
    voxels: int
    size: float
    bbox_voxels: list[list[int]]
    bbox_mm: list[list[float]]
    centroid_mm: list[float]
    score: float | None = None


@dataclass
class LabelSummary:
    """Summary of one label value in a case.

    Args:
        value: Label value in the label map.
        name: Human name from the label map.
        color: RGB 0-255.
        voxels: Number of voxels (pixels in 2D) with this value; 0 when the label is absent.
        size: ``voxels`` times the voxel volume: mm^3 (3D) or mm^2 (2D).
        instance_count: Number of connected components (instances) of the label.
    """

    value: int
    name: str
    color: list[int]
    voxels: int
    size: float
    instance_count: int


@dataclass
class Annotation:
    """Everything ``annotation.json`` records for one case."""

    case: str
    ndim: int
    shape: list[int]
    spacing: list[float]
    affine: list[list[float]]
    size_unit: str
    labels: list[LabelSummary]
    instances: list[Instance]
    provenance: Provenance
    files: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)
