"""Training a detection bundle (``task: detection``): MONAI RetinaNet with ATSS matching and hard negatives.

The detection task's hooks for the one training loop (:mod:`medannot.training.loop`): patches from a
registered data source whose label patches become boxes (:func:`label_patch_boxes`); validation through the
real inference path (:class:`~medannot.inference.detector.Detector` on the in-memory bundle), scored with COCO
AP (:func:`medannot.evaluation.detection.average_precision`, the early-stopping score) and FROC; the shipped
bundle is measured again after it is loaded back from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medannot.data.boxes import boxes_from_instances
from medannot.errors import ConfigError, ModelError
from medannot.evaluation.detection import average_precision, detection_froc
from medannot.inference.detector import Detector
from medannot.models.bundle import Bundle
from medannot.models.detection import build_detector
from medannot.models.detection_spec import BoxSource, DetectionSpec
from medannot.models.registry import create_network
from medannot.training.card import render_card
from medannot.training.config import TrainConfig
from medannot.training.loop import Shipped, Validation
from medannot.training.sources import ValidationCase, build_source
from medannot.training.trainer import bundle_from_config, check_patch

__all__ = ["DetectionTraining", "label_patch_boxes", "truth_boxes", "validate_detection"]


def label_patch_boxes(label: np.ndarray, source: BoxSource) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and 0-based detector classes of the objects in a label patch.

    ``instances`` mode: each distinct nonzero value is one object of class 0 (label value 1).
    ``components`` mode: each connected component (full connectivity) of value ``v`` is one object
    of class ``v - 1``. Objects with fewer than ``source.min_voxels`` voxels, or whose box is thinner
    than ``source.min_extent`` voxels along some axis, are left out.

    Returns:
        ``(boxes (N, 2 * ndim) float32 voxel boxes, classes (N,) int64)``; empty arrays when no object is left.
    """
    boxes, classes = _label_boxes(np.asarray(label), source)
    if source.min_extent > 1 and len(boxes):
        nd = boxes.shape[1] // 2
        keep = np.all(boxes[:, nd:] - boxes[:, :nd] >= source.min_extent, axis=1)
        boxes, classes = boxes[keep], classes[keep]
    return boxes, classes


def _label_boxes(lab: np.ndarray, source: BoxSource) -> tuple[np.ndarray, np.ndarray]:
    if source.mode == "instances":
        _, boxes = boxes_from_instances(lab, source.min_voxels)
        return boxes.astype(np.float32), np.zeros(len(boxes), dtype=np.int64)
    import cc3d

    all_boxes, all_classes = [], []
    for value in (int(v) for v in np.unique(lab) if v != 0):
        comps = cc3d.connected_components(lab == value, connectivity=8 if lab.ndim == 2 else 26)
        _, boxes = boxes_from_instances(comps, source.min_voxels)
        all_boxes.append(boxes)
        all_classes.append(np.full(len(boxes), value - 1, dtype=np.int64))
    if not all_boxes:
        return np.zeros((0, 2 * lab.ndim), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_boxes).astype(np.float32), np.concatenate(all_classes)


def truth_boxes(case: ValidationCase, source: BoxSource) -> tuple[np.ndarray, np.ndarray]:
    """Truth boxes of a validation case: from its instance ids in ``instances`` mode when it has them.

    Every object counts, however thin its visible part (``source.min_extent`` applies to training patches only).

    Returns:
        ``(boxes (G, 2 * ndim), label values (G,))`` (label values are 1-based).
    """
    arr = case.instances if source.mode == "instances" else None
    boxes, classes = label_patch_boxes(np.asarray(arr if arr is not None else case.truth.array[0]), source.model_copy(update={"min_extent": 1}))
    return boxes.astype(np.float64), classes + 1


def validate_detection(detector: Any, cases: Sequence[ValidationCase], source: BoxSource,
                       froc_iou: float = 0.1) -> dict[str, Any]:
    """Detect objects in each held-out case and score them against the truth boxes.

    Returns:
        ``ap`` (COCO AP@[.5:.95]), ``ap50``, ``ap75``, ``recall_at_100``, ``froc`` (LUNA16-style score and
        sensitivity at 1/8..8 FP per image, hit at IoU >= ``froc_iou``), ``n_truth``, ``n_detections``,
        ``cases`` (per case counts and AP@0.5), and ``pycocotools`` (AP, AP@0.5 recomputed by
        pycocotools when it is installed, as a cross-check; 2D only).
    """
    dets, gts, per_case = [], [], {}
    for case in cases:
        name = case.name
        found = detector.detect(case.image)
        gb, gc = truth_boxes(case, source)
        dets.append((found.boxes, found.scores, found.labels))
        gts.append((gb, gc))
        one = average_precision([dets[-1]], [gts[-1]])
        per_case[name] = {"n_truth": int(len(gb)), "n_detections": int(len(found)), "ap50": one["ap50"]}
    ap = average_precision(dets, gts)
    fr = detection_froc(dets, gts, iou_threshold=froc_iou)
    out: dict[str, Any] = {
        "ap": ap["ap"],
        "ap50": ap["ap50"],
        "ap75": ap["ap75"],
        "recall_at_100": ap["recall_at_k"].get(100),
        "froc": {"score": fr["score"], "iou": froc_iou, "sensitivity_at": {str(k): v for k, v in fr["sensitivity_at"].items()}},
        "n_truth": int(sum(len(g[0]) for g in gts)),
        "n_detections": int(sum(len(d[0]) for d in dets)),
        "cases": per_case,
    }
    cross = _pycocotools_ap(dets, gts, [c.image.spatial_shape for c in cases])
    if cross is not None:
        out["pycocotools"] = cross
    return out


def _pycocotools_ap(dets: list[Any], gts: list[Any], shapes: list[tuple[int, ...]]) -> dict[str, float] | None:
    """COCOeval's AP and AP@0.5 of the same boxes (None without pycocotools or for 3D)."""
    if any(len(s) != 2 for s in shapes):
        return None
    from medannot.annotations.coco import coco_ground_truth, coco_results, pycocotools_eval

    try:
        import pycocotools  # noqa: F401
    except ImportError:
        return None
    gt = coco_ground_truth([(f"case{i}", shape, b, c) for i, (shape, (b, c)) in enumerate(zip(shapes, gts))], {})
    res = coco_results([(i + 1, b, s, c) for i, (b, s, c) in enumerate(dets)])
    stats = pycocotools_eval(gt, res)
    return {"ap": stats[0], "ap50": stats[1]}


def _detection_spec(cfg: TrainConfig) -> DetectionSpec:
    """The config's ``detection`` block; TrainConfig validation fills it for task detection."""
    if cfg.detection is None:
        raise ConfigError("task 'detection' needs a 'detection' block (anchors, thresholds, NMS) in the config")
    return cfg.detection


class DetectionTraining:
    """The detection task's :class:`~medannot.training.loop.TrainingHooks`: MONAI RetinaNet, ATSS, hard negatives.

    Args:
        cfg: A validated :class:`TrainConfig` with task ``detection`` and its ``detection`` section.

    Raises:
        ConfigError: Patch sizes that do not fit the network, or a box mode the data cannot give.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        spec = _detection_spec(cfg)
        cfg.network.params.setdefault("num_anchors", spec.num_anchors)
        check_patch(cfg)
        if spec.boxes.mode == "instances" and cfg.data.params.get("target", "labels") != "labels":
            raise ConfigError("detection.boxes.mode 'instances' needs data.params.target 'labels' (instance ids kept); "
                              "'binary' would merge touching objects")
        self.cfg, self.spec = cfg, spec
        self.source = build_source(cfg.data.source, cfg.data.params, rng_seed=cfg.seed, patch_size=list(cfg.patch_size),
                                   preprocessing=list(cfg.preprocessing), spatial_dims=cfg.spatial_dims)
        self.val_cases = self.source.validation_cases()
        self.network = create_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, len(cfg.labels) - 1, **cfg.network.params)
        self.detector = build_detector(self.network, spec, cfg.spatial_dims)
        self._bundle = bundle_from_config(cfg)

    def train_mode(self) -> None:
        """The detector (and its network) train."""
        self.detector.train()

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Image patches and their boxes (:func:`label_patch_boxes`).

        Raises:
            ModelError: A source returning other shapes than the config's patch.
        """
        cfg = self.cfg
        imgs, targets = [], []
        want = (cfg.in_channels, *cfg.patch_size)
        for _ in range(cfg.batch_size):
            img, lab = self.source.sample(rng)
            img = np.asarray(img, dtype=np.float32)
            if tuple(img.shape) != want or tuple(np.shape(lab)) != tuple(cfg.patch_size):
                raise ModelError(f"data source returned image {img.shape} and label {np.shape(lab)}; expected {want} and {tuple(cfg.patch_size)}")
            b, c = label_patch_boxes(lab, self.spec.boxes)
            imgs.append(img)
            targets.append({"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c)})
        return torch.from_numpy(np.stack(imgs)), targets

    def loss(self, rng: np.random.Generator) -> torch.Tensor:
        """Classification + box-regression loss of MONAI's RetinaNetDetector on one batch."""
        x, targets = self.batch(rng)
        parts = self.detector(x, targets)
        return parts[self.detector.cls_key] + parts[self.detector.box_reg_key]

    def validate(self) -> Validation | None:
        """COCO AP@[.5:.95] (the score), AP@0.5 and FROC of the held-out cases, found by :class:`Detector`."""
        if not self.val_cases:
            return None
        m = validate_detection(Detector(self._bundle, network=self.network), self.val_cases, self.spec.boxes)
        score = float(m["ap"] or 0.0)
        froc = float(m["froc"]["score"] or 0.0)
        return Validation(score, m, {"ap": score, "ap50": float(m["ap50"] or 0.0), "froc": froc},
                          f"val AP {score:.4f}  AP50 {m['ap50'] or 0:.4f}  FROC {froc:.4f}")

    def bundle(self, state_dict: dict[str, torch.Tensor], metrics: dict[str, Any], training: dict[str, Any]) -> Bundle:
        """The bundle of these weights."""
        return bundle_from_config(self.cfg, state_dict=state_dict, metrics=metrics, training=training)

    def measure_shipped(self, bundle: Bundle, selected: dict[str, Any]) -> Shipped:
        """AP, FROC and the pycocotools cross-check of the shipped weights through :class:`Detector` (the annotate path)."""
        if not self.val_cases:
            return Shipped({})
        metrics = dict(validate_detection(Detector(bundle), self.val_cases, self.spec.boxes), epoch=selected.get("epoch"))
        metrics["evaluated_on"] = "shipped weights loaded from the bundle folder, medannot Detector (the annotate path)"
        if selected:
            metrics["during_training"] = {k: selected.get(k) for k in ("ap", "ap50", "epoch")} | {
                "froc": (selected.get("froc") or {}).get("score")}
        return Shipped(metrics, card_notes=_card_notes(metrics))

    def card(self, metrics: dict[str, Any], run: dict[str, Any]) -> str:
        """The detection model card (the notes on how it was measured come from :meth:`measure_shipped`)."""
        return render_card(self.cfg, metrics, run)

    def data_record(self) -> dict[str, Any]:
        """The held-out validation cases by name."""
        return {"val_cases": [c.name for c in self.val_cases]}


def _card_notes(metrics: dict[str, Any]) -> str:
    """How the held-out numbers of a detection card were measured (appended to the card)."""
    if not metrics:
        return ""
    during = metrics.get("during_training") or {}
    lines = [
        "",
        "## How the held-out numbers were measured",
        "",
        "The numbers above come from the shipped bundle: its weights were loaded back from the bundle folder",
        "(as stored, float16 when the config says `weights_half`) and run through `medannot.inference.detector.Detector`,",
        "the code `medannot annotate` uses (the bundle's preprocessing, sliding window, score threshold, top-k and NMS),",
        "on the held-out cases. Boxes with score >= the bundle's `score_threshold` count; AP uses at most 100 boxes per",
        "image as COCO does.",
    ]
    if during:
        fr = during.get("froc")
        lines += ["", f"At the selected epoch {during.get('epoch')}, the same validation during training (float32 weights in memory) gave "
                  f"AP {_f(during.get('ap'))}, AP@0.5 {_f(during.get('ap50'))}, FROC {_f(fr)}."]
    return "\n".join(lines) + "\n"


def _f(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"
