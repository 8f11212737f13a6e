"""One annotation schema per case: label summaries, instances, boxes and provenance.

The schema is what ``annotation.json`` holds. Sizes are in mm^3 for 3D images
and mm^2 for 2D images.

IDs tie the parts together:

- ``labels[].value`` is a label value of the label map (0 = background) and ``labels[].name`` its name;
- ``instances[].id`` (1..N, unique in the case) is the value in ``instances.nii.gz``; ``instances[].label``
  is a label value and ``instances[].label_name`` its name;
- ``boxes[].id`` (1..M, unique in the case); ``boxes[].label`` / ``boxes[].label_name`` as above;
  ``boxes[].instance_id`` is the instance the box bounds (``source == "instance"``, every segmented
  instance has one box) or None for a box a detector found (``source == "detector"``).

Every instance and box carries a ``score`` (mean model probability of its label inside the
instance; the detector's class probability for a detector box; None for training-free methods)
and the case's ``provenance`` says which model or method, version and settings made them.

Coordinates: ``instances[].bbox_voxels`` are inclusive voxel indices ``[[min, max], ...]`` per array
axis and ``bbox_mm`` the world extent of those voxel *centres*. ``boxes[].box_voxels`` are continuous
``[min_0, .., max_0, ..]`` in array axis order with an exclusive max corner (voxel ``i`` spans
``[i, i + 1)``, MONAI ``StandardMode``), and ``boxes[].box_mm`` the world RAS extent of the box's
*edges* ``[[min, max], ...]`` per world axis (see :mod:`medannot.data.boxes`). For 2D cases
``boxes.coco.json`` holds the same boxes in COCO form (``x`` = column).

:func:`validate_annotation` checks an ``annotation.json`` dict against these dataclasses (pydantic)
and the ID rules above; :func:`annotation_json_schema` gives the JSON schema.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import os
import platform
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from medannot import __version__
from medannot.data.task import Task

SCHEMA_VERSION = "1.0"


@dataclass
class Provenance:
    """Who or what made an annotation, from what, when, with which settings.

    Args:
        source: ``"model"`` for a trained bundle, ``"classical"`` for a training-free method.
        name: Bundle or method name.
        task: What was made (:class:`~medannot.data.Task`): ``medannot evaluate`` picks its evaluation by it.
        version: Bundle version (empty for classical methods).
        sha256: SHA-256 of the bundle weights (empty for classical methods).
        parameters: Every setting that changes the output (TTA, thresholds, seeds...).
        input: Path of the input and identifiers (DICOM UIDs) if any. ``medannot annotate`` writes the path relative
            to the INPUT it was given (``root``, kept only when given as a relative path), never an absolute path of
            the machine (:func:`portable_provenance`).
        host: The computer's name, recorded only when asked (``annotate --record-machine``); "" otherwise.
        user: The user's login name, likewise.
    """

    source: str
    name: str
    version: str = ""
    sha256: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    task: Task = Task.SEGMENTATION
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    medannot_version: str = __version__
    host: str = ""
    user: str = ""


def machine_identity() -> tuple[str, str]:
    """``(host name, user name)`` of this process ("" where the system does not say)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return platform.node(), user


_URL_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def portable_path(path: str | Path, root: str | Path | None = None) -> str:
    """A path as ``annotation.json`` records it: relative to ``root`` (the input given), else just its name.

    A URL keeps its form without any ``user:password@``. Empty text stays empty.

    Args:
        path: A file or folder path, or a URL.
        root: The INPUT the run was given (a file or a folder).

    Returns:
        ``"ct_01.nii.gz"``, ``"patient7/series3"`` (POSIX separators), or the URL.
    """
    text = str(path)
    if not text or "://" in text:
        return _URL_USERINFO.sub(r"\1", text)
    p = Path(text)
    if root is not None:
        base = Path(root)
        base = base.parent if base.is_file() else base
        try:
            rel = p.resolve().relative_to(base.resolve())
        except (ValueError, OSError):
            rel = None
        if rel is not None and rel.parts:
            return rel.as_posix()
    return p.name


def _portable(value: Any, root: str | Path | None) -> Any:
    if isinstance(value, dict):
        return {k: _portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_portable(v, root) for v in value)
    if isinstance(value, str) and (os.path.isabs(value) or "://" in value):
        return portable_path(value, root)
    return value


def portable_provenance(provenance: Provenance, root: str | Path | None = None, record_machine: bool = False) -> Provenance:
    """``provenance`` without absolute paths of this machine, and with host and user only when ``record_machine``.

    The input path becomes relative to ``root`` (the INPUT given; its own name for a single file), any other
    absolute path among the parameters and input (e.g. a bundle folder) its last component, URLs lose their
    credentials. ``input["root"]`` keeps ``root`` when it was given as a relative path (so tools run from the same
    folder find the input again), never an absolute one.
    """
    info = dict(provenance.input)
    if "path" in info:
        info["path"] = portable_path(info["path"], root)
    info = {k: v if k == "path" else _portable(v, root) for k, v in info.items()}
    if root is not None and "://" not in str(root) and not os.path.isabs(str(root)):
        base = Path(root).parent if Path(root).is_file() else Path(root)
        info["root"] = base.as_posix()
    host, user = machine_identity() if record_machine else ("", "")
    return replace(provenance, input=info, parameters=_portable(dict(provenance.parameters), root), host=host, user=user)


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
        label_name: Name of ``label`` in the label map.
    """

    id: int
    label: int
    voxels: int
    size: float
    bbox_voxels: list[list[int]]
    bbox_mm: list[list[float]]
    centroid_mm: list[float]
    score: float | None = None
    label_name: str = ""


@dataclass
class Box:
    """One box: an object a detector found, or the bounding box of a segmented instance.

    Args:
        id: Box number, 1-based, unique within the case.
        label: Label value (object class) the box belongs to.
        label_name: Name of ``label`` in the label map.
        score: Detector class probability, or the instance's score; None for training-free methods.
        box_voxels: ``[min_0, .., min_{n-1}, max_0, .., max_{n-1}]`` continuous voxel coordinates in array
            axis order, max exclusive.
        box_mm: ``[[min, max], ...]`` world RAS extent (mm) of the box edges per world axis.
        center_mm: World RAS centre of the box (mm).
        source: ``"detector"`` or ``"instance"`` (derived from a segmented instance).
        instance_id: The instance this box bounds (``source == "instance"``), else None.
    """

    id: int
    label: int
    label_name: str
    score: float | None
    box_voxels: list[float]
    box_mm: list[list[float]]
    center_mm: list[float]
    source: str
    instance_id: int | None = None


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
        box_count: Number of boxes of the label.
    """

    value: int
    name: str
    color: list[int]
    voxels: int
    size: float
    instance_count: int
    box_count: int = 0


@dataclass
class Classification:
    """The image-level class a classification model gave the case.

    Args:
        label: Predicted class name (arg-max of ``probabilities``).
        index: Its class index in the model.
        probability: Its probability.
        probabilities: Class name -> probability (sum 1).
        calibrated: True when temperature scaling (fitted on validation data) was applied.
        temperature: The temperature used (1.0 when not calibrated).
    """

    label: str
    index: int
    probability: float
    probabilities: dict[str, float]
    calibrated: bool
    temperature: float = 1.0


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
    boxes: list[Box] = field(default_factory=list)
    classification: Classification | None = None  # image-level class (classification models)
    explanations: dict[str, Any] = field(default_factory=dict)  # saliency / uncertainty summaries (medannot.explain)
    files: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


def annotation_json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12, from pydantic) that ``annotation.json`` follows."""
    from pydantic import TypeAdapter

    return TypeAdapter(Annotation).json_schema()


def validate_annotation(data: dict[str, Any], path: str | None = None) -> Annotation:
    """Check an ``annotation.json`` dict: field types (pydantic) and the ID rules of the module docstring.

    Args:
        data: The parsed JSON.
        path: The file, named in the error.

    Returns:
        The :class:`Annotation`.

    Raises:
        InputError: Naming the first problem (a field, or an ID that does not match).
    """
    from pydantic import TypeAdapter, ValidationError

    from medannot.errors import InputError

    try:
        ann = TypeAdapter(Annotation).validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise InputError(f"annotation.json does not follow the schema: {loc}: {err['msg']} ({exc.error_count()} error(s))", path) from None
    problems = _id_problems(ann)
    if problems:
        raise InputError(f"annotation.json IDs are inconsistent: {problems[0]} ({len(problems)} problem(s))", path)
    return ann


def _id_problems(ann: Annotation) -> list[str]:
    out: list[str] = []
    names = {lab.value: lab.name for lab in ann.labels}
    inst_ids = [i.id for i in ann.instances]
    box_ids = [b.id for b in ann.boxes]
    if len(set(inst_ids)) != len(inst_ids):
        out.append("instance ids are not unique")
    if len(set(box_ids)) != len(box_ids):
        out.append("box ids are not unique")
    by_id = {i.id: i for i in ann.instances}
    for inst in ann.instances:
        if inst.label not in names:
            out.append(f"instance {inst.id} has label {inst.label}, which is not in labels")
        elif inst.label_name and inst.label_name != names[inst.label]:
            out.append(f"instance {inst.id} is named {inst.label_name!r} but label {inst.label} is {names[inst.label]!r}")
    for box in ann.boxes:
        if len(box.box_voxels) != 2 * ann.ndim or len(box.box_mm) != ann.ndim:
            out.append(f"box {box.id} does not have {2 * ann.ndim} voxel coordinates and {ann.ndim} world ranges")
        if box.label not in names:
            out.append(f"box {box.id} has label {box.label}, which is not in labels")
        elif box.label_name != names[box.label]:
            out.append(f"box {box.id} is named {box.label_name!r} but label {box.label} is {names[box.label]!r}")
        if box.source not in ("detector", "instance"):
            out.append(f"box {box.id} has source {box.source!r}; expected 'detector' or 'instance'")
        if box.instance_id is not None:
            bounded = by_id.get(box.instance_id)
            if bounded is None:
                out.append(f"box {box.id} refers to instance {box.instance_id}, which does not exist")
            elif bounded.label != box.label:
                out.append(f"box {box.id} has label {box.label} but its instance {bounded.id} has label {bounded.label}")
        elif box.source == "instance":
            out.append(f"box {box.id} comes from an instance but names none")
        if box.score is not None and not 0.0 <= box.score <= 1.0:
            out.append(f"box {box.id} has score {box.score} outside [0, 1]")
    for lab in ann.labels:
        n = sum(1 for b in ann.boxes if b.label == lab.value)
        if lab.box_count != n:
            out.append(f"label {lab.value} ({lab.name}) says box_count {lab.box_count} but {n} box(es) have that label")
    c = ann.classification
    if c is not None:
        if c.label not in c.probabilities:
            out.append(f"classification label {c.label!r} is not among its probabilities {sorted(c.probabilities)}")
        elif abs(c.probabilities[c.label] - c.probability) > 1e-5:
            out.append(f"classification probability {c.probability} differs from probabilities[{c.label!r}]")
        if c.probabilities and abs(sum(c.probabilities.values()) - 1.0) > 1e-3:
            out.append(f"classification probabilities sum to {sum(c.probabilities.values()):.4f}, not 1")
    return out
