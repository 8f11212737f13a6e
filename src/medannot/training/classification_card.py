"""MODEL_CARD.md of a classification bundle: data and split by source, per-class held-out results, calibration, limits."""

from __future__ import annotations

from collections import Counter
from typing import Any

from medannot.training.classification_config import ClassificationConfig
from medannot.training.classification_data import ClassSample

__all__ = ["render_classification_card"]


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("n/a" if v is None else str(v))


def _split_table(cfg: ClassificationConfig, samples: list[ClassSample], train_idx: list[int], val_idx: list[int]) -> str:
    rows = ["| class | training sources (images) | held-out sources (images) |", "|---|---|---|"]
    for c in cfg.classes:
        parts = []
        for idx in (train_idx, val_idx):
            counts = Counter(samples[i].group for i in idx if samples[i].label == c)
            parts.append(", ".join(f"{g} ({n})" for g, n in sorted(counts.items())) or "none")
        rows.append(f"| {c} | {parts[0]} | {parts[1]} |")
    return "\n".join(rows)


def _metrics(cfg: ClassificationConfig, m: dict[str, Any]) -> str:
    if not m:
        return "No held-out data: nothing was validated."
    rows = ["| class | precision | recall | F1 | held-out images |", "|---|---|---|---|---|"]
    for c in cfg.classes:
        pc = m["per_class"][c]
        rows.append(f"| {c} | {_f(pc['precision'])} | {_f(pc['recall'])} | {_f(pc['f1'])} | {pc['support']} |")
    cal = m["calibration"]
    lines = [
        "\n".join(rows), "",
        f"Accuracy {_f(m['accuracy'])}, balanced accuracy {_f(m['balanced_accuracy'])}, macro F1 {_f(m['macro_f1'])}, "
        f"one-vs-rest ROC AUC {_f(m['roc_auc'])} over {m['n']} held-out images.", "",
        "Confusion matrix (rows = truth, columns = prediction, order " + ", ".join(cfg.classes) + "): `" + str(m["confusion_matrix"]) + "`", "",
        "Per held-out source (each is one acquisition; accuracy over its images, and the majority vote):", "",
        "| source | truth | images | accuracy | majority vote |", "|---|---|---|---|---|",
        *[f"| {g} | {r['truth']} | {r['n']} | {_f(r['accuracy'])} | {r['majority']} |" for g, r in m["per_group"].items()], "",
        "## Calibration (temperature scaling)", "",
        f"Temperature {cal['temperature']:.3f} fitted on the held-out images (NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}). "
        f"Top-label ECE ({cal['n_bins']} bins): {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after on the same images "
        f"(optimistic: fitted there), {cal['ece_cross_fitted']:.3f} when each source's temperature is fitted on the other "
        "held-out sources only (the honest figure).",
    ]
    return "\n".join(lines)


def render_classification_card(cfg: ClassificationConfig, metrics: dict[str, Any], run: dict[str, Any], samples: list[ClassSample],
                               train_idx: list[int], val_idx: list[int]) -> str:
    """The model card text (Markdown) of a finished classification run."""
    c = cfg.card
    return f"""# {cfg.name} {cfg.version}

{c.description}

| | |
|---|---|
| task | classification, {cfg.spatial_dims}D, {cfg.in_channels} input channel(s) |
| classes | {", ".join(f"{i} {n}" for i, n in enumerate(cfg.classes))} |
| network | `{cfg.network.name}` {cfg.network.params} |
| input | {cfg.input.input_size} voxels, intensities clipped to percentiles {list(cfg.input.percentiles)} and scaled to [0, 1], padded to square |
| loss | cross-entropy, class weights `{cfg.class_weights.value}` |
| output | class probabilities, temperature-scaled (`calibrated: {cfg.calibrate}`) |

## Training data and licence

{c.training_data}

Split by source (an acquisition is entirely on one side; the held-out sources were never trained on and were not
used to choose the model: the final weights are shipped):

{_split_table(cfg, samples, train_idx, val_idx)}

Licence: {c.licence}

## Held-out results

{_metrics(cfg, metrics)}

Training: {run['epochs_run']} epochs of {cfg.iterations_per_epoch} steps, batch {cfg.batch_size}, {run['seconds']:.0f} s on {cfg.num_threads} CPU thread(s), seed {cfg.seed}.

## Re-training

```
medannot train {run.get('config_path', 'CONFIG')}
```

The resolved configuration is stored in `bundle.json` under `training`.

## Intended use

{c.intended_use}

## Limitations

{c.limitations}
"""
