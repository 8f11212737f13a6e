"""Classify inputs in a batch: one case folder each, plus ``classifications.csv``; one bad input never stops the rest.

For an input named ``X`` the folder ``OUT/X/`` holds:

- ``annotation.json``: the schema of :mod:`medannot.annotations.schema` with ``classification`` (label,
  probabilities, calibrated flag, temperature), ``provenance`` (model, version, weights sha256, calibration)
  and ``explanations.gradcam`` / ``explanations.occlusion`` summaries;
- ``gradcam.nii.gz`` and ``occlusion.nii.gz``: the maps (float32, [0, 1]) on the input's own grid (a 2D model
  given a volume explains its middle slice; the other slices are 0); 2D maps are one-slice volumes;
- ``gradcam.png`` / ``occlusion.png`` (2D) or ``gradcam_{axial,coronal,sagittal}.png`` (3D): heat-map overlays.

``OUT/classifications.csv`` has one row per classified input: ``case, path, label, probability,
p_<class>..., calibrated, model, version``. Each case folder is assembled under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medannot.annotate import CaseResult
from medannot.annotations.schema import Annotation, Classification, Provenance
from medannot.data import Image
from medannot.io.atomic import atomic_folder
from medannot.errors import InputError, MedannotError

__all__ = ["ClassificationAnnotator", "classify_inputs"]


class ClassificationAnnotator:
    """A classification bundle with its explanations, for one image at a time.

    Args:
        model: Bundled model name or bundle folder (task ``classification``).
        explain: Compute Grad-CAM and occlusion sensitivity maps.
        calibrated: Use the bundle's temperature (None: when it has one).
    """

    def __init__(self, model: str | Path, explain: bool = True, calibrated: bool | None = None) -> None:
        from medannot.inference.classifier import Classifier

        self.classifier = Classifier.from_bundle(model, calibrated=calibrated)
        self.bundle = self.classifier.bundle
        self.explain = explain

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        spec = self.bundle.spec
        return Provenance(
            source="model", name=spec.name, version=spec.version, sha256=spec.sha256 or "",
            parameters={"task": "classification", "classification": spec.classification or {},
                        "bundle_path": str(self.bundle.path) if self.bundle.path else ""},
            input=input_info,
        )

    def explain_maps(self, image: Image, x: np.ndarray, class_index: int) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Grad-CAM and occlusion maps of ``class_index`` on ``image``'s own grid (float32, [0, 1]).

        Returns:
            ``(maps, notes)``: ``notes["occlusion"]["max_log_odds_drop"]`` is the largest drop of the class's
            log-odds (nats) any occlusion caused: near 0 means no region was decisive and the map is noise.
        """
        from medannot.explain.saliency import gradcam_map, map_on_image, occlusion_drop
        from medannot.models.classification import gradcam_layer

        net = self.classifier.network
        size = self.classifier.input_spec.input_size
        # ~13 windows per axis in 2D (about 170 forward passes), ~6 in 3D (about 220): seconds on a CPU
        mask = max(4, int(min(size)) // (6 if len(size) == 2 else 3))
        drop = occlusion_drop(net, x, class_index, mask_size=mask)
        top = float(np.clip(drop, 0, None).max())
        maps = {
            "gradcam": gradcam_map(net, gradcam_layer(self.bundle.spec.network.name), x, class_index),
            "occlusion": (np.clip(drop, 0, None) / top if top > 0 else np.zeros_like(drop)).astype(np.float32),
        }
        notes: dict[str, dict[str, Any]] = {"gradcam": {"method": "Grad-CAM (MONAI) on " + gradcam_layer(self.bundle.spec.network.name)},
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

    def __call__(self, image: Image) -> tuple[Classification, dict[str, np.ndarray], dict[str, Any], dict[str, float]]:
        """Classify one image: ``(classification, explanation maps, notes on the maps, timings in s)``."""
        t0 = time.perf_counter()
        pred = self.classifier.predict(image)
        d = pred.to_dict()
        cls = Classification(label=d["label"], index=d["index"], probability=d["probability"], probabilities=d["probabilities"],
                             calibrated=d["calibrated"], temperature=d["temperature"])
        maps: dict[str, np.ndarray] = {}
        notes: dict[str, Any] = {}
        timings = {k: round(v, 4) for k, v in pred.timings.items()}
        if self.explain:
            t1 = time.perf_counter()
            maps, notes = self.explain_maps(image, self.classifier.prepare(image), pred.index)
            timings["explain"] = round(time.perf_counter() - t1, 4)
        timings["total"] = round(time.perf_counter() - t0, 4)
        return cls, maps, notes, timings


def _map_summary(m: np.ndarray, affine: np.ndarray) -> dict[str, Any]:
    """Peak voxel (array axis order) and its world position (RAS mm), mean value and fraction of voxels above 0.5."""
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    world = np.asarray(affine, np.float64) @ np.array([*peak, 1.0])
    return {"peak_voxel": [int(i) for i in peak], "peak_mm": [round(float(v), 3) for v in world[: len(peak)]],
            "mean": round(float(m.mean()), 5), "fraction_above_0.5": round(float((m > 0.5).mean()), 5)}


def write_classification_case(out_dir: Path, case_name: str, image: Image, cls: Classification, maps: dict[str, np.ndarray],
                              provenance: Provenance, timings: dict[str, float], notes: dict[str, Any] | None = None) -> Annotation:
    """Write ``out_dir/case_name/`` atomically (see the module docstring).

    Raises:
        OutputError: The folder cannot be written.
    """
    from medannot.explain.overlay import write_heat_overlays
    from medannot.io import write_image

    final = Path(out_dir) / case_name
    with atomic_folder(final, "classification folder") as staging:
        files: dict[str, str] = {}
        explanations: dict[str, Any] = {}
        for name, m in maps.items():
            write_image(Image(m[None], image.geometry).as_volume(), staging / f"{name}.nii.gz")
            files[name] = f"{name}.nii.gz"
            for p in write_heat_overlays(image, m, staging, name):
                files[f"{p.stem}_png"] = p.name
            explanations[name] = dict(_map_summary(m, image.affine), class_explained=cls.label, **(notes or {}).get(name, {}))
        annotation = Annotation(
            case=case_name, ndim=image.ndim, shape=list(image.spatial_shape), spacing=[float(s) for s in image.spacing],
            affine=[[round(float(v), 6) for v in row] for row in image.affine], size_unit="mm3" if image.ndim == 3 else "mm2",
            labels=[], instances=[], provenance=provenance, classification=cls, explanations=explanations, files=files,
            timings_s=timings,
        )
        (staging / "annotation.json").write_text(json.dumps(annotation.to_dict(), indent=2))
    return annotation


def write_classifications_csv(path: Path, results: list[CaseResult], class_names: list[str]) -> Path:
    """``classifications.csv``: one row per classified case (failed inputs are not listed), written atomically."""
    from medannot.io.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "path", "label", "probability", *[f"p_{c}" for c in class_names], "calibrated", "model", "version"])
    for r in results:
        if not r.ok or r.annotation is None or r.annotation.classification is None:
            continue
        c, prov = r.annotation.classification, r.annotation.provenance
        w.writerow([r.name, prov.input.get("path", ""), c.label, f"{c.probability:.6f}",
                    *[f"{c.probabilities.get(n, 0.0):.6f}" for n in class_names], c.calibrated, prov.name, prov.version])
    atomic_write_text(path, buf.getvalue())
    return path


def classify_inputs(input_path: str | Path, annotator: ClassificationAnnotator, out_dir: str | Path,
                    on_case: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Classify everything under ``input_path`` into ``out_dir/<case>/`` and ``out_dir/classifications.csv``.

    Returns:
        One :class:`~medannot.annotate.CaseResult` per discovered input; failed ones carry the one-line reason.

    Raises:
        InputError: If nothing readable is found under ``input_path``.
    """
    from medannot.io import discover_inputs

    items = discover_inputs(input_path)
    if not items:
        raise InputError("no image found (expected NIfTI, DICOM, PNG/JPEG/TIFF or a dataset folder)", input_path)
    out = Path(out_dir)
    results: list[CaseResult] = []
    for item in items:
        start = time.perf_counter()
        try:
            case = item.load()
            cls, maps, notes, timings = annotator(case.image)
            where = item.paths[0].parent if item.paths and item.source == "dicom-series" else (item.paths[0] if item.paths else item.name)
            info = {"path": str(where), "source": item.source}
            ann = write_classification_case(out, item.name, case.image, cls, maps, annotator.provenance(info), timings, notes)
            result = CaseResult(item.name, True, folder=out / item.name, annotation=ann)
        except MedannotError as exc:
            result = CaseResult(item.name, False, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad input must not lose the batch
            result = CaseResult(item.name, False, reason=f"{item.name}: {type(exc).__name__}: {exc}".splitlines()[0])
        result.seconds = time.perf_counter() - start
        results.append(result)
        if on_case is not None:
            on_case(result)
    write_classifications_csv(out / "classifications.csv", results, annotator.classifier.class_names)
    return results


def is_classifier(model: str | Path) -> bool:
    """True when ``model`` (bundled name or folder) is a classification bundle.

    Raises:
        ModelError: Unknown or corrupt bundle.
    """
    from medannot.models.bundle import Bundle

    return Bundle.load(model).task == "classification"


def run_classification(model: str | Path, input_path: Path, out: Path | None, echo: Callable[[str], None] | None = None,
                       warn: Callable[[str], None] | None = None) -> int:
    """``medannot annotate --model <classifier>``: classify, print one line per case, return the number of failed inputs."""
    if not Path(input_path).exists():
        raise InputError("no such file or folder", input_path)
    out_dir = Path(out) if out is not None else Path("medannot_out")

    def show(r: CaseResult) -> None:
        if not r.ok:
            if warn is not None:
                warn(f"medannot: skipped {r.reason}")
        elif echo is not None and r.annotation is not None and r.annotation.classification is not None:
            c = r.annotation.classification
            echo(f"{r.name}: {c.label} (p = {c.probability:.3f}{', calibrated' if c.calibrated else ''}) -> {r.folder}")

    results = classify_inputs(input_path, ClassificationAnnotator(model), out_dir, on_case=show)
    failed = sum(1 for r in results if not r.ok)
    if echo is not None:
        echo(f"classifications: {out_dir / 'classifications.csv'}")
    if failed and warn is not None:
        warn(f"medannot: {failed} of {len(results)} inputs failed and were skipped")
    return failed
