"""EXPERIMENT: simulated-user evaluation of promptable engines on the object sources (train or held-out).

    nice -n 10 .venv/bin/python scripts/promptable_eval.py --split held-out --ndim 2 \
        --engine region-growing --engine random-walker --engine growcut --out /tmp/eval2d
    # engine parameters: NAME:key=value,key=value (crop keys: margin, box_margin, max_grow, max_voxels, seed_radius)
    # a promptable bundle (bundled name or folder): --engine promptable-2d  or  --engine runs/promptable-2d
    # its inference settings (PromptableSettings): --engine promptable-2d:min_fov=0.5,zoom_in=1
    # --synthetic N adds N SYNTHETIC objects (validation seed 12345, never trained on) to a TRAIN-split run
    #   (--synthetic-patch: their background patch side, 160 as in 2D training, 96 as in 3D training)
    # --min-voxels / --max-voxels leave out objects outside that size (e.g. the whole-hemisphere MNI152 GM / WM
    #   regions, or a 5-voxel synthetic speck)

Writes OUT/interactive.csv (one row per case and engine), OUT/summary.json and OUT/clicks_vs_dice.png, and
prints one line per engine: Dice after 1 click, Dice after N, NoC@80/85/90, failure rate at 85, median time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medannot.classical.interactive import CropSettings, list_engines
from medannot.evaluation.interactive import (
    InteractiveAccumulator,
    plot_clicks_vs_dice,
    simulate,
    write_interactive_csv,
)
from medannot.inference.promptable import PromptableSettings
from medannot.tasks.promptable import create_engine
from medannot.training.promptable_sources import object_cases

CROP_KEYS = {"margin", "box_margin", "max_grow", "max_voxels", "seed_radius"}


def parse_engine(text: str) -> Any:
    """``NAME[:key=value,...]`` -> a classical engine; crop keys go to CropSettings."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    crop: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        val: Any = float(v) if any(c in v for c in ".e") else int(v)
        (crop if k in CROP_KEYS else params)[k] = val
    if name not in list_engines():  # a network: every key is one of its PromptableSettings (max_grow included)
        engine = create_engine(name, cache=False)
        settings = {**engine.settings.model_dump(), **params, **crop}
        crop = {}
        engine.settings = PromptableSettings.model_validate(settings)
    else:
        engine = create_engine(name, **params) if params else create_engine(name, cache=False)
    if crop:
        base = engine.crop
        engine.crop = CropSettings(**{**base.__dict__, **crop})
    if rest:
        engine.name = text  # type: ignore[misc]
    return engine


def summary_lines(acc: InteractiveAccumulator) -> list[dict[str, Any]]:
    rows = []
    for name, s in acc.compute().items():
        rows.append({"engine": name, "cases": s.cases, "dice1": round(s.mean_dice[0], 3),
                     "dice3": round(s.mean_dice[min(2, len(s.mean_dice) - 1)], 3),
                     "dice_last": round(s.mean_dice[-1], 3),
                     **{f"noc{round(t * 100)}": round(v, 2) for t, v in s.mean_noc.items()},
                     **{f"fail{round(t * 100)}": round(v, 3) for t, v in s.failure_rate.items()},
                     "median_s": round(s.median_seconds, 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="held-out", choices=("train", "held-out"))
    ap.add_argument("--ndim", type=int, choices=(2, 3), default=2)
    ap.add_argument("--source", action="append", default=None, help="only these object sources")
    ap.add_argument("--engine", action="append", default=[], help="NAME[:key=value,...] (classical) or a promptable bundle")
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--limit", type=int, default=None, help="at most this many cases (evenly spaced)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--synthetic", type=int, default=0, help="add this many SYNTHETIC objects (TRAIN split only)")
    ap.add_argument("--synthetic-patch", type=int, default=160, help="background patch side of the SYNTHETIC objects")
    ap.add_argument("--min-voxels", type=int, default=0, help="leave out objects with fewer voxels")
    ap.add_argument("--max-voxels", type=int, default=None, help="leave out objects with more voxels")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    cases = object_cases(a.split, a.ndim, a.source)
    if a.limit and len(cases) > a.limit:
        cases = [cases[int(i)] for i in np.linspace(0, len(cases) - 1, a.limit)]
    if a.synthetic:
        if a.split != "train":
            ap.error("--synthetic adds validation objects to a TRAIN-split run only")
        from medannot.training.promptable_synth import SyntheticObjects

        synth = SyntheticObjects(a.ndim, patch=a.synthetic_patch, seed=12345)
        cases += [synth.draw(i) for i in range(a.synthetic)]
    cases = [c for c in cases if a.min_voxels <= int(c.mask.sum()) <= (a.max_voxels or c.mask.size)]
    print(f"{len(cases)} objects: {', '.join(c.name for c in cases)}", flush=True)
    engines = [parse_engine(e) for e in a.engine]
    acc = InteractiveAccumulator()
    for engine in engines:
        for c in cases:
            acc.update(simulate(engine, c.image, c.mask, max_clicks=a.max_clicks, case=c.name))
    rows = summary_lines(acc)
    for r in rows:
        print(json.dumps(r), flush=True)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        write_interactive_csv(acc.results, a.out / "interactive.csv")
        (a.out / "summary.json").write_text(json.dumps({"split": a.split, "ndim": a.ndim, "cases": [c.name for c in cases],
                                                         "engines": rows}, indent=1))
        plot_clicks_vs_dice(acc.compute(), a.out / "clicks_vs_dice.png", f"{a.split} {a.ndim}D objects ({len(cases)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
