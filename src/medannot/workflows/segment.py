"""Promptable segmentation from the shell: ``medannot segment`` and ``medannot evaluate --interactive``.

``segment``: one image, the prompts of one or more objects (a PROMPTS.json file and/or ``--point`` /
``--negative`` / ``--box`` options), an optional previous label map, one engine
(:func:`medannot.tasks.promptable.create_engine`) -> ``OUT/<case>/`` written like ``medannot annotate``'s
case folders (``labels.nii.gz`` on the input's grid, overlays, ``annotation.json`` with task ``promptable``,
the engine and every prompt in its provenance). Every prompt is checked against the image before anything
runs: a bad one is one line and nothing is written.

``evaluate --interactive``: the simulated user (:mod:`medannot.evaluation.interactive`) against truth masks
(images and label files matched by case name, or a dataset folder whose cases carry labels), one object per
label value, for every engine named; CSV, JSON, plot and HTML report
(:func:`medannot.evaluation.interactive_report.write_interactive_report`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.annotations.schema import Annotation, portable_provenance
from medannot.data import Image, ImageKind
from medannot.data.prompts import BoxPrompt, PointPrompt, Prompts, PromptSpace
from medannot.errors import GeometryError, InputError
from medannot.evaluation.interactive import InteractiveResult, simulate
from medannot.evaluation.interactive_report import InteractiveEvaluation, write_interactive_report
from medannot.evaluation.runner import find_label_files
from medannot.io import discover_inputs, read_image
from medannot.io.colour import to_grey
from medannot.tasks.promptable import PromptSegmenter, create_engine, default_engine

__all__ = ["SegmentOutcome", "evaluate_interactive", "parse_box", "parse_coordinates", "prompt_sessions", "read_prompts_file",
           "segment_image"]


def parse_coordinates(text: str, option: str = "--point") -> tuple[float, ...]:
    """``"X,Y,Z"`` (or ``"X,Y"`` for 2D images) -> floats.

    Raises:
        InputError: Not 2 or 3 comma-separated numbers.
    """
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated numbers X,Y,Z (X,Y for a 2D image)") from None
    if len(values) not in (2, 3) or not all(np.isfinite(values)):
        raise InputError(f"{option} {text!r}: expected 2 or 3 finite numbers (X,Y,Z; X,Y for a 2D image), got {len(values)}")
    return values


def parse_box(text: str) -> BoxPrompt:
    """``"X0,Y0,Z0,X1,Y1,Z1"`` (or ``"X0,Y0,X1,Y1"`` in 2D): two opposite corners.

    Raises:
        InputError: Not 4 or 6 comma-separated numbers.
    """
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise InputError(f"--box {text!r}: expected numbers X0,Y0,Z0,X1,Y1,Z1 (X0,Y0,X1,Y1 for a 2D image)") from None
    if len(values) not in (4, 6) or not all(np.isfinite(values)):
        raise InputError(f"--box {text!r}: expected 6 numbers X0,Y0,Z0,X1,Y1,Z1 (4 for a 2D image), got {len(values)}")
    half = len(values) // 2
    return BoxPrompt(tuple(values[:half]), tuple(values[half:]))


def read_prompts_file(path: str | Path) -> list[Prompts]:
    """The prompt sessions of a PROMPTS.json file: one object, a list of objects, or ``{"objects": [...]}``.

    Raises:
        InputError: A missing or unreadable file, invalid JSON, or an invalid object (naming which).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("prompts file not found; give a PROMPTS.json (see the README for its format)", p) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"prompts file is not readable JSON ({exc}); see the README for the PROMPTS.json format", p) from None
    items = data.get("objects") if isinstance(data, dict) and "objects" in data else data
    items = items if isinstance(items, list) else [items]
    if not items:
        raise InputError("empty prompt set: the prompts file lists no object", p)
    sessions = []
    for n, item in enumerate(items, 1):
        try:
            sessions.append(Prompts.from_dict(item))
        except InputError as exc:
            raise InputError(f"object {n}: {exc.reason}" if len(items) > 1 else exc.reason, p) from None
    return sessions


def prompt_sessions(file_sessions: Sequence[Prompts], points: Sequence[str] = (), negatives: Sequence[str] = (),
                    boxes: Sequence[str] = (), voxel: bool = False, label: str | None = None) -> list[Prompts]:
    """The sessions of ``segment``: those of PROMPTS.json, with the command line's points and boxes.

    Command-line prompts (world RAS mm, or voxel indices with ``voxel``) join the file's object when it holds one,
    else they form one object (named ``label`` or ``object``).

    Raises:
        InputError: Command-line prompts beside a file of several objects, or mixed coordinate spaces.
    """
    cli = Prompts(points=tuple([PointPrompt(parse_coordinates(t, "--point"), True) for t in points]
                               + [PointPrompt(parse_coordinates(t, "--negative"), False) for t in negatives]),
                  boxes=tuple(parse_box(t) for t in boxes), space=PromptSpace.VOXEL if voxel else PromptSpace.RAS,
                  label=label or "object")
    sessions = list(file_sessions)
    if cli.is_empty:
        if label and len(sessions) == 1:
            sessions[0] = Prompts(sessions[0].points, sessions[0].boxes, sessions[0].scribbles, sessions[0].space, label)
        return sessions
    if not sessions:
        return [cli]
    if len(sessions) > 1:
        raise InputError("--point / --negative / --box with a PROMPTS.json of several objects: put them in the file, "
                         "or use a file of one object")
    own = sessions[0]
    if own.space is not cli.space:
        raise InputError(f"PROMPTS.json is in {own.space.value} space and the command line in {cli.space.value}; "
                         f"{'drop' if voxel else 'add'} --voxel to match the file")
    return [Prompts(own.points + cli.points, own.boxes + cli.boxes, own.scribbles, own.space, label or own.label)]


@dataclass
class SegmentOutcome:
    """What ``segment`` wrote: the case name, its folder, ``annotation.json`` and the time per object (s)."""

    name: str
    folder: Path
    annotation: Annotation
    seconds: list[float] = field(default_factory=list)
    engine: str = ""


def _grey(image: Image) -> Image:
    if image.channels == 1:
        return image
    return Image(to_grey(image.array), image.geometry, ImageKind.INTENSITY)


def _load_image(path: str | Path) -> tuple[str, Image, dict[str, Any]]:
    items = discover_inputs(path)
    if len(items) != 1:
        raise InputError(f"segment takes one image (a file or one DICOM series), this holds {len(items)}; "
                         "give one of them", path)
    item = items[0]
    case = item.load()
    where = case.files[0] if not item.paths else item.paths[0].parent if item.source == "dicom-series" else item.paths[0]
    info: dict[str, Any] = {"path": str(where), "source": item.source}
    info.update({k: str(v) for k, v in case.identifiers.items()})
    return item.name, _grey(case.image), info


def _with_previous(sessions: list[Prompts], previous: Image, image: Image) -> tuple[list[Prompts], np.ndarray]:
    """Each session's previous mask from a label map: value n for session n, or its one value for a lone session.

    A one-slice volume (how medannot writes a 2D image's labels) is read as the plane it is.
    """
    if image.ndim == 2 and previous.ndim == 3 and previous.spatial_shape[2] == 1:
        previous = previous.as_plane()
    if not previous.same_grid(image):
        raise GeometryError(
            f"the previous mask is on another grid than the image: shape {previous.spatial_shape} vs {image.spatial_shape} "
            "(or another position / spacing / orientation); give labels written for this image (e.g. its labels.nii.gz)")
    labels = np.asarray(previous.array[0])
    values = [int(v) for v in np.unique(labels) if v != 0]
    if len(sessions) == 1 and len(values) == 1:
        value = values[0]
        return [sessions[0].with_previous(labels == value)], labels
    return [s.with_previous(labels == n) for n, s in enumerate(sessions, 1)], labels


def segment_image(image_path: str | Path, sessions: Sequence[Prompts], out_dir: str | Path, engine: str | None = None,
                  previous: str | Path | None = None, record_machine: bool = False) -> SegmentOutcome:
    """Segment the objects the prompts point at and write ``out_dir/<case>/`` (see the module docstring).

    With ``previous`` the output starts from that label map: object n replaces label value n (for a lone object
    and a label map of one value, that value); the other labels are kept.

    Raises:
        InputError: Not one image, bad prompts (points outside, zero-size box, empty set), or an engine of another
            dimensionality. GeometryError: A previous mask on another grid. ConfigError: Unknown engine.
            Nothing is written in any of these cases.
    """
    name, image, info = _load_image(image_path)
    engine_name = engine or default_engine(image.ndim)
    eng = create_engine(engine_name)
    bundle = getattr(eng, "bundle", None)
    sessions = list(sessions)
    base = None
    if previous is not None:
        prev = read_image(previous, kind=ImageKind.LABEL)
        sessions, base = _with_previous(sessions, prev, image)
    segmenter = PromptSegmenter(eng, tuple(sessions), bundle, base_labels=base)
    segmenter.check(image)  # every prompt against the image before anything runs or is written
    result = segmenter.predict(image)
    provenance = portable_provenance(segmenter.provenance(info), image_path, record_machine)
    annotation = segmenter.write_case(Path(out_dir), name, image, result, provenance)
    seconds = [v for k, v in sorted(result.timings_s.items()) if k.startswith("object_")]
    return SegmentOutcome(name, Path(out_dir) / name, annotation, seconds, eng.name)


# ----------------------------------------------------------------------------- interactive evaluation


@dataclass
class _Object:
    case: str
    group: str
    image: Image
    mask: np.ndarray


def _objects(data: str | Path, truth: str | Path | None, values: Sequence[int] | None, max_objects: int | None,
             skipped: list[str]) -> list[_Object]:
    items = discover_inputs(data)
    truths = find_label_files(truth, "truth") if truth is not None else {}
    out: list[_Object] = []
    for item in items:
        label_path = truths.get(item.name) or item.label_path
        if label_path is None:
            skipped.append(f"{item.name}: no truth label file")
            continue
        image = _grey(item.load().image)
        lab = read_image(label_path, kind=ImageKind.LABEL)
        if image.ndim == 2 and lab.ndim == 3 and lab.spatial_shape[2] == 1:
            lab = lab.as_plane()
        if lab.spatial_shape != image.spatial_shape:
            skipped.append(f"{item.name}: truth shape {lab.spatial_shape} differs from the image's {image.spatial_shape}")
            continue
        arr = np.asarray(lab.array[0])
        present = [int(v) for v in np.unique(arr) if v != 0 and (values is None or int(v) in values)]
        if not present:
            skipped.append(f"{item.name}: no object in its truth mask")
            continue
        if max_objects is not None and len(present) > max_objects:
            present = [present[int(i)] for i in np.linspace(0, len(present) - 1, max_objects).round().astype(int)]
        for v in present:
            out.append(_Object(f"{item.name}/{v}" if len(present) > 1 or values else item.name, item.name, image, arr == v))
    return out


def evaluate_interactive(data: str | Path, truth: str | Path | None, engines: Sequence[str], out: str | Path,
                         max_clicks: int = 20, first: str = "click", labels: Sequence[int] | None = None,
                         max_objects: int | None = None) -> InteractiveEvaluation:
    """Run the simulated user for every engine on every object and write the report (see the module docstring).

    Args:
        data: An image, a folder of images, or a dataset folder whose cases carry labels.
        truth: Label file or folder matched by case name (None: the dataset's own labels).
        engines: Engine names (classical or promptable bundles); none: the default engine and the classical ones.
        out: Report folder.
        max_clicks: Interactions per object (and the NoC cap).
        first: ``click`` or ``box`` for the first interaction.
        labels: Only these label values are objects (None: every non-zero value).
        max_objects: At most this many objects per case (evenly spaced label values).

    Raises:
        InputError: No image, no object, or an engine that does not fit the images' dimensionality.
        ConfigError: Unknown engine.
    """
    if max_clicks < 1:
        raise InputError(f"--clicks must be at least 1, got {max_clicks}")
    skipped: list[str] = []
    objects = _objects(data, truth, labels, max_objects, skipped)
    if not objects:
        raise InputError("no object to evaluate: no image with a non-empty truth mask was found"
                         + (f" ({'; '.join(skipped[:3])})" if skipped else ""), data)
    ndims = sorted({o.image.ndim for o in objects})
    names = list(engines) or list(dict.fromkeys([default_engine(ndims[0]), "region-growing", "random-walker", "growcut"]))
    built = {n: create_engine(n) for n in names}
    for n, e in built.items():
        nd = getattr(e, "ndim", None)
        if nd is not None and any(d != nd for d in ndims):
            raise InputError(f"engine {n!r} works on {nd}D images and the data holds {'/'.join(map(str, ndims))}D images; "
                             "choose engines that fit (growcut works on both)")
    results: list[InteractiveResult] = []
    for o in objects:
        for n, e in built.items():
            r = simulate(e, o.image, o.mask, max_clicks=max_clicks, first=first, case=o.case)
            r.engine = n
            results.append(r)
    return write_interactive_report(results, out, groups={o.case: o.group for o in objects},
                                    title=f"Interactive evaluation: {len(objects)} objects", skipped=skipped)
