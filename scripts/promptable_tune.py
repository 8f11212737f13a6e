"""EXPERIMENT: choose a promptable bundle's inference settings on TRAIN-split validation objects only.

    nice -n 10 .venv/bin/python scripts/promptable_tune.py configs/promptable_2d.yaml \\
        --variant crop=96 --variant keep_clicked=false --variant fov_margin=2.0

Loads the best-validation weights of the run's checkpoint (``log_dir/checkpoint.pt``), builds the TRAIN-split
validation objects (SYNTHETIC objects of the validation seed and real TRAIN objects, evenly over sources; no
held-out object), and runs the simulated user with the config's ``promptable`` settings and with each variant
(``key=value`` overrides of :class:`medannot.inference.promptable.PromptableSettings`). Prints one JSON line per
variant: Dice@1, Dice@last, NoC@85, mean Dice over the clicks (the loop's validation score), median seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medannot.evaluation.interactive import InteractiveAccumulator, simulate
from medannot.inference.promptable import NetworkEngine, PromptableSettings
from medannot.models.registry import create_network
from medannot.training.config import validate_config
from medannot.training.loop import checkpoint_path
from medannot.training.promptable_sources import Split, object_cases
from medannot.training.promptable_synth import SyntheticObjects
from medannot.training.promptable_training import PromptableConfig


def _value(text: str) -> Any:
    return yaml.safe_load(text)


def validation_objects(cfg: PromptableConfig, synthetic: int, real: int) -> list[Any]:
    synth = SyntheticObjects(cfg.spatial_dims, patch=cfg.data.synthetic_patch, seed=cfg.validation.seed)
    cases = [synth.draw(i) for i in range(synthetic)]
    by_source: dict[str, list[Any]] = {}
    for c in object_cases(Split.TRAIN, cfg.spatial_dims, cfg.data.sources):
        by_source.setdefault(c.source, []).append(c)
    per = -(-real // max(1, len(by_source)))
    for cs in by_source.values():
        cases += [cs[int(i)] for i in np.linspace(0, len(cs) - 1, min(per, len(cs))).round().astype(int)]
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--variant", action="append", default=[], help="key=value[,key=value] overrides of the promptable settings")
    ap.add_argument("--synthetic", type=int, default=20)
    ap.add_argument("--real", type=int, default=20)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = validate_config(PromptableConfig, a.config)
    assert isinstance(cfg, PromptableConfig)
    state = torch.load(checkpoint_path(cfg), map_location="cpu", weights_only=False)
    net = create_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, 1, **cfg.network.params)
    net.load_state_dict(state["best_state"] or state["model"])
    print(json.dumps({"checkpoint_epoch": int(state["epoch"]) + 1, "selected": state["best_metrics"]}), flush=True)
    cases = validation_objects(cfg, a.synthetic, a.real)
    base = cfg.settings.model_dump()
    for text in ["", *a.variant]:
        over = dict(item.split("=", 1) for item in text.split(",") if item)
        settings = PromptableSettings.model_validate({**base, **{k: _value(v) for k, v in over.items()}})
        engine = NetworkEngine(net, settings, name=text or "config")
        acc = InteractiveAccumulator()
        for c in cases:
            acc.update(simulate(engine, c.image, c.mask, max_clicks=a.clicks, case=c.name))
        s = acc.compute()[engine.name]
        print(json.dumps({"variant": text or "config", "objects": s.cases, "mean_dice": round(float(np.mean(s.mean_dice)), 4),
                          **s.to_dict(at=(1, 3, 5))}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
