"""The files of ``medannot simulate``: per-case effort and learning curves as CSV, the summary, plots and a report.

- ``cases.csv``: one row per reviewed case and arm (order, side, strategy score, which version proposed it, proposal
  Dice, voxels changed, voxels of painting it by hand, clicks, objects corrected and failed, eraser strokes).
- ``curve.csv``: one row per training round and arm (cases labelled, train/validation split, the gate's decision
  with both models' validation Dice, the candidate's and the active model's held-out Dice, time, steps).
- ``summary.json`` / ``summary.md``: per arm the final held-out Dice, the labels needed to reach 95 % of the
  full-data Dice, total voxels changed against painting every case by hand, clicks against no learning; and the
  goals of issue 12 (reported, never asserted).
- ``learning_curves.png``, ``effort.png`` and ``report.html`` (both plots and the tables in one page).
"""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path
from typing import Any

from medannot.errors import OutputError

__all__ = ["labels_to_reach", "write_report"]

GOAL_LABEL_RATIO = 0.60
"""Issue 12: uncertainty or diversity reaches 95 % of the full-data Dice with at most 60 % of random's labels."""
GOAL_EFFORT_RATIO = 0.50
"""Issue 12: cumulative correction effort below 50 % of painting every case by hand."""


def labels_to_reach(curve: list[dict[str, Any]], level: float) -> int | None:
    """Cases labelled when the active model's held-out Dice first reached ``level`` (None: never)."""
    for row in curve:
        if row["round"] and float(row["heldout_dice"]) >= level - 1e-12:
            return int(row["labelled"])
    return None


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"cannot write {path.name}: {exc.strerror}", path) from None


def _plots(out: Path, runs: list[Any], reference: float, data_name: str) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = out / "learning_curves.png"
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    for run in runs:
        xs = [r["labelled"] for r in run.curve_rows]
        ys = [r["heldout_dice"] for r in run.curve_rows]
        label = "no learning" if not run.learns else run.name
        ax.step(xs + [len(run.labelled)], ys + [ys[-1]], where="post", marker="o", markersize=3, label=label,
                linestyle=":" if not run.learns else "-")
    ax.axhline(reference, color="grey", linewidth=0.8, linestyle="--", label=f"full data {reference:.3f}")
    ax.axhline(0.95 * reference, color="grey", linewidth=0.6, linestyle=":", label="95 % of full data")
    ax.set_xlabel("cases labelled (accepted)")
    ax.set_ylabel("held-out mean Dice of the active model")
    ax.set_ylim(0, 1)
    ax.set_title(f"learning curves: {data_name}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(curves)
    plt.close(fig)

    effort = out / "effort.png"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for run in runs:
        rows = run.case_rows
        xs = list(range(1, len(rows) + 1))
        vox, clicks, total_v, total_c = [], [], 0, 0
        for r in rows:
            total_v += r["voxels_changed"]
            total_c += r["clicks"]
            vox.append(total_v)
            clicks.append(total_c)
        label = "no learning (paint / click from nothing)" if not run.learns else run.name
        axes[0].plot(xs, vox, label=label, linestyle=":" if not run.learns else "-")
        axes[1].plot(xs, clicks, label=label, linestyle=":" if not run.learns else "-")
    axes[0].set_xlabel("cases reviewed")
    axes[0].set_ylabel("cumulative voxels changed")
    axes[1].set_xlabel("cases reviewed")
    axes[1].set_ylabel("cumulative clicks (promptable engine)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"correction effort: {data_name}")
    fig.tight_layout()
    fig.savefig(effort)
    plt.close(fig)
    return curves, effort


def _summary(runs: list[Any], reference: float, full: dict[str, Any] | None) -> dict[str, Any]:
    base = next((r for r in runs if not r.learns), None)
    base_clicks = sum(c["clicks"] for c in base.case_rows) if base else 0
    arms: dict[str, Any] = {}
    for run in runs:
        changed = sum(c["voxels_changed"] for c in run.case_rows)
        manual = sum(c["manual_voxels"] for c in run.case_rows)
        clicks = sum(c["clicks"] for c in run.case_rows)
        need = labels_to_reach(run.curve_rows, 0.95 * reference) if run.learns else None
        arms[run.name] = {
            "cases": len(run.case_rows),
            "rounds": len(run.records),
            "versions_activated": sum(1 for r in run.curve_rows if r["gate_passed"] == 1),
            "final_heldout_dice": round(float(run.curve_rows[-1]["heldout_dice"]), 4),
            "labels_to_95pct": need,
            "labels_to_95pct_fraction": None if need is None else round(need / max(1, len(run.case_rows)), 3),
            "voxels_changed": changed,
            "manual_voxels": manual,
            "effort_ratio_voxels": round(changed / manual, 4) if manual else None,
            "clicks": clicks,
            "clicks_ratio_vs_no_learning": round(clicks / base_clicks, 4) if base_clicks else None,
            "objects_failed": sum(c["objects_failed"] for c in run.case_rows),
            "seconds": round(run.seconds, 1),
        }
    rnd = arms.get("random", {}).get("labels_to_95pct")
    ratios = {s: round(arms[s]["labels_to_95pct"] / rnd, 3) for s in ("uncertainty", "diversity", "mix")
              if s in arms and rnd and arms[s]["labels_to_95pct"]}
    goals = {
        "labels": {
            "goal": f"uncertainty or diversity reaches 95 % of the full-data Dice with at most {GOAL_LABEL_RATIO:.0%} of "
                    "the labels random needs",
            "ratios_vs_random": ratios,
            "met": bool(ratios) and min(v for k, v in ratios.items() if k in ("uncertainty", "diversity")) <= GOAL_LABEL_RATIO
            if any(k in ratios for k in ("uncertainty", "diversity")) else None,
        },
        "effort": {
            "goal": f"cumulative correction effort below {GOAL_EFFORT_RATIO:.0%} of painting every case by hand",
            "ratios": {k: v["effort_ratio_voxels"] for k, v in arms.items() if k != "none"},
            "met": {k: (v["effort_ratio_voxels"] is not None and v["effort_ratio_voxels"] < GOAL_EFFORT_RATIO)
                    for k, v in arms.items() if k != "none"},
        },
    }
    return {"reference_dice": round(reference, 4), "reference": "full-data model" if full else "best final Dice of the strategies",
            "full_data": full, "arms": arms, "goals": goals}


def _markdown(summary: dict[str, Any], head: dict[str, Any]) -> str:
    lines = [f"# Simulation: {head['dataset']}", "",
             f"{head['cases']} cases ({head['dims']}D): {head['pool']} reviewed, {head['holdout']} held out; retrain every "
             f"{head['retrain_every']}; engine {head['engine']} to Dice {head['target']}; {head['seconds']:.0f} s in all.", "",
             f"Reference: {summary['reference']} held-out Dice {summary['reference_dice']:.3f}.", "",
             "| arm | final held-out Dice | labels to 95 % | voxels changed / painting all | clicks | clicks vs no learning | rounds (activated) |",
             "|---|---|---|---|---|---|---|"]
    for name, a in summary["arms"].items():
        need = "-" if a["labels_to_95pct"] is None else f"{a['labels_to_95pct']} ({a['labels_to_95pct_fraction']:.0%})"
        ratio = "-" if a["effort_ratio_voxels"] is None else f"{a['effort_ratio_voxels']:.3f}"
        cr = "-" if a["clicks_ratio_vs_no_learning"] is None else f"{a['clicks_ratio_vs_no_learning']:.3f}"
        lines.append(f"| {'no learning' if name == 'none' else name} | {a['final_heldout_dice']:.3f} | {need} | {ratio} | "
                     f"{a['clicks']} | {cr} | {a['rounds']} ({a['versions_activated']}) |")
    g = summary["goals"]
    lines += ["", f"Goal (labels): {g['labels']['goal']}: ratios {g['labels']['ratios_vs_random'] or 'n/a'}, "
              f"met: {g['labels']['met']}.",
              f"Goal (effort): {g['effort']['goal']}: {g['effort']['ratios']}, met: {g['effort']['met']}.", ""]
    return "\n".join(lines)


def _html(summary: dict[str, Any], curves: Path, effort: Path, curve_rows: list[dict[str, Any]]) -> str:
    """The report page (template ``simulation_report.html``; plots inlined as base64 PNG)."""
    from medannot.templates import render

    keys = ["strategy", "round", "labelled", "train", "val", "gate_passed", "candidate_val_dice", "active_val_dice",
            "candidate_heldout_dice", "heldout_dice", "active_version", "seconds", "budget_hit"]
    return render("simulation_report.html", s=summary, keys=keys, rows=curve_rows,
                  curves=base64.b64encode(curves.read_bytes()).decode(), effort=base64.b64encode(effort.read_bytes()).decode())


def write_report(out: Path, data: Any, sim: Any, runs: list[Any], full: dict[str, Any] | None, opts: Any,
                 seconds: float) -> dict[str, Any]:
    """Write every file of the simulation (see the module docstring); returns the summary.

    Raises:
        OutputError: A file cannot be written.
    """
    from medannot.io import atomic_write_text

    case_rows = [r for run in runs for r in run.case_rows]
    curve_rows = [r for run in runs for r in run.curve_rows]
    _write_csv(case_rows, out / "cases.csv")
    _write_csv(curve_rows, out / "curve.csv")
    finals = [float(run.curve_rows[-1]["heldout_dice"]) for run in runs if run.learns]
    reference = float(full["heldout_dice"]) if full else max(finals, default=0.0)
    summary = _summary(runs, reference, full)
    head = {"dataset": data.name, "cases": len(data.cases), "dims": data.spatial_dims, "pool": len(sim.pool),
            "holdout": len(sim.holdout), "retrain_every": opts.retrain_every, "engine": opts.settings.engine,
            "target": opts.target_dice, "seconds": seconds}
    summary = {**head, "settings": opts.settings.model_dump(mode="json"), **summary}
    md = _markdown(summary, head)
    curves, effort = _plots(out, runs, reference, data.name)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", md)
    atomic_write_text(out / "report.html", _html(summary, curves, effort, curve_rows))
    return summary
