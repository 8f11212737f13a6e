"""Federated (Flower, 3 simulated sites) next to pooled training and to each site alone, on the same held-out cases.

Data: the real stardist nuclei sample (2018 Data Science Bowl). The left half (columns 0-247) is cut into eight
128x124 tiles and dealt to three sites, disjoint: even (3, 3, 2 tiles) or uneven (5, 2, 1 tiles, with
``--uneven``); the right half (columns 256-511, never trained on) is the one held-out case every arm is scored on.
Every arm trains ``configs/federated-nuclei.yaml`` for the same number of epochs per site (``--epochs``; federated:
``rounds x local epochs`` of it), from the same seed, and ships a bundle measured by the one loop (foreground Dice
of the held-out half through the real inference path).

Arms: pooled (all eight tiles in one place: the centralised upper reference), each site alone, FedAvg and (with
``--fedprox MU``) FedProx. Prints a Markdown table and writes ``OUT/results.json``.

Usage: ``nice python scripts/federated_compare.py [--epochs 40] [--local-epochs 2] [--seeds 0 1 2] [--uneven] [--fedprox 0.01]``
(``--data-only`` writes the dataset folders and stops: the README's three-site example uses them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from medannot import samples
from medannot.models.bundle import Bundle
from medannot.tasks import train
from medannot.training.config import read_config_file
from medannot.training.federated import FederatedRun, FederatedSettings, simulate
from medannot.training.federated_data import tile_pairs, write_dataset
from medannot.workflows.federated import registry_binding, server_config

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "federated-nuclei.yaml"
LABELS = {0: "background", 1: "nucleus"}


def make_sites(root: Path, uneven: bool) -> tuple[list[tuple[str, Path]], Path, Path]:
    """Site folders, the pooled folder (all tiles) and the held-out folder (the right half)."""
    image, label = samples.nuclei_image(), samples.nuclei_instances()
    tiles = tile_pairs(image, label, (128, 124), "nuclei", region=[(0, 512), (0, 248)])
    cuts = (5, 7, 8) if uneven else (3, 6, 8)
    parts = {"site-a": tiles[: cuts[0]], "site-b": tiles[cuts[0]:cuts[1]], "site-c": tiles[cuts[1]:cuts[2]]}
    sites = [(name, write_dataset(pairs, root / name, LABELS, file_ending=".tif")) for name, pairs in parts.items()]
    pooled = write_dataset(tiles, root / "pooled", LABELS, file_ending=".tif")
    held = write_dataset(tile_pairs(image, label, (512, 256), "heldout", region=[(0, 512), (256, 512)]), root / "heldout", LABELS,
                         file_ending=".tif")
    return sites, pooled, held


def score(bundle: Path) -> dict[str, Any]:
    """Held-out Dice (and instance F1 when measured) of a shipped bundle, and its training seconds."""
    spec = Bundle.load(bundle).spec
    m = spec.metrics
    return {"dice": round(float(m["mean_dice"]), 4), "instance_f1": m.get("instance_f1"),
            "seconds": spec.training.get("run", {}).get("seconds")}


def central(name: str, data: Path, held: Path, out: Path, epochs: int, seed: int) -> dict[str, Any]:
    """Train one arm in one place (pooled or a single site) with the one loop."""
    cfg = read_config_file(CONFIG)
    cfg["data"]["params"].update({"path": str(data), "val_path": str(held)})
    cfg.update({"epochs": epochs, "seed": seed, "out": str(out / name), "name": f"nuclei-{name}", "select_best": False, "val_every": epochs})
    t0 = time.perf_counter()
    bundle = train(cfg, progress=False)
    return {**score(bundle), "wall_s": round(time.perf_counter() - t0, 1)}


def federated(name: str, sites: list[tuple[str, Path]], held: Path, out: Path, epochs: int, local: int, seed: int,
              strategy: str, mu: float) -> dict[str, Any]:
    """Train one arm across the simulated sites with Flower."""
    data = server_config(CONFIG, val=held, out=out / name, overrides={"seed": seed, "name": f"nuclei-{name}"})
    settings = FederatedSettings(rounds=max(1, epochs // local), local_epochs=local, strategy=strategy, proximal_mu=mu, min_sites=len(sites))
    t0 = time.perf_counter()
    bundle = simulate(FederatedRun(data, registry_binding(), settings), sites)
    return {**score(bundle), "wall_s": round(time.perf_counter() - t0, 1), "rounds": settings.rounds, "local_epochs": local}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="epochs per site (federated: rounds x local epochs)")
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--uneven", action="store_true", help="sites of 5, 2 and 1 tiles instead of 3, 3 and 2")
    parser.add_argument("--fedprox", type=float, default=None, help="also run FedProx with this mu")
    parser.add_argument("--out", type=Path, default=Path("runs/federated-compare"))
    parser.add_argument("--data-only", action="store_true", help="only write the site, pooled and held-out dataset folders (OUT/even|uneven/data)")
    args = parser.parse_args()
    out: Path = args.out / ("uneven" if args.uneven else "even")
    sites, pooled, held = make_sites(out / "data", args.uneven)
    if args.data_only:
        print("\n".join(f"{name}: {folder}" for name, folder in [*sites, ("pooled", pooled), ("held-out", held)]))
        return
    results: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:
        run_dir = out / f"seed{seed}"
        arms: dict[str, Callable[[], dict[str, Any]]] = {
            "pooled (centralised)": partial(central, "pooled", pooled, held, run_dir, args.epochs, seed)}
        for name, folder in sites:
            arms[f"{name} alone"] = partial(central, name, folder, held, run_dir, args.epochs, seed)
        arms["federated FedAvg"] = partial(federated, "fedavg", sites, held, run_dir, args.epochs, args.local_epochs, seed, "fedavg", 0.0)
        if args.fedprox is not None:
            arms[f"federated FedProx (mu {args.fedprox})"] = partial(federated, "fedprox", sites, held, run_dir, args.epochs, args.local_epochs,
                                                                     seed, "fedprox", args.fedprox)
        for arm, fn in arms.items():
            res = {"seed": seed, **fn()}
            results.setdefault(arm, []).append(res)
            print(f"seed {seed} {arm}: Dice {res['dice']:.4f} ({res['wall_s']} s)", flush=True)
    counts = {name: len(list((folder / "imagesTr").glob("*.tif"))) for name, folder in sites}
    print(f"\nheld-out: right half of the stardist nuclei image; sites (tiles): {counts}; {args.epochs} epochs per site; seeds {args.seeds}\n")
    print("| arm | held-out Dice (mean over seeds) | per seed |\n|---|---|---|")
    for arm, rows in results.items():
        dice = [r["dice"] for r in rows]
        print(f"| {arm} | {sum(dice) / len(dice):.4f} | {', '.join(f'{d:.4f}' for d in dice)} |")
    (out / "results.json").write_text(json.dumps({"sites": counts, "epochs": args.epochs, "local_epochs": args.local_epochs,
                                                  "seeds": args.seeds, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
