"""The model card of a promptable bundle: data and split, licences, held-out scores beside the classical engines."""

from __future__ import annotations

from typing import Any

from medannot.training.loop import config_chain
from medannot.training.promptable_sources import Split, object_sources

__all__ = ["held_out_notes", "model_card"]

ENGINE_COLUMNS = (("dice1", "Dice@1"), ("dice3", "Dice@3"), ("dice5", "Dice@5"), ("dice_last", "Dice@last"), ("noc80", "NoC@80"),
                  ("noc85", "NoC@85"), ("noc90", "NoC@90"), ("fail85", "fail@85"), ("fail90", "fail@90"),
                  ("median_seconds", "s / interaction"))

LICENCES = """\
| data | used for | licence |
|---|---|---|
| MNI ICBM152 2009a T1 and GM/WM maps (medannot `data_samples/mni152`, from nilearn 0.14.1) | TRAIN objects and 3D synthetic backgrounds | free use with attribution (Fonov et al. 2009, 2011); nilearn BSD-3 |
| stardist `img2d.tif` / `mask2d.tif` (BBBC038 sample, from stardist 0.9.2), LEFT half | TRAIN objects and a synthetic background | BSD-3 (stardist), CC0 (BBBC038) |
| stardist RIGHT half | HELD-OUT objects only | as above |
| pydicom / pydicom-data CT, MR, US, RG files (`medannot.training.modality_samples`, held-out images excluded) | synthetic backgrounds | MIT |
| pydicom-data `liver.dcm` (DICOM SEG, no image) | shapes of synthetic objects | MIT |
| Colin27 `ch2.nii.gz`, `ch2better.nii.gz`, AAL `aal.nii.gz` (Debian `mricron-data`) | HELD-OUT objects only | mricron distribution terms (BSD-style); AAL: Tzourio-Mazoyer et al. 2002 |
| pydicom-data `MR-SIEMENS-DICOM-WithOverlays.dcm` (hand-drawn lesion overlay) | HELD-OUT object only | MIT |
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value) if value is not None else "-"


def engine_table(engines: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per engine, the :data:`ENGINE_COLUMNS` it has."""
    cols = [(k, w) for k, w in ENGINE_COLUMNS if any(k in e for e in engines.values())]
    lines = ["| engine | " + " | ".join(w for _, w in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, e in engines.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(e.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def held_out_notes(metrics: dict[str, Any], network: str) -> str:
    """The card's held-out section: overall and per-source tables, the issue's targets checked."""
    engines = metrics.get("engines", {})
    if not engines:
        return "\n## Held-out accuracy\n\nNot measured (no held-out object available).\n"
    clicks = next(iter(engines.values())).get("clicks", "?")
    out = [f"\n## Held-out accuracy (real objects never trained on, {metrics.get('cases', '?')} objects, {clicks} simulated interactions)\n",
           "Measured on the shipped weights loaded back from disk, the classical engines in the same run and on the same "
           "objects (`held_out_interactive.csv`: every session, Dice after each interaction; "
           "`held_out_clicks_vs_dice.png`). Simulated user: first click at the object's point farthest from its boundary, "
           "each next click at the centre of the largest error region (positive on a miss, negative on a false alarm); "
           "NoC@t = interactions to reach Dice t, capped (a failure counts the cap).\n",
           engine_table(engines)]
    for source, table in metrics.get("per_source", {}).items():
        n = next(iter(table.values())).get("cases", "?") if table else 0
        out.append(f"\n`{source}` ({n} objects):\n\n" + engine_table(table))
    out.append(_targets(engines, metrics.get("per_source", {}), network))
    return "\n".join(out)


def _targets(engines: dict[str, dict[str, Any]], per_source: dict[str, dict[str, Any]], network: str) -> str:
    own = engines.get(network)
    classical = {k: v for k, v in engines.items() if k != network}
    if not own or not classical:
        return ""
    best_d1 = max(v.get("dice1", 0.0) for v in classical.values())
    lines = ["\n### The issue's targets (issue 11), checked on these numbers\n"]
    for name, v in classical.items():
        if "noc85" in v:
            ok = own["noc85"] <= 0.5 * v["noc85"]
            lines.append(f"- NoC@85 at most half of {name}'s: {own['noc85']:.2f} vs {0.5 * v['noc85']:.2f} -> "
                         f"{'met' if ok else 'NOT met'}")
    d1_ok = own.get("dice1", 0.0) >= best_d1 + 0.15
    lines.append(f"- Dice@1 at least the best classical + 0.15: {own.get('dice1', 0.0):.3f} vs {best_d1 + 0.15:.3f} -> "
                 f"{'met' if d1_ok else 'NOT met'}" + (" (cannot be met here: the best classical Dice@1 + 0.15 exceeds 1)"
                                                     if best_d1 + 0.15 > 1.0 else ""))
    for source, table in per_source.items():
        mine = table.get(network)
        others = {k: v for k, v in table.items() if k != network}
        if not mine or not others:
            continue
        best = max(others.items(), key=lambda kv: kv[1].get("dice1", 0.0))
        lines.append(f"- `{source}`: Dice@1 {mine.get('dice1', 0.0):.3f} vs best classical {best[0]} {best[1].get('dice1', 0.0):.3f} "
                     f"(+0.15 target {'met' if mine.get('dice1', 0.0) >= best[1].get('dice1', 0.0) + 0.15 else 'not met'}); "
                     f"NoC@85 {mine.get('noc85', 0.0):.2f} vs " + ", ".join(f"{k} {v.get('noc85', 0.0):.2f}" for k, v in others.items()))
    return "\n".join(lines) + "\n"


def model_card(cfg: Any, metrics: dict[str, Any], run: dict[str, Any]) -> str:
    """The card's body (the held-out section comes from :func:`held_out_notes`)."""
    nd = cfg.spatial_dims
    train_sources = ", ".join(f"`{k}` ({v} objects)" for k, v in (run.get("train_objects") or {}).items()) or "none"
    held = ", ".join(f"`{s.name}`" for s in object_sources(Split.HELD_OUT, nd) if not cfg.held_out.sources or s.name in cfg.held_out.sources)
    val = metrics.get("validation") or {}
    cmd = f"medannot train {run['config_path']}" if run.get("config_path") else "medannot train CONFIG"
    parent = run.get("parent") or {}
    chain = config_chain(parent)
    if chain:  # a later stage: its ancestors are trained first, in order
        cmd = "`, then `".join(f"medannot train {c}" for c in chain) + f"` (the parent{'s' if len(chain) > 1 else ''}), then `{cmd}"
    s = cfg.settings
    zoom = ("; a lone first click is predicted again in a field of view fitted to its first mask (zoom-in)" if s.zoom_in else "")
    zoom += (f"; the field of view fits the prompts and previous mask down to {s.min_fov} x the native one (small objects "
             "upsampled)" if s.min_fov < 1 else "")
    card = cfg.card
    parts = [
        f"# {cfg.name} {cfg.version}\n",
        (card.description or f"Class-agnostic promptable segmentation ({nd}D): clicks, a box, scribbles and an optional "
                             "previous mask in, the mask of the object pointed at out.") + "\n",
        "## Use\n",
        f"`medannot segment IMAGE --engine {cfg.name} --point X,Y{',Z' if nd == 3 else ''} --out DIR`, or the review page's "
        "Smart tool, or `medannot.tasks.promptable.create_engine(\"" + cfg.name + "\")`. "
        + (card.intended_use or "For annotating objects no bundled model covers; every mask is a proposal for a person to check.") + "\n",
        "## Network and inference\n",
        f"`{cfg.network.name}` {cfg.network.params or ''}: {cfg.in_channels} input channels (image normalised in the crop, positive "
        "and negative clicks as discs with a distance tail, box, previous mask), one object logit out. Inference crop "
        f"{cfg.settings.crop} voxels around the prompts, isotropic in mm, at the image's finest resolution or "
        f"{cfg.settings.fov_margin} x the prompts' extent; the field of view doubles while the mask reaches the crop's "
        f"border inside the image (at most {cfg.settings.max_grow} times){zoom}, so the cost of one interaction does not "
        "depend on the image size.\n",
        "## Training data and split\n",
        f"TRAIN real objects: {train_sources}; SYNTHETIC objects ({cfg.data.p_synthetic:.0%} of each batch): random smooth shapes "
        "and liver outlines with random contrast, texture and blur pasted into real CT, MR, US, radiograph and microscopy "
        "backgrounds (no held-out image among them). Real objects are drawn source by source (each source equally often). "
        f"HELD-OUT (never trained on, never used for a choice): {held}. Nuclei of both halves come from the same image; the "
        "Colin27 brain is another head than MNI152, same modality (T1)."
        + (f" The weights started from `{parent['bundle']}` {parent['version']} (see Transfer learning): its TRAIN objects and "
           "validation (its card) are this network's training data too; none of its sources is held out here."
           if parent else "") + "\n",
        "Simulated iterative prompting (RITM-style): each example starts from a first click (centre or a random inside "
        "point), a jittered box, or a corrupted previous mask; then the network itself predicts without gradients "
        f"0..{cfg.data.max_iterations} times, a click goes to the centre of the largest error each time and the prediction "
        "becomes the previous mask; loss = binary cross-entropy weighted "
        f"x{1 + cfg.data.click_weight:.0f} at the clicks (falling to x1 at {cfg.data.click_weight_radius:.0f} crop voxels) + soft Dice.\n",
        "## Which choices saw which data\n",
        ("- Checkpoint selection (best validation score: mean Dice over the validation clicks), the inference settings and "
         if run.get("selection") != "last epoch" else
         "- The weights are the last epoch's (`select_best: false`, chosen against the best-validation epoch on TRAIN-split "
         "objects; the config says how); the inference settings and ")
        + f"every hyper-parameter: TRAIN-split validation only ({run.get('validation_objects', {})}: SYNTHETIC objects of another "
        "seed and real TRAIN objects; the real ones were trained on, so validation is optimistic).\n"
        "- The held-out objects were scored once per shipped bundle (below); nothing was tuned on them.\n",
        f"Selected validation: {', '.join(f'{k} {_fmt(v)}' for k, v in val.items())}.\n" if val else "",
        "## Training run\n",
        f"{run.get('epochs_run', '?')} epochs x {cfg.iterations_per_epoch} steps, batch {cfg.batch_size}, AdamW lr {cfg.optimizer.lr} "
        f"({cfg.optimizer.schedule}), {cfg.num_threads} CPU thread(s), {run.get('seconds', '?')} s of training; selection: "
        f"{run.get('selection', '?')} (epoch {run.get('best_epoch', '?')}).\n",
        f"Re-train: `{cmd}` (add `resume: true` to continue an interrupted run from its checkpoint).\n",
        "## Data licences\n",
        LICENCES,
        "## Limitations\n",
        (card.limitations or "Trained briefly on a shared CPU; few real object kinds (brain tissue regions, fluorescence nuclei) "
         "and synthetic shapes. Check every mask.") + "\n",
    ]
    return "\n".join(p for p in parts if p)
