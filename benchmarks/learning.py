"""Learning-loop timings (issue 12, Performance): one fine-tuning round on 20 accepted 2D cases, and a 3D round bounded
by the project's time budget.

- 2D: 20 real 64x64 tiles of the stardist nuclei sample with their hand-drawn masks, split as a project splits them
  (fixed validation share 0.2: 16 train, 4 validate); v1 is trained first on the first 10 cases (not timed), then
  the timed round fine-tunes v2 from v1 on all 20 with the default recipe (6 epochs x 20 steps x 8 patches), then
  the candidate and v1 are measured on the validation cases and gated: what a worker does for a training job.
  Target: under 120 s on 2 CPU threads. Wall and CPU seconds are printed (the machine may be shared).
- 3D: 6 crops (48^3 voxels) of the MNI152 2009a T1 with its grey/white-matter labels, a recipe far longer than the
  budget and ``time_budget_s`` 30: the round must stop near the budget, ship a measured bundle and report progress.

Run: ``python benchmarks/learning.py [--budget 30]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medannot import samples
from medannot.data import Image
from medannot.io import write_image
from medannot.training.sources import crop_image
from medannot.workflows.learning.gate import decide, score_masks
from medannot.workflows.learning.proposer import Proposer
from medannot.workflows.learning.rounds import LabelledCase, RoundSpec, run_round
from medannot.workflows.learning.settings import GateRule, TrainingRecipe
from medannot.workflows.learning.split import Side, assign_side


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _write(folder: Path, name: str, image: Image, label: np.ndarray) -> LabelledCase:
    ip, lp = folder / f"{name}_img.nii.gz", folder / f"{name}_lab.nii.gz"
    write_image(image, ip)
    write_image(image.with_array(label[None].astype(np.uint8), kind="label"), lp)
    return LabelledCase(name, ip, lp)


def _split(cases: list[LabelledCase], share: float) -> tuple[list[LabelledCase], list[LabelledCase]]:
    sides: list[Side] = []
    for _ in cases:
        sides.append(assign_side(len(sides), sum(s is Side.VAL for s in sides), share))
    return [c for c, s in zip(cases, sides) if s is Side.TRAIN], [c for c, s in zip(cases, sides) if s is Side.VAL]


def bench_2d(work: Path) -> None:
    image, truth = samples.nuclei_image().scalar(), (samples.nuclei_instances().scalar() > 0).astype(np.uint8)
    cases = []
    for k in range(20):
        r, c = divmod(k, 8)
        box = (slice(r * 64, r * 64 + 64), slice(c * 64, c * 64 + 64))
        cases.append(_write(work, f"tile{k:02d}", Image.from_spatial(np.ascontiguousarray(image[box])), truth[box]))
    labels = [{"value": 1, "name": "nucleus", "color": "#ff4040"}]
    train1, val1 = _split(cases[:10], 0.2)
    run_round(RoundSpec("bench", "v1", 2, labels, train1, val1, (64, 64), work / "models" / "v1", None, TrainingRecipe()))
    train, val = _split(cases, 0.2)
    t0, c0 = time.perf_counter(), _cpu()
    result = run_round(RoundSpec("bench", "v2", 2, labels, train, val, (64, 64), work / "models" / "v2", str(work / "models" / "v1"),
                                 TrainingRecipe()))
    t_train = time.perf_counter() - t0

    def measure(model: Path) -> object:
        proposer = Proposer(str(model), value_map=[1])
        from medannot.io import read_image

        pairs = [(c.name, proposer.propose(read_image(c.image)).labels, read_image(c.label, kind="label").array[0]) for c in val]
        return score_masks(pairs, [1])

    decision = decide(measure(result.bundle), measure(work / "models" / "v1"), GateRule())
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    print(f"2D fine-tuning round, 20 accepted nuclei tiles ({len(train)} train / {len(val)} validate), "
          f"{result.steps_done} steps on {torch.get_num_threads()} threads:")
    print(f"  training {t_train:.1f} s; with the gate {wall:.1f} s wall, {cpu:.1f} s CPU; target < 120 s: "
          f"{'met' if wall < 120 else 'NOT met'} (ratio {wall / 120:.2f})")
    print(f"  gate: {'active' if decision.passed else 'rejected'} ({decision.reason})")


def bench_3d(work: Path, budget: float) -> None:
    t1, tissue = samples.mni152_t1(), samples.mni152_tissue_labels()
    cases = []
    starts = [(40, 50, 40), (100, 50, 40), (40, 120, 40), (100, 120, 40), (70, 80, 90), (70, 150, 90)]
    for k, start in enumerate(starts):
        stop = [s + 48 for s in start]
        cases.append(_write(work, f"mni{k}", crop_image(t1, start, stop), crop_image(tissue, start, stop).array[0]))
    labels = [{"value": 1, "name": "grey matter", "color": "#d0d0d0"}, {"value": 2, "name": "white matter", "color": "#ffffff"}]
    train, val = _split(cases, 0.2)
    recipe = TrainingRecipe(epochs=50, iterations_per_epoch=20, batch_size=2, time_budget_s=budget, channels=[8, 16, 32, 64])
    seen: list[float] = []
    t0, c0 = time.perf_counter(), _cpu()
    result = run_round(RoundSpec("bench3d", "v1", 3, labels, train, val, (48, 48, 48), work / "models3d" / "v1", None, recipe),
                       lambda f, m: seen.append(f))
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    from medannot.models.bundle import Bundle

    dice = Bundle.load(result.bundle).spec.metrics.get("mean_dice")
    print(f"3D round, 6 MNI152 crops of 48^3 ({len(train)} train / {len(val)} validate), budget {budget:.0f} s:")
    print(f"  {result.steps_done} of {result.steps_planned} steps, budget hit: {result.budget_hit}; {wall:.1f} s wall "
          f"({wall - budget:+.1f} s past the budget: shipping and measuring), {cpu:.1f} s CPU; validation mean Dice "
          f"{dice:.3f}; {len(seen)} progress reports, last {seen[-1] if seen else 0:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0, help="3D round's time budget (s)")
    parser.add_argument("--skip-3d", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="medannot-bench-learning-") as tmp:
        bench_2d(Path(tmp))
        if not args.skip_3d:
            bench_3d(Path(tmp), args.budget)


if __name__ == "__main__":
    main()
