"""The classification task: one class per image, with Grad-CAM and occlusion maps.

- config: :class:`~medannot.training.classification_config.ClassificationConfig` (labelled images split by source group);
- networks: those registered with task ``classification`` (MONAI DenseNet / ResNet);
- training: :class:`~medannot.training.classification_trainer.ClassificationTraining` in the one loop;
- predictor: :class:`ImageClassifier` (:class:`~medannot.inference.classifier.Classifier` + explanations);
- case writer: :func:`write_classification_case`; after the batch, ``classifications.csv``;
- evaluation: :func:`medannot.evaluation.classification_run.evaluate_classifications`.

For an input named ``X`` the folder ``OUT/X/`` holds ``annotation.json`` (``classification``: label,
probabilities, calibrated flag, temperature; ``provenance``; ``explanations.gradcam`` / ``.occlusion`` summaries),
``gradcam.nii.gz`` and ``occlusion.nii.gz`` (float32 maps in [0, 1] on the input's own grid; a 2D model given a
volume explains its middle slice and the other slices are 0; 2D maps are one-slice volumes) and their heat-map
overlays ``gradcam.png`` / ``occlusion.png`` (2D) or ``gradcam_{axial,coronal,sagittal}.png`` (3D).
``OUT/classifications.csv`` has one row per classified input: ``case, path, label, probability, p_<class>...,
calibrated, model, version``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.results import ClassificationResult, ExtraWriter, Result
from medannot.annotations.schema import Annotation, Classification, Provenance
from medannot.data import Image, Task
from medannot.errors import ConfigError, ModelError
from medannot.evaluation.classification_run import ClassificationEvaluation, evaluate_classifications
from medannot.explain.overlay import write_heat_overlays
from medannot.explain.saliency import gradcam_map, map_on_image, occlusion_drop
from medannot.inference.classifier import Classifier
from medannot.io import write_image
from medannot.io.atomic import atomic_folder, atomic_write_text
from medannot.models.bundle import Bundle
from medannot.models.classification import gradcam_layer
from medannot.tasks.base import EvaluateOptions, PredictOptions
from medannot.tasks.registry import register_task
from medannot.tasks.segmentation import bundle_label_map, engine_parameters, model_provenance
from medannot.training.classification_config import ClassificationConfig
from medannot.training.classification_trainer import ClassificationTraining
from medannot.training.config import LoopConfig

__all__ = ["ClassificationTask", "ImageClassifier", "write_classification_case", "write_classifications_csv"]


class ImageClassifier:
    """A classification bundle with its explanations, for one image at a time.

    Args:
        bundle: A classification bundle.
        options: ``explain`` and ``calibrated`` apply.

    Raises:
        ConfigError: TTA, uncertainty or MC dropout asked for (segmentation options).
    """

    task = Task.CLASSIFICATION

    def __init__(self, bundle: Bundle, options: PredictOptions) -> None:
        if options.tta or options.uncertainty or options.mc_dropout:
            raise ConfigError("--tta, --uncertainty and --mc-dropout are for segmentation models; a classifier gives calibrated "
                              "probabilities and Grad-CAM / occlusion maps")
        self.classifier = Classifier(bundle, calibrated=options.calibrated, engine=options.engine)
        self.bundle = bundle
        self.explain = options.explain
        self.label_map: LabelMap = bundle_label_map(bundle)

    @property
    def class_names(self) -> list[str]:
        """Class names in network output order."""
        return list(self.classifier.class_names)

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        """Bundle and its classification section (input rules, calibration)."""
        section = self.bundle.spec.classification
        return model_provenance(self.bundle, {"classification": section.model_dump(mode="json") if section else {},
                                              **engine_parameters(self.classifier.engine)}, input_info)

    def explain_maps(self, image: Image, x: np.ndarray, class_index: int) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Grad-CAM and occlusion maps of ``class_index`` on ``image``'s own grid (float32, [0, 1]).

        Returns:
            ``(maps, notes)``: ``notes["occlusion"]["max_log_odds_drop"]`` is the largest drop of the class's
            log-odds (nats) any occlusion caused: near 0 means no region was decisive and the map is noise.
        """
        net = self.classifier.network
        size = self.classifier.input_spec.input_size
        # ~13 windows per axis in 2D (about 170 forward passes), ~6 in 3D (about 220): seconds on a CPU
        mask = max(4, int(min(size)) // (6 if len(size) == 2 else 3))
        drop = occlusion_drop(net, x, class_index, mask_size=mask)
        top = float(np.clip(drop, 0, None).max())
        layer = gradcam_layer(self.bundle.spec.network.name)
        maps = {
            "gradcam": gradcam_map(net, layer, x, class_index),
            "occlusion": (np.clip(drop, 0, None) / top if top > 0 else np.zeros_like(drop)).astype(np.float32),
        }
        notes: dict[str, dict[str, Any]] = {"gradcam": {"method": "Grad-CAM (MONAI) on " + layer},
                                            "occlusion": {"method": "occlusion sensitivity (MONAI, Gaussian), drop of the class log-odds",
                                                          "max_log_odds_drop": round(top, 4), "mask_size": mask}}
        shape = image.spatial_shape
        middle = self.bundle.spatial_dims == 2 and image.ndim == 3
        out = {}
        for name, m in maps.items():
            if middle:
                full = np.zeros(shape, np.float32)
                full[..., shape[-1] // 2] = map_on_image(m, shape[:2])
                out[name] = full
                notes[name]["slice"] = f"middle slice along the last array axis (index {shape[-1] // 2}); other slices are 0"
            else:
                out[name] = map_on_image(m, shape)
        return out, notes

    def predict(self, image: Image) -> ClassificationResult:
        """The class, its probabilities and (unless ``explain`` is off) the explanation maps."""
        t0 = time.perf_counter()
        pred = self.classifier.predict(image)
        cls = Classification(label=pred.label, index=pred.index, probability=pred.probabilities[pred.label],
                             probabilities=pred.probabilities, calibrated=pred.calibrated, temperature=pred.temperature)
        maps: dict[str, np.ndarray] = {}
        notes: dict[str, Any] = {}
        timings = {k: round(v, 4) for k, v in pred.timings.items()}
        if self.explain:
            t1 = time.perf_counter()
            maps, notes = self.explain_maps(image, self.classifier.prepare(image), pred.index)
            timings["explain"] = round(time.perf_counter() - t1, 4)
        timings["total"] = round(time.perf_counter() - t0, 4)
        return ClassificationResult(classification=cls, maps=maps, label_map=self.label_map, timings_s=timings, explanations=notes)

    def write_case(self, out_dir: Path, case_name: str, image: Image, result: Result, provenance: Provenance,
                   extra_files: Sequence[ExtraWriter] = ()) -> Annotation:
        """:func:`write_classification_case`."""
        if not isinstance(result, ClassificationResult):
            raise ModelError(f"case {case_name!r}: a classifier writes ClassificationResult, got {type(result).__name__}")
        if extra_files:
            raise ConfigError("DICOM SEG / RTSTRUCT outputs need a label map; a classifier gives one class per image")
        return write_classification_case(out_dir, case_name, image, result, provenance)

    def finish(self, out_dir: Path, annotations: Sequence[tuple[str, Annotation]]) -> list[Path]:
        """``out_dir/classifications.csv``."""
        return [write_classifications_csv(Path(out_dir) / "classifications.csv", annotations, self.class_names)]


def _map_summary(m: np.ndarray, affine: np.ndarray) -> dict[str, Any]:
    """Peak voxel (array axis order) and its world position (RAS mm), mean value and fraction of voxels above 0.5."""
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    world = np.asarray(affine, np.float64) @ np.array([*peak, 1.0])
    return {"peak_voxel": [int(i) for i in peak], "peak_mm": [round(float(v), 3) for v in world[: len(peak)]],
            "mean": round(float(m.mean()), 5), "fraction_above_0.5": round(float((m > 0.5).mean()), 5)}


def write_classification_case(out_dir: Path, case_name: str, image: Image, result: ClassificationResult,
                              provenance: Provenance) -> Annotation:
    """Write ``out_dir/case_name/`` atomically (see the module docstring).

    Raises:
        OutputError: The folder cannot be written.
    """
    final = Path(out_dir) / case_name
    cls = result.classification
    with atomic_folder(final, "classification folder") as staging:
        files: dict[str, str] = {}
        explanations: dict[str, Any] = {}
        for name, m in result.maps.items():
            write_image(Image(m[None], image.geometry).as_volume(), staging / f"{name}.nii.gz")
            files[name] = f"{name}.nii.gz"
            for p in write_heat_overlays(image, m, staging, name):
                files[f"{p.stem}_png"] = p.name
            explanations[name] = dict(_map_summary(m, image.affine), class_explained=cls.label, **result.explanations.get(name, {}))
        annotation = Annotation(
            case=case_name, ndim=image.ndim, shape=list(image.spatial_shape), spacing=[float(s) for s in image.spacing],
            affine=[[round(float(v), 6) for v in row] for row in image.affine], size_unit="mm3" if image.ndim == 3 else "mm2",
            labels=[], instances=[], provenance=provenance, classification=cls, explanations=explanations, files=files,
            timings_s=result.timings_s,
        )
        (staging / "annotation.json").write_text(json.dumps(annotation.to_dict(), indent=2))
    return annotation


def write_classifications_csv(path: Path, annotations: Sequence[tuple[str, Annotation]], class_names: list[str]) -> Path:
    """``classifications.csv``: one row per classified case (failed inputs are not listed), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "path", "label", "probability", *[f"p_{c}" for c in class_names], "calibrated", "model", "version"])
    for name, ann in annotations:
        c, prov = ann.classification, ann.provenance
        if c is None:
            continue
        w.writerow([name, prov.input.get("path", ""), c.label, f"{c.probability:.6f}",
                    *[f"{c.probabilities.get(n, 0.0):.6f}" for n in class_names], c.calibrated, prov.name, prov.version])
    atomic_write_text(path, buf.getvalue())
    return path


@register_task
class ClassificationTask:
    """One class per image (see the module docstring)."""

    task: ClassVar[Task] = Task.CLASSIFICATION
    description: ClassVar[str] = "one class per image, with calibrated probabilities and saliency maps"
    config_model: ClassVar[type[LoopConfig]] = ClassificationConfig
    has_background: ClassVar[bool] = False
    writes_label_maps: ClassVar[bool] = False

    def training(self, config: LoopConfig) -> ClassificationTraining:
        """Classification hooks for the one loop."""
        if not isinstance(config, ClassificationConfig):
            raise ConfigError(f"a classification run needs a ClassificationConfig, got {type(config).__name__}")
        return ClassificationTraining(config)

    def predictor(self, bundle: Bundle, options: PredictOptions) -> ImageClassifier:
        """:class:`ImageClassifier` of ``bundle``."""
        return ImageClassifier(bundle, options)

    def evaluate(self, pred: Path, truth: Path, out: Path, options: EvaluateOptions) -> ClassificationEvaluation:
        """Accuracy, per-class precision / recall, ROC AUC and calibration of ``classifications.csv`` against a CSV of classes."""
        return evaluate_classifications(pred, truth, out)
