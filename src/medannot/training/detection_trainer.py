"""Training a detection bundle (``task: detection``): MONAI RetinaNet with ATSS matching and hard negatives.

Same run contract as the segmentation trainer (:mod:`medannot.training.trainer`): seeded; AdamW
with the config's learning-rate schedule; patches from a registered data source whose label
patches become boxes (:func:`label_patch_boxes`); validation every ``val_every`` epochs through
the real inference path (:class:`~medannot.inference.detector.Detector` on the in-memory bundle),
scored with COCO AP (:func:`medannot.evaluation.detection.average_precision`) and FROC; early
stopping on AP@[.5:.95] with the best weights kept; TensorBoard scalars; a checkpoint after every
epoch so ``resume: true`` continues; at the end the bundle folder with its model card.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from medannot.data.boxes import boxes_from_instances
from medannot.data.image import Image
from medannot.errors import ConfigError, ModelError
from medannot.models.detection_spec import DetectionSpec
from medannot.models.detection_spec import BoxSource
from medannot.training.config import TrainConfig, lr_at

__all__ = ["label_patch_boxes", "truth_boxes", "train_detection", "validate_detection"]


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


def truth_boxes(truth: Image, source: BoxSource) -> tuple[np.ndarray, np.ndarray]:
    """Truth boxes of a validation case: from ``meta["instances"]`` in ``instances`` mode when present.

    Every object counts, however thin its visible part (``source.min_extent`` applies to training patches only).

    Returns:
        ``(boxes (G, 2 * ndim), label values (G,))`` (label values are 1-based).
    """
    arr = truth.meta.get("instances") if source.mode == "instances" else None
    boxes, classes = label_patch_boxes(np.asarray(arr if arr is not None else truth.array[0]), source.model_copy(update={"min_extent": 1}))
    return boxes.astype(np.float64), classes + 1


def validate_detection(detector: Any, cases: Sequence[tuple[str, Image, Image]], source: BoxSource,
                       froc_iou: float = 0.1) -> dict[str, Any]:
    """Detect objects in each held-out case and score them against the truth boxes.

    Returns:
        ``ap`` (COCO AP@[.5:.95]), ``ap50``, ``ap75``, ``recall_at_100``, ``froc`` (LUNA16-style score and
        sensitivity at 1/8..8 FP per image, hit at IoU >= ``froc_iou``), ``n_truth``, ``n_detections``,
        ``cases`` (per case counts and AP@0.5), and ``pycocotools`` (AP, AP@0.5 recomputed by
        pycocotools when it is installed, as a cross-check; 2D only).
    """
    from medannot.evaluation.detection import average_precision, detection_froc

    dets, gts, per_case = [], [], {}
    for name, image, truth in cases:
        found = detector.detect(image)
        gb, gc = truth_boxes(truth, source)
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
    cross = _pycocotools_ap(dets, gts, [c[1].spatial_shape for c in cases])
    if cross is not None:
        out["pycocotools"] = cross
    return out


def _pycocotools_ap(dets: list[Any], gts: list[Any], shapes: list[tuple[int, ...]]) -> dict[str, float] | None:
    """COCOeval's AP and AP@0.5 of the same boxes (None without pycocotools or for 3D)."""
    if any(len(s) != 2 for s in shapes):
        return None
    try:
        from medannot.annotations.coco import coco_ground_truth, coco_results, pycocotools_eval
    except ImportError:  # pragma: no cover - the COCO module is part of medannot
        return None
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        return None
    gt = coco_ground_truth([(f"case{i}", shape, b, c) for i, (shape, (b, c)) in enumerate(zip(shapes, gts))], {})
    res = coco_results([(i + 1, b, s, c) for i, (b, s, c) in enumerate(dets)])
    stats = pycocotools_eval(gt, res)
    return {"ap": stats[0], "ap50": stats[1]}


def _batch(source: Any, rng: np.random.Generator, n: int, cfg: TrainConfig, boxes: BoxSource) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    imgs, targets = [], []
    want = (cfg.in_channels, *cfg.patch_size)
    for _ in range(n):
        img, lab = source.sample(rng)
        img = np.asarray(img, dtype=np.float32)
        if tuple(img.shape) != want or tuple(np.shape(lab)) != tuple(cfg.patch_size):
            raise ModelError(f"data source returned image {img.shape} and label {np.shape(lab)}; expected {want} and {tuple(cfg.patch_size)}")
        b, c = label_patch_boxes(lab, boxes)
        imgs.append(img)
        targets.append({"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c)})
    return torch.from_numpy(np.stack(imgs)), targets


def _detection_spec(cfg: TrainConfig) -> DetectionSpec:
    """The config's ``detection`` block; TrainConfig validation fills it for task detection."""
    if cfg.detection is None:
        raise ConfigError("task 'detection' needs a 'detection' block (anchors, thresholds, NMS) in the config")
    return cfg.detection


def _check(cfg: TrainConfig) -> None:
    from medannot.models.detection import detection_params, retinanet_size_divisor

    div = retinanet_size_divisor(detection_params(cfg.network.name, cfg.network.params))
    for what, patch in (("patch_size", cfg.patch_size), ("inference.patch_size", cfg.inference_patch_size)):
        if any(int(p) % div for p in patch):
            raise ConfigError(f"{what} {patch} must be a multiple of {div} voxels on every axis for network {cfg.network.name!r}")
    spec = _detection_spec(cfg)
    if spec.boxes.mode == "instances" and cfg.data.params.get("target", "labels") != "labels":
        raise ConfigError("detection.boxes.mode 'instances' needs data.params.target 'labels' (instance ids kept); 'binary' would merge touching objects")


def train_detection(cfg: TrainConfig, config_path: str | Path | None = None, progress: bool | None = None) -> Path:
    """Train a detection model described by ``cfg`` (``task: detection``) and write its bundle folder.

    Args:
        cfg: A validated :class:`TrainConfig` with a ``detection`` section.
        config_path: The config file (named in the model card's re-training command).
        progress: Show progress bars (None = only on a terminal).

    Returns:
        The bundle folder (``cfg.out``).

    Raises:
        ConfigError: Patch sizes that do not fit the network, or a box mode the data cannot give.
    """
    from medannot.inference.detector import Detector
    from medannot.models.detection import build_detector, create_detection_network
    from medannot.training.callbacks import EarlyStopping, TensorBoardLogger
    from medannot.training.sources import build_source
    from medannot.training.trainer import _save_checkpoint, _seed_everything, _state_copy, bundle_from_config, checkpoint_path

    spec = cfg.detection
    if spec is None:
        raise ConfigError("task 'detection' needs a 'detection' section")
    cfg.network.params.setdefault("num_anchors", spec.num_anchors)
    _check(cfg)
    torch.set_num_threads(cfg.num_threads)
    rng = _seed_everything(cfg.seed)
    source = build_source(cfg.data.source, cfg.data.params, rng_seed=cfg.seed, patch_size=list(cfg.patch_size),
                          preprocessing=list(cfg.preprocessing), spatial_dims=cfg.spatial_dims)
    val_cases = source.validation_cases()
    n_classes = len(cfg.labels) - 1
    model = create_detection_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, n_classes, **cfg.network.params)
    trainer = build_detector(model, spec, cfg.spatial_dims)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    stopper = EarlyStopping(cfg.early_stopping_patience)
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = {}
    start_epoch, seconds = 0, 0.0
    ckpt = checkpoint_path(cfg)
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        best_state, best_metrics = state["best_state"], state["best_metrics"]
        stopper.load_state_dict(state["stopper"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        seconds = float(state.get("seconds", 0.0))
    if cfg.log_dir is not None:
        import json

        from medannot.io.atomic import atomic_write_text

        atomic_write_text(Path(cfg.log_dir) / "config.json", json.dumps(cfg.resolved(), indent=2) + "\n")
    logger = TensorBoardLogger(cfg.log_dir)
    bundle = bundle_from_config(cfg)
    epoch = start_epoch - 1
    if stopper.should_stop:
        start_epoch = cfg.epochs
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            trainer.train()
            losses: list[float] = []
            bar = tqdm(range(cfg.iterations_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if progress is None else not progress, leave=False)
            lr = cfg.optimizer.lr
            for it in bar:
                lr = lr_at(cfg.optimizer, epoch * cfg.iterations_per_epoch + it, cfg.epochs * cfg.iterations_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, targets = _batch(source, rng, cfg.batch_size, cfg, spec.boxes)
                optimizer.zero_grad(set_to_none=True)
                parts = trainer(x, targets)
                loss = parts[trainer.cls_key] + parts[trainer.box_reg_key]
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.close()
            step = (epoch + 1) * cfg.iterations_per_epoch
            logger.scalar("train/loss", float(np.mean(losses)), step)
            logger.scalar("train/lr", lr, step)
            if val_cases and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                metrics = validate_detection(Detector(bundle, network=model), val_cases, spec.boxes)
                model.train()
                score = float(metrics["ap"] or 0.0)
                logger.scalar("val/ap", score, step)
                logger.scalar("val/ap50", float(metrics["ap50"] or 0.0), step)
                logger.scalar("val/froc", float(metrics["froc"]["score"] or 0.0), step)
                if stopper.update(score, epoch):
                    best_state, best_metrics = _state_copy(model), dict(metrics, epoch=epoch + 1)
                if progress is not False:
                    tqdm.write(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  val AP {score:.4f}  AP50 {metrics['ap50'] or 0:.4f}  FROC {metrics['froc']['score'] or 0:.4f}")
            seconds += time.perf_counter() - t0
            _save_checkpoint(ckpt, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "best_state": best_state, "best_metrics": best_metrics, "stopper": stopper.state_dict(),
                "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "seconds": seconds,
            })
            if stopper.should_stop:
                break
    finally:
        logger.close()
    final_state = best_state if best_state is not None else _state_copy(model)
    run: dict[str, Any] = {"best_epoch": stopper.best_epoch + 1 if stopper.best_epoch >= 0 else epoch + 1, "epochs_run": epoch + 1, "seconds": round(seconds, 1)}
    if config_path is not None:
        run["config_path"] = Path(config_path).as_posix()
    training = dict(cfg.resolved(), run=run)
    out_bundle = bundle_from_config(cfg, state_dict=final_state, metrics=best_metrics, training=training)
    return finish_detection_bundle(cfg, out_bundle, val_cases, run, selection=best_metrics)


def finish_detection_bundle(cfg: TrainConfig, bundle: Any, val_cases: Sequence[tuple[str, Image, Image]], run: dict[str, Any],
                            selection: dict[str, Any] | None = None) -> Path:
    """Write the bundle to ``cfg.out`` with held-out metrics measured on exactly what is shipped.

    The bundle is saved (weights as stored on disk, float16 when ``weights_half``) into a
    ``<out>.partial`` folder, loaded back from that folder like ``medannot annotate`` loads it, run
    through :class:`~medannot.inference.detector.Detector` on the validation cases, and only then
    written with those metrics and its model card and renamed onto ``cfg.out``; a killed run leaves
    the previous bundle in place.

    Args:
        cfg: The training config (``out``, ``weights_half``, card texts).
        bundle: The in-memory bundle of the selected weights.
        val_cases: Held-out ``(name, image, truth)`` cases (empty: no metrics).
        run: Run summary (best epoch, epochs run, seconds, config path) for the card.
        selection: The metrics of the selected epoch measured during training (kept under
            ``metrics["during_training"]`` for comparison).

    Returns:
        The bundle folder.
    """
    import shutil

    from medannot.inference.detector import Detector
    from medannot.models.bundle import Bundle
    from medannot.training.card import render_card

    spec = _detection_spec(cfg)
    out = Path(cfg.out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    bundle.save(partial, half=cfg.weights_half)
    metrics: dict[str, Any] = {}
    if val_cases:
        shipped = Bundle.load(partial)
        metrics = dict(validate_detection(Detector(shipped), val_cases, spec.boxes), epoch=run["best_epoch"])
        metrics["evaluated_on"] = "shipped weights loaded from the bundle folder, medannot Detector (the annotate path)"
        if selection:
            metrics["during_training"] = {k: selection.get(k) for k in ("ap", "ap50", "epoch")} | {
                "froc": (selection.get("froc") or {}).get("score")}
    final = Bundle.load(partial)
    final.spec = final.spec.model_copy(update={"metrics": metrics})
    card = render_card(cfg, metrics, run) + _card_notes(metrics)
    final.save(partial, card=card, half=cfg.weights_half)
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    partial.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return out


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
