"""The promptable task: the mask of the one object a person points at (clicks, a box, scribbles, a previous mask).

- config: :class:`~medannot.training.promptable_training.PromptableConfig`;
- networks: those registered with task ``promptable`` (``promptable-unet``, :mod:`medannot.models.promptable`);
- training: :class:`~medannot.training.promptable_training.PromptableTraining` in the one loop (simulated
  iterative prompting, the network's own predictions as previous masks);
- engines: :func:`create_engine` turns a name into a :class:`~medannot.data.prompts.PromptableEngine`: a
  classical engine (``region-growing``, ``random-walker``, ``growcut``) or a promptable bundle (a bundled name
  such as ``promptable-2d``, or a bundle folder); :func:`list_engines` names them;
- predictor: :class:`PromptSegmenter` (the prompts of one or more objects -> a label map, one value per object);
- case writer: :func:`medannot.annotations.writer.write_case` (labels on the input's grid, overlays,
  ``annotation.json`` whose provenance names the engine and holds the prompts);
- evaluation: of written case folders, the overlap metrics of segmentation
  (:func:`medannot.evaluation.evaluate_paths`); the simulated-user evaluation is
  :func:`medannot.workflows.segment.evaluate_interactive` (``medannot evaluate --interactive``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.results import ExtraWriter, Result, SegmentationResult
from medannot.annotations.schema import Annotation, Provenance
from medannot.annotations.writer import write_case
from medannot.classical.interactive import create_engine as create_classical_engine
from medannot.classical.interactive import list_engines as list_classical_engines
from medannot.data import Image, ImageKind, Task
from medannot.data.prompts import PromptableEngine, Prompts
from medannot.errors import ConfigError, InputError, ModelError
from medannot.evaluation.results import EvaluationResult
from medannot.evaluation.runner import evaluate_paths
from medannot.inference.promptable import NetworkEngine, PromptableSettings
from medannot.models.bundle import Bundle, list_bundles
from medannot.tasks.base import EvaluateOptions, PredictOptions
from medannot.tasks.registry import register_task
from medannot.training.config import LoopConfig
from medannot.training.promptable_training import HELD_OUT_CSV, PromptableConfig, PromptableTraining

__all__ = ["PromptSegmenter", "PromptableTask", "create_engine", "default_engine", "engine_from_bundle", "list_engines"]


def engine_from_bundle(bundle: Bundle) -> NetworkEngine:
    """The :class:`~medannot.inference.promptable.NetworkEngine` of a promptable bundle.

    Raises:
        ModelError: A bundle of another task, or an invalid ``promptable`` section.
    """
    if bundle.task is not Task.PROMPTABLE:
        raise ModelError(f"model {bundle.name!r} is a {bundle.task} model, not a promptable one; "
                         f"choose one of: {', '.join(list_engines())}")
    settings = PromptableSettings.parse(bundle.spec.promptable, f"{bundle.name}/bundle.json")
    return NetworkEngine(bundle.build_network(), settings, name=bundle.name, bundle=bundle)


def _promptable_bundles() -> list[Bundle]:
    return [b for b in list_bundles() if b.task is Task.PROMPTABLE]


def list_engines(ndim: int | None = None) -> list[str]:
    """Engine names: the classical engines, then the bundled promptable models (of ``ndim`` dimensions, when given)."""
    return list_classical_engines() + [b.name for b in _promptable_bundles() if ndim is None or b.spatial_dims == ndim]


_ENGINE_CACHE: dict[str, PromptableEngine] = {}


def create_engine(name: str | Path, cache: bool = True, **params: Any) -> PromptableEngine:
    """An engine by name: the one function the CLI, the server's Smart tool and the evaluation use.

    Args:
        name: A classical engine (``region-growing``, ``random-walker``, ``growcut``), a bundled promptable model
            (``promptable-2d``) or a promptable bundle folder.
        cache: Reuse an engine already built for this name (a network stays loaded and warm); ignored with params.
        **params: Fields of a classical engine (e.g. ``multiplier=2.0``); a network takes none.

    Returns:
        An object with ``name`` and ``segment(image, prompts) -> bool mask``.

    Raises:
        ConfigError: Unknown name (the valid ones are listed) or parameters a network does not take.
        ModelError: A corrupt bundle or one of another task.
    """
    key = str(name)
    if key in list_classical_engines():
        if params or not cache:
            return create_classical_engine(key, **params)
        return _ENGINE_CACHE.setdefault(key, create_classical_engine(key))
    if params:
        raise ConfigError(f"engine {key!r} is a network and takes no parameters, got {sorted(params)}")
    if cache and key in _ENGINE_CACHE:
        return _ENGINE_CACHE[key]
    try:
        bundle = Bundle.load(key)
    except ModelError as exc:
        if Path(key).is_dir():
            raise
        raise ConfigError(f"unknown engine {key!r}; choose one of: {', '.join(list_engines())}, or a promptable bundle folder") from exc
    engine = engine_from_bundle(bundle)
    if cache:
        _ENGINE_CACHE[key] = engine
    return engine


#: The engine used when no bundled network measured better: the classical engine with the fewest clicks on the
#: held-out real objects (docs/promptable_experiments.md: GrowCut NoC@85 2.24 in 2D, random walker 3.76, region
#: growing 8.00).
CLASSICAL_DEFAULT = "growcut"


def held_out_means(bundle: Bundle) -> dict[str, dict[str, float]]:
    """Mean NoC@85 (``noc85``) and Dice after one interaction (``dice1``) per engine on the bundle's own held-out run
    (its ``held_out_interactive.csv``: the network and the classical engines on the same real objects); empty when
    the bundle has no such file."""
    import csv

    path = bundle.path / HELD_OUT_CSV if bundle.path is not None else None
    if path is None or not path.is_file():
        return {}
    per: dict[str, list[tuple[float, float]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            per.setdefault(row["engine"], []).append((float(row["noc85"]), float(row["dice_1"])))
    return {k: {"noc85": float(np.mean([v[0] for v in rows])), "dice1": float(np.mean([v[1] for v in rows]))}
            for k, rows in per.items()}


def held_out_noc85(bundle: Bundle) -> dict[str, float]:
    """Mean NoC@85 per engine on the bundle's own held-out run (see :func:`held_out_means`)."""
    return {k: v["noc85"] for k, v in held_out_means(bundle).items()}


def default_engine(ndim: int) -> str:
    """The engine used when none is named.

    A bundled promptable network of that dimensionality when, on its held-out real objects, it needed fewer clicks
    (mean NoC@85) than every classical engine measured in the same run and its first mask was as good (mean Dice after
    one interaction at least each of theirs); else :data:`CLASSICAL_DEFAULT`. The Dice@1 condition matters where every
    engine mostly fails to reach 0.85 and NoC@85 sits at its cap: the shipped ``promptable-3d`` 0.1.0 needs 19.67
    clicks against GrowCut's 20 on the Colin27 deep grey nuclei (it reaches 0.85 on one of six) but its first mask is
    worse (Dice 0.36 against 0.55), so GrowCut stays the 3D default; ``promptable-2d`` 0.2.0 needs more clicks than
    GrowCut (2.52 against 2.24). Both are used when named.
    """
    for b in _promptable_bundles():
        if b.spatial_dims != ndim:
            continue
        means = held_out_means(b)
        mine = means.get(b.name)
        others = [v for k, v in means.items() if k != b.name]
        if mine and others and all(mine["noc85"] < o["noc85"] and mine["dice1"] >= o["dice1"] for o in others):
            return b.name
    return CLASSICAL_DEFAULT


def engine_provenance(engine: PromptableEngine) -> dict[str, Any]:
    """What made a promptable mask: the engine's name and settings (a network's bundle version and weights hash)."""
    describe = getattr(engine, "describe", None)
    return dict(describe()) if callable(describe) else {"engine": engine.name}


@dataclass
class PromptSegmenter:
    """Prompt sessions (one per object) -> a label map, through one engine.

    Args:
        engine: The engine (:func:`create_engine`).
        sessions: The prompts of each object, in label order (value 1, 2, ...); a later object overwrites an
            earlier one where they overlap.
        bundle: The bundle behind a network engine (for provenance).
        base_labels: A previous label map the result starts from (object n replaces value n; see
            :func:`medannot.workflows.segment.segment_image`); None starts from nothing.
    """

    engine: PromptableEngine
    sessions: Sequence[Prompts] = ()
    bundle: Bundle | None = None
    base_labels: np.ndarray | None = None
    task: Task = Task.PROMPTABLE
    label_map: LabelMap = field(default_factory=LabelMap)

    def with_sessions(self, sessions: Sequence[Prompts]) -> PromptSegmenter:
        """A copy that segments these prompt sessions."""
        return PromptSegmenter(self.engine, tuple(sessions), self.bundle, self.base_labels)

    def check(self, image: Image) -> None:
        """Validate every session against ``image`` before anything runs or is written.

        Raises:
            InputError: No session, or bad prompts (one line naming the object). GeometryError: a previous mask
                on another grid.
        """
        if not self.sessions:
            raise InputError("empty prompt set: give --prompts PROMPTS.json or at least one --point / --box")
        ndim = getattr(self.engine, "ndim", None)
        if ndim is not None and ndim != image.ndim:
            raise InputError(f"engine {self.engine.name!r} works on {ndim}D images and the image is {image.ndim}D; "
                             f"choose another --engine ({', '.join(list_engines(image.ndim))})")
        for n, s in enumerate(self.sessions, 1):
            try:
                s.resolve(image)
            except InputError as exc:
                raise InputError(f"object {n} ({s.label}): {exc.reason}") from None

    def predict(self, image: Image) -> SegmentationResult:
        """The label map of every session (values 1..n named after each session's label), on ``image``'s grid.

        With ``base_labels`` the map starts from them and each session replaces its own value (others are kept,
        named ``object <value>``).

        Raises:
            InputError: See :meth:`check`.
        """
        self.check(image)
        start = time.perf_counter()
        base = self.base_labels
        values = self._values()
        top = max([*values, int(base.max()) if base is not None and base.size else 0])
        dtype = np.uint8 if top < 255 else np.uint16
        labels = np.zeros(image.spatial_shape, dtype) if base is None else np.asarray(base).astype(dtype)
        seconds = []
        for value, s in zip(values, self.sessions):
            t0 = time.perf_counter()
            mask = np.asarray(self.engine.segment(image, s), bool)
            seconds.append(time.perf_counter() - t0)
            labels[labels == value] = 0
            labels[mask] = value
        names = {v: f"object {v}" for v in (np.unique(labels) if base is not None else []) if v != 0}
        names.update({v: s.label for v, s in zip(values, self.sessions)})
        self.label_map = LabelMap.parse(_unique_names({int(k): v for k, v in sorted(names.items())}))
        out = Image(labels[None], image.geometry, ImageKind.LABEL)
        return SegmentationResult(labels=out, label_map=self.label_map,
                                  timings_s={"engine": time.perf_counter() - start, **{f"object_{v}": t for v, t in zip(values, seconds)}},
                                  explanations={"prompts": [s.to_dict() for s in self.sessions]})

    def _values(self) -> list[int]:
        """Label value of each session: 1..n, or a lone session's value in a one-value previous label map."""
        base = self.base_labels
        if base is not None and len(self.sessions) == 1:
            present = [int(v) for v in np.unique(base) if v != 0]
            if len(present) == 1:
                return present
        return list(range(1, len(self.sessions) + 1))

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        """The engine (name, version and weights hash of a network) and every session's prompts."""
        b = self.bundle
        params: dict[str, Any] = {"engine": engine_provenance(self.engine), "prompts": [s.to_dict() for s in self.sessions]}
        if any(s.previous is not None for s in self.sessions):
            params["previous_mask"] = True
        if b is not None:
            return Provenance(source="model", name=b.name, version=b.version, sha256=b.spec.sha256 or "", task=Task.PROMPTABLE,
                              parameters=params, input=input_info)
        return Provenance(source="classical", name=self.engine.name, parameters=params, input=input_info, task=Task.PROMPTABLE)

    def write_case(self, out_dir: Path, case_name: str, image: Image, result: Result, provenance: Provenance,
                   extra_files: Sequence[ExtraWriter] = ()) -> Annotation:
        """``out_dir/case_name/`` (labels, overlays, ``annotation.json``), written atomically."""
        if not isinstance(result, SegmentationResult):
            raise ModelError(f"case {case_name!r}: a {type(result).__name__} has no label map to write")
        return write_case(out_dir, case_name, image, result, provenance, extra_files)

    def finish(self, out_dir: Path, annotations: Sequence[tuple[str, Annotation]]) -> list[Path]:
        """Nothing beyond the case folders."""
        return []


def _unique_names(names: dict[int, str]) -> dict[int, str]:
    seen: dict[str, int] = {}
    out = {}
    for v, n in names.items():
        seen[n] = seen.get(n, 0) + 1
        out[v] = n if seen[n] == 1 else f"{n} {seen[n]}"
    return out


@register_task
class PromptableTask:
    """The mask of the object a person points at (see the module docstring)."""

    task: ClassVar[Task] = Task.PROMPTABLE
    description: ClassVar[str] = "mask of the object pointed at (clicks, box, scribbles, previous mask): medannot segment"
    config_model: ClassVar[type[LoopConfig]] = PromptableConfig
    has_background: ClassVar[bool] = True
    writes_label_maps: ClassVar[bool] = True

    def training(self, config: LoopConfig) -> PromptableTraining:
        """Promptable hooks for the one loop."""
        if not isinstance(config, PromptableConfig):
            raise ConfigError(f"a promptable run needs a PromptableConfig, got {type(config).__name__}")
        return PromptableTraining(config)

    def predictor(self, bundle: Bundle, options: PredictOptions) -> PromptSegmenter:
        """A :class:`PromptSegmenter` of the bundle's network (give it prompts with ``with_sessions``).

        Raises:
            ConfigError: Options of other tasks (TTA, uncertainty, MC dropout, calibration, ONNX engines).
        """
        if options.tta or options.uncertainty or options.mc_dropout or options.calibrated is not None:
            raise ConfigError("--tta, --uncertainty, --mc-dropout and --calibrated do not apply to a promptable model")
        if options.engine != "pytorch":
            raise ConfigError(f"a promptable model runs in PyTorch only, got --engine {options.engine}")
        return PromptSegmenter(engine_from_bundle(bundle), bundle=bundle)

    def evaluate(self, pred: Path, truth: Path, out: Path, options: EvaluateOptions) -> EvaluationResult:
        """Overlap and distance metrics of the written label maps (as segmentation)."""
        return evaluate_paths(pred, truth, out, labels=options.labels, resample=options.resample, tolerance_mm=options.tolerance_mm,
                              max_workers=options.workers, lesions=options.lesions, match=options.match,
                              match_threshold=options.match_threshold, manifest=options.manifest,
                              missing_as_empty=options.missing_as_empty, include_absent=options.include_absent)
