"""MODEL_CARD.md from a template: data and licence, held-out metrics, how to re-train, intended use, limits."""

from __future__ import annotations

from typing import Any

from medannot.training.config import TrainConfig

__all__ = ["render_card"]

_TEMPLATE = """# {name} {version}

{description}

| | |
|---|---|
| task | {task}, {dims}D, {in_channels} input channel(s) |
| labels | {labels} |
| network | `{network}` {params} |
| patch size (voxels) | {patch} |
| preprocessing | {preprocessing} |
| instances | {instances} |

## Training data and licence

{training_data}

Licence: {licence}

## Validation (held-out data, never used for training)

{metrics}

Best epoch: {best_epoch} of {epochs_run} run ({seconds:.0f} s, {threads} CPU thread(s), seed {seed}).

## Re-training

```
medannot train {config_path}{after_training}
```

The resolved training configuration is stored in `bundle.json` under `training`.

## Intended use

{intended_use}

## Limitations

{limitations}
"""


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _metrics_table(metrics: dict[str, Any]) -> str:
    if not metrics:
        return "No validation was run."
    rows = ["| metric | value |", "|---|---|"]
    for lname, d in metrics.get("dice", {}).items():
        rows.append(f"| Dice, {lname} | {_fmt(d)} |")
    for lname, f in metrics.get("instance_f1", {}).items():
        counts = metrics.get("instance_counts", {}).get(lname, {})
        extra = f" ({counts.get('tp')} matched of {counts.get('n_true')} true, {counts.get('n_pred')} predicted)" if counts else ""
        rows.append(f"| instance F1 at IoU 0.5, {lname} | {_fmt(f)}{extra} |")
    rows += _detection_rows(metrics)
    cases = ", ".join(metrics.get("cases", {}))
    return "\n".join(rows) + (f"\n\nValidation cases: {cases}." if cases else "")


def _detection_rows(metrics: dict[str, Any]) -> list[str]:
    """Rows for a detection bundle's metrics (COCO AP, FROC, pycocotools cross-check); none for other tasks."""
    if "ap" not in metrics:
        return []
    rows = [
        f"| AP@[.5:.95] (COCO, medannot.evaluation.detection) | {_fmt(metrics.get('ap'))} |",
        f"| AP@0.5 | {_fmt(metrics.get('ap50'))} |",
        f"| AP@0.75 | {_fmt(metrics.get('ap75'))} |",
        f"| recall, 100 boxes per image (AR@100) | {_fmt(metrics.get('recall_at_100'))} |",
    ]
    froc = metrics.get("froc") or {}
    if froc.get("score") is not None:
        at = ", ".join(f"{float(r):g}: {_fmt(v)}" for r, v in (froc.get("sensitivity_at") or {}).items())
        rows.append(f"| FROC score (mean sensitivity at 1/8..8 FP per image, hit at IoU >= {froc.get('iou')}) | {_fmt(froc['score'])} ({at}) |")
    rows.append(f"| true boxes / boxes returned (score >= threshold) | {metrics.get('n_truth')} / {metrics.get('n_detections')} |")
    coco = metrics.get("pycocotools")
    if coco:
        rows.append(f"| cross-check: pycocotools COCOeval AP@[.5:.95] / AP@0.5 | {_fmt(coco.get('ap'))} / {_fmt(coco.get('ap50'))} |")
    return rows


def render_card(config: TrainConfig, metrics: dict[str, Any], run: dict[str, Any]) -> str:
    """The model card text (Markdown) for a finished run.

    Args:
        config: The training config (``card`` holds the free text).
        metrics: Validation metrics of the kept weights (see ``validation.validate``).
        run: ``{"best_epoch", "epochs_run", "seconds"}``.
    """
    c = config.card
    labels = ", ".join(f"{k} {v.name}" for k, v in sorted(config.labels.items(), key=lambda kv: int(kv[0])))
    return _TEMPLATE.format(
        config_path=run.get("config_path") or f"configs/{config.name}.yaml",
        name=config.name,
        version=config.version,
        description=c.description or f"Segmentation model `{config.name}` trained with medannot.",
        task=config.task,
        dims=config.spatial_dims,
        in_channels=config.in_channels,
        labels=labels,
        network=config.network.name,
        params=config.network.params or "",
        patch=config.inference_patch_size,
        preprocessing=", ".join(s.get("name", "?") for s in config.preprocessing) or "none",
        instances=config.instances or "none",
        training_data=c.training_data or f"Data source `{config.data.source}` with params {config.data.params}.",
        licence=c.licence or "not stated",
        metrics=_metrics_table(metrics),
        best_epoch=run.get("best_epoch", "-"),
        epochs_run=run.get("epochs_run", "-"),
        seconds=float(run.get("seconds", 0.0)),
        threads=config.num_threads,
        seed=config.seed,
        intended_use=c.intended_use or "Research and annotation assistance; every output needs review by a qualified person.",
        limitations=c.limitations or "Validated only on the held-out data above; other scanners, stains or protocols may fail silently.",
        after_training="".join(f"\n{line.strip()}" for line in c.after_training.strip().splitlines() if line.strip()),
    )
