"""Annotate inputs in a batch: discover, load, predict, post-process, write; one bad input never stops the rest.

An *annotator* is either a trained bundle (``--model``) or a training-free classical
method (``--method``). Both produce a label image on the input's own grid.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from medannot.annotations import Annotation, LabelMap, Provenance, write_case
from medannot.annotations.schema import Box
from medannot.data import Image
from medannot.errors import InputError, MedannotError


@dataclass
class Labelled:
    """What an annotator returns for one image."""

    labels: Image | None  # None for a detection model (boxes only)
    instance_maps: dict[int, np.ndarray] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    label_map: LabelMap | None = None
    probabilities: np.ndarray | None = None  # (K, *spatial) float32 on the labels' grid: instance scores
    boxes: list[Box] | None = None  # boxes a detector found (segmented instances get theirs in write_case)
    overlay_threshold: float = 0.0  # boxes scoring below this are not drawn
    extra_files: list[Callable[[Path], dict[str, str]]] = field(default_factory=list)  # more writers (uncertainty maps)
    explanations: dict[str, Any] | None = None  # annotation.json "explanations" (uncertainty summary)


class Annotator(Protocol):
    """A trained model or classical method turned into a common interface."""

    label_map: LabelMap

    def provenance(self, input_info: dict[str, Any]) -> Provenance: ...

    def __call__(self, image: Image) -> Labelled: ...


class ModelAnnotator:
    """Annotator backed by a trained bundle and :class:`medannot.inference.Predictor`.

    A detection bundle (``task: detection``) gives a
    :class:`medannot.annotate_detection.DetectionAnnotator` instead (boxes, no label map).

    Args:
        model: Bundled model name or bundle folder.
        tta: Flip test-time augmentation (None: the bundle's default).
        progress: Show the sliding-window progress bar.
        uncertainty: Also write the softmax-entropy map and its summary (:mod:`medannot.explain.segmentation`).
        mc_dropout: Monte-Carlo dropout passes for the uncertainty (0 = none; else >= 2 and the network needs dropout).

    Raises:
        ModelError: A classification bundle, ``mc_dropout`` asked of a network without dropout, or fewer than 2 passes.
    """

    def __new__(cls, model: str | Path, tta: bool | None = None, progress: bool = False, **_options: Any) -> Any:
        from medannot.models.bundle import Bundle

        task = Bundle.load(model).task
        if cls is ModelAnnotator and task == "detection":
            from medannot.annotate_detection import DetectionAnnotator

            return DetectionAnnotator(model, tta=tta, progress=progress)
        if task == "classification":  # image-level classes: no masks, so no segmentation case folder
            from medannot.errors import ModelError

            raise ModelError(f"model {str(model)!r} is a classifier; it gives image-level classes, not masks "
                             "(use `medannot annotate --model` on files: medannot.annotate_classification)")
        return super().__new__(cls)

    def __init__(self, model: str | Path, tta: bool | None = None, progress: bool = False, uncertainty: bool = False,
                 mc_dropout: int = 0) -> None:
        from medannot.inference import Predictor

        self.predictor = Predictor.from_bundle(model, tta=tta, progress=progress)
        self.bundle = self.predictor.bundle
        self.label_map = LabelMap.parse({k: v.model_dump() for k, v in self.bundle.spec.labels.items()})
        self.tta = tta
        self.uncertainty, self.mc_dropout = uncertainty or mc_dropout > 0, int(mc_dropout)
        if self.mc_dropout:
            from medannot.errors import ModelError
            from medannot.models.classification import has_dropout

            if self.mc_dropout < 2:
                raise ModelError(f"--mc-dropout needs at least 2 passes, got {self.mc_dropout}")
            if not has_dropout(self.predictor.network):  # refused before any case is written
                raise ModelError(f"model {self.bundle.name!r} has no dropout layer, so Monte-Carlo dropout would repeat one answer; "
                                 "use --uncertainty alone (softmax entropy)")

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        spec = self.bundle.spec
        return Provenance(
            source="model",
            name=spec.name,
            version=spec.version,
            sha256=spec.sha256 or "",
            parameters={
                "tta": self.predictor.tta,
                "inference": spec.inference.model_dump(),
                "preprocessing": spec.preprocessing,
                "postprocessing": spec.postprocessing,
                "instances": spec.instances,
                "bundle_path": str(self.bundle.path) if self.bundle.path else "",
            },
            input=input_info,
        )

    def __call__(self, image: Image) -> Labelled:
        prediction = self.predictor.predict(image, keep_probabilities=True)
        extra, explanations = [], None
        if self.uncertainty:
            from medannot.explain.segmentation import segmentation_uncertainty, uncertainty_writer

            maps, summary = segmentation_uncertainty(self.predictor, image, prediction, self.mc_dropout)
            extra, explanations = [uncertainty_writer(image, maps, focus=prediction.labels.array[0] > 0)], {"uncertainty": summary}
        probs = prediction.probabilities
        if probs is not None and not probs.same_grid(image):
            probs = None  # scores only where the network saw the input's own grid (no second resampling pass)
        return Labelled(
            prediction.labels,
            prediction.instances or None,
            dict(prediction.timings or {}),
            probabilities=None if probs is None else probs.array,
            extra_files=extra,
            explanations=explanations,
        )


class ClassicalAnnotator:
    """Annotator backed by a classical method of :mod:`medannot.classical` (no training).

    Args:
        method: Method name (``medannot methods`` lists them).
        params: Keyword parameters of the method (e.g. ``seed``, ``classes``).
    """

    def __init__(self, method: str, params: dict[str, Any] | None = None) -> None:
        from medannot import classical

        self.method = classical.ClassicalMethod.parse(method).value
        self.params = dict(params or {})
        self.label_map = LabelMap()

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        return Provenance(source="classical", name=str(self.method), parameters=self.params, input=input_info)

    def __call__(self, image: Image) -> Labelled:
        from medannot import classical

        start = time.perf_counter()
        labels = classical.run_method(self.method, image, **self.params)
        values = [int(v) for v in np.unique(labels.array) if v != 0]
        label_map = LabelMap.parse({v: f"{self.method}_{v}" for v in values})
        return Labelled(labels, None, {"method": time.perf_counter() - start}, label_map)


@dataclass
class CaseResult:
    """Outcome of one input in a batch."""

    name: str
    ok: bool
    reason: str = ""
    folder: Path | None = None
    annotation: Annotation | None = None
    seconds: float = 0.0
    stored: list[str] = field(default_factory=list)  # SOPInstanceUIDs stored back to a PACS (DICOM SEG)


def annotate_inputs(
    input_path: str | Path,
    annotator: Annotator,
    out_dir: str | Path | None,
    on_case: Callable[[CaseResult], None] | None = None,
    pacs_settings: Any = None,
    formats: Sequence[str] = ("nifti",),
) -> list[CaseResult]:
    """Annotate everything under ``input_path`` into ``out_dir/<case>/``.

    A DICOMweb address (``dicomweb+http://HOST/ROOT/studies/UID``) is annotated series by series, and
    each series' labels are stored back to the same study on the PACS as a DICOM SEG (STOW-RS).

    Args:
        input_path: A file, a DICOM series folder, a folder of files, a dataset folder, or a DICOMweb address (str).
        annotator: :class:`ModelAnnotator` or :class:`ClassicalAnnotator`.
        out_dir: Output root; None keeps nothing locally (for PACS inputs, whose result goes back to the PACS).
        on_case: Called after each case (for progress display).
        pacs_settings: :class:`medannot.io.dicomweb.PacsSettings` (timeout, retries) for DICOMweb addresses.
        formats: Label formats of each case folder: ``nifti`` (always), ``dicom-seg`` (``seg.dcm``),
            ``rtstruct`` (``rtstruct.dcm``); the DICOM ones only for DICOM inputs (other inputs fail with a one-line reason).

    Returns:
        One :class:`CaseResult` per discovered input, in order; failed inputs carry the one-line reason.

    Raises:
        InputError: If ``input_path`` does not exist or holds no readable input at all.
    """
    from medannot.annotations.dicom_outputs import dicom_writers, parse_formats
    from medannot.io import discover_inputs

    dicom_formats = [f for f in parse_formats(formats) if f.needs_dicom]

    items = discover_inputs(input_path, pacs_settings)
    if not items:
        raise InputError("no image found (expected NIfTI, DICOM, PNG/JPEG/TIFF or a dataset folder)", input_path)
    results: list[CaseResult] = []
    for item in items:
        start = time.perf_counter()
        try:
            if dicom_formats and item.source not in ("dicom-series", "dicomweb"):
                wanted = ", ".join(f.value for f in dicom_formats)
                raise InputError(f"--format {wanted} needs a DICOM series input; this input is a {item.source} (NIfTI, picture or "
                                 "dataset case): its labels go to labels.nii.gz only, run without that --format", item.paths[0])  # fmt: skip
            case = item.load()
            image = case.image
            labelled = annotator(image)
            where = case.meta["sources"][0] if not item.paths else item.paths[0].parent if item.source == "dicom-series" else item.paths[0]
            info: dict[str, Any] = {"path": str(where), "source": item.source}
            info.update({k: str(v) for k, v in case.identifiers.items()})
            label_map, provenance = labelled.label_map or annotator.label_map, annotator.provenance(info)
            extra = []
            if dicom_formats:
                from medannot.annotations.dicom_grid import load_source_datasets

                if labelled.labels is None:
                    raise InputError("this model finds boxes, not label maps; --format dicom-seg/rtstruct need a segmentation", where)
                sources = case.meta.get("dicom_headers") or load_source_datasets(list(item.paths), item.series_uid)
                extra = dicom_writers(dicom_formats, labelled.labels, sources, label_map, provenance)
            root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="medannot-annotate-"))
            try:
                annotation = write_case(
                    root, item.name, image, labelled.labels, label_map,
                    provenance, labelled.instance_maps, labelled.timings_s, labelled.probabilities,
                    boxes=labelled.boxes, overlay_threshold=labelled.overlay_threshold, extra_files=extra + labelled.extra_files,
                    explanations=labelled.explanations,
                )
            finally:
                if out_dir is None:
                    shutil.rmtree(root, ignore_errors=True)
            result = CaseResult(item.name, True, folder=None if out_dir is None else root / item.name, annotation=annotation)
            if item.source == "dicomweb":
                from medannot.annotations.pacs_store import store_segmentation

                result.stored = store_segmentation(item.meta["dicomweb"], labelled.labels, case.meta["dicom_headers"], label_map,
                                                   provenance, item.meta.get("pacs_settings"))  # fmt: skip
        except MedannotError as exc:
            result = CaseResult(item.name, False, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug or resource limit on one input must not lose the batch
            result = CaseResult(item.name, False, reason=f"{item.name}: {type(exc).__name__}: {exc}".splitlines()[0])
        result.seconds = time.perf_counter() - start
        results.append(result)
        if on_case is not None:
            on_case(result)
    return results
