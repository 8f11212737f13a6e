"""``medannot simulate``: the learning loop without a person, with the effort it saves and the learning curves.

A labelled dataset (:mod:`.simdata`) is split once into a fixed **held-out part** (``holdout_fraction`` of the
cases, seeded) that only measures, and a **pool** the simulated project reviews. For each strategy (``random``,
``uncertainty``, ``diversity``, ``mix``) and for **no learning** (the project never trains: every proposal is
empty, so every case is annotated from nothing), the project starts from nothing and repeats:

1. the strategy picks the next pool case (:mod:`.strategies`; uncertainty scores come from the active model's
   proposals, diversity from the retrieval embedding of the cases reviewed so far);
2. the active model proposes a mask (empty while there is none);
3. the simulated annotator corrects it to the truth (:mod:`.effort`: voxels changed, clicks with the promptable
   engine to reach Dice ``target`` per object) and accepts it; the case joins the fixed validation split or the
   training side (:mod:`.split`);
4. after every ``retrain_every`` accepted cases (once the project has ``min_cases``) a round trains a candidate
   (:mod:`.rounds`, fine-tuned from the active model), the gate judges it against the active model on the
   project's validation cases (:mod:`.gate`), and both are measured on the held-out part (the learning curve).

A **full-data** model (every pool case labelled, the same recipe from scratch with as many steps as all rounds of a
strategy together) gives the reference Dice; the summary reports, per strategy, the labels needed to reach 95 % of
it and the total effort against painting every case by hand. Everything is written under ``out``
(:mod:`.simreport`): ``cases.csv``, ``curve.csv``, ``summary.json``, ``summary.md``, ``report.html`` and the plots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import ConfigError, InputError
from medannot.workflows.learning.effort import correction_effort
from medannot.workflows.learning.gate import Scores, decide, score_masks
from medannot.workflows.learning.proposer import Proposer
from medannot.workflows.learning.registry import ModelVersionRecord, VersionStatus, write_versions
from medannot.workflows.learning.rounds import LabelledCase, RoundSpec, run_round
from medannot.workflows.learning.settings import LearningSettings, Strategy, TrainingRecipe
from medannot.workflows.learning.simdata import SimCase, SimDataset, load_sim_dataset
from medannot.workflows.learning.split import Side, assign_side
from medannot.workflows.learning.strategies import Candidate, order_cases, random_key

__all__ = ["NO_LEARNING", "SimulationOptions", "simulate", "simulation_recipe"]

NO_LEARNING = "none"
"""The baseline arm: the project never trains (empty proposals, every case annotated from nothing)."""


def simulation_recipe() -> TrainingRecipe:
    """The default recipe of a simulated round: 3 epochs of 20 steps of 8 patches, fine-tuned from the active model."""
    return TrainingRecipe(epochs=3, iterations_per_epoch=20, batch_size=8)


@dataclass
class SimulationOptions:
    """Settings of a simulation.

    Attributes:
        strategies: Strategies to compare (``no learning`` always runs as the baseline).
        retrain_every: Accepted cases between training rounds.
        holdout_fraction: Share of the cases held out to measure (never reviewed, never trained on).
        max_pool: Review at most this many pool cases (None: all).
        settings: The project's learning settings (recipe, gate, validation share, minimum cases, engine).
        target_dice: Dice the simulated annotator brings each object to with the promptable engine.
        max_clicks: Clicks per object before it gives up (and counts that many).
        full_data: Train the full-data reference model (else the best final Dice of the strategies is the reference).
        embedding_model: Classification bundle of the retrieval embedding (None: intensity and texture blocks only).
        seed: Seed of the held-out split, the random order and the rounds.
    """

    strategies: list[str] = field(default_factory=lambda: ["random", "uncertainty", "diversity"])
    retrain_every: int = 8
    holdout_fraction: float = 0.25
    max_pool: int | None = None
    settings: LearningSettings = field(default_factory=lambda: LearningSettings(recipe=simulation_recipe()))
    target_dice: float = 0.90
    max_clicks: int = 20
    full_data: bool = True
    embedding_model: str | None = "modality"
    seed: int = 0

    def checked(self) -> SimulationOptions:
        """These options, validated.

        Raises:
            ConfigError: A bad strategy name, ``retrain_every`` below 1, or a held-out share outside (0, 1).
        """
        names = []
        for s in self.strategies:
            if s != NO_LEARNING:
                s = Strategy.parse(s).value
            if s not in names:
                names.append(s)
        if not names:
            raise ConfigError("give at least one strategy: random, uncertainty, diversity or mix")
        if self.retrain_every < 1:
            raise ConfigError(f"--retrain-every must be 1 or more, got {self.retrain_every}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"the held-out share must lie in (0, 1), got {self.holdout_fraction}")
        if self.max_pool is not None and self.max_pool < 1:
            raise ConfigError(f"--max-cases must be 1 or more, got {self.max_pool}")
        self.strategies = names
        return self


@dataclass
class _Active:
    number: int
    bundle: Path
    proposer: Proposer
    heldout: Scores
    val: Scores | None = None


class _Run:
    """One arm of the simulation (a strategy, or no learning)."""

    def __init__(self, name: str, sim: _Simulation) -> None:
        self.name, self.sim = name, sim
        self.learns = name != NO_LEARNING
        self.order_strategy = Strategy.RANDOM if not self.learns else Strategy.parse(name)
        self.folder = sim.out / "runs" / name
        self.active: _Active | None = None
        self.proposals: dict[str, Any] = {}
        self.labelled: list[str] = []
        self.sides: dict[str, Side] = {}
        self.records: list[ModelVersionRecord] = []
        self.case_rows: list[dict[str, Any]] = []
        self.curve_rows: list[dict[str, Any]] = []
        self.seconds = 0.0

    def _propose_left(self, left: list[SimCase]) -> None:
        if self.active is None:
            return
        for c in left:
            if c.name not in self.proposals:
                self.proposals[c.name] = self.active.proposer.propose(c.image)

    def run(self) -> None:
        sim, t0 = self.sim, time.monotonic()
        opts = sim.options
        self.curve_rows.append(self._curve_row(0, None, None, None, 0.0, 0, False))
        pool = list(sim.pool)
        while pool:
            if self.learns and self.order_strategy in (Strategy.UNCERTAINTY, Strategy.MIX):
                self._propose_left(pool)
            vectors = sim.vectors() if self.order_strategy in (Strategy.DIVERSITY, Strategy.MIX) else {}
            cands = [Candidate(c.name, getattr(self.proposals.get(c.name), "uncertainty", None), vectors.get(c.name)) for c in pool]
            order = order_cases(self.order_strategy, cands, [vectors[n] for n in self.labelled if n in vectors], opts.seed)
            name, score = str(order[0][0]), order[0][1]
            case = next(c for c in pool if c.name == name)
            pool.remove(case)
            if self.active is not None and name not in self.proposals:
                self.proposals[name] = self.active.proposer.propose(case.image)
            proposal = self.proposals[name].labels if self.active is not None else np.zeros_like(case.truth)
            proposal = proposal.reshape(case.truth.shape)
            effort = correction_effort(case.image, proposal, case.truth, sim.data.label_values, sim.engine, opts.target_dice,
                                       opts.max_clicks)
            side = assign_side(len(self.labelled), sum(s is Side.VAL for s in self.sides.values()), opts.settings.val_fraction)
            self.labelled.append(name)
            self.sides[name] = side
            self.case_rows.append({"strategy": self.name, "order": len(self.labelled), "case": name, "side": side.value,
                                   "score": None if score is None else round(float(score), 6),
                                   "proposed_by": f"v{self.active.number}" if self.active else "none", **effort.to_dict()})
            sim.say(f"{self.name}: case {len(self.labelled)}/{len(sim.pool)} {name} ({side.value}): proposal Dice "
                    f"{effort.dice:.3f}, {effort.voxels_changed} voxels changed of {effort.manual_voxels}, {effort.clicks} clicks")
            due = len(self.labelled) % opts.retrain_every == 0 or not pool
            if self.learns and due and self._can_train():
                self._round(pool)
        self.seconds = time.monotonic() - t0
        if self.records:
            write_versions(self.records, self.folder / "versions.json")

    def _can_train(self) -> bool:
        n_val = sum(s is Side.VAL for s in self.sides.values())
        return len(self.labelled) >= self.sim.options.settings.min_cases and n_val >= 1 and len(self.labelled) - n_val >= 1

    def _round(self, pool: list[SimCase]) -> None:
        sim, opts = self.sim, self.sim.options
        number = len(self.records) + 1
        recipe = opts.settings.recipe.model_copy(update={"seed": opts.seed + number})
        parent = str(self.active.bundle) if (self.active is not None and recipe.fine_tune) else None
        train = [sim.files[n] for n in self.labelled if self.sides[n] is Side.TRAIN]
        val = [sim.files[n] for n in self.labelled if self.sides[n] is Side.VAL]
        spec = RoundSpec(sim.data.name, f"v{number}", sim.data.spatial_dims, sim.data.labels, train, val, sim.min_shape,
                         self.folder / "models" / f"v{number}", parent, recipe)
        result = run_round(spec)
        candidate = Proposer(str(result.bundle), value_map=sim.data.label_values, uncertainty=self.order_strategy in
                             (Strategy.UNCERTAINTY, Strategy.MIX), mc_dropout=opts.settings.mc_dropout)
        val_cases = [sim.by_name[c.name] for c in val]
        cand_val = sim.score(candidate, val_cases)
        active_val = sim.score(self.active.proposer, val_cases) if self.active is not None else None
        decision = decide(cand_val, active_val, opts.settings.gate)
        heldout = sim.score(candidate, sim.holdout)
        from medannot.models.bundle import Bundle

        for r in self.records:
            if decision.passed and r.status == VersionStatus.ACTIVE:
                r.status = VersionStatus.RETIRED.value
        self.records.append(ModelVersionRecord(
            number, (VersionStatus.ACTIVE if decision.passed else VersionStatus.REJECTED).value, str(result.bundle),
            Bundle.load(result.bundle).spec.sha256 or "", self.active.number if parent and self.active else None, parent,
            [c.name for c in train], [c.name for c in val], "simulation", recipe.model_dump(mode="json"), decision.to_dict(),
            round(result.seconds, 2), list(sim.data.label_values)))
        if decision.passed:
            self.active = _Active(number, result.bundle, candidate, heldout, cand_val)
            self.proposals = {}
            self._propose_left(pool if self.order_strategy in (Strategy.UNCERTAINTY, Strategy.MIX) else [])
        self.curve_rows.append(self._curve_row(number, decision, cand_val, heldout, result.seconds, result.steps_done,
                                               result.budget_hit))
        sim.say(f"{self.name}: round {number} on {len(train)} train / {len(val)} val cases in {result.seconds:.0f} s: "
                f"{'ACTIVE' if decision.passed else 'rejected'} ({decision.reason}); held-out Dice "
                f"{heldout.mean_dice:.3f}, active {self.active.heldout.mean_dice if self.active else 0.0:.3f}")

    def _curve_row(self, number: int, decision: Any, cand_val: Scores | None, cand_heldout: Scores | None, seconds: float,
                   steps: int, budget_hit: bool) -> dict[str, Any]:
        n_val = sum(s is Side.VAL for s in self.sides.values())
        active = self.active.heldout.mean_dice if self.active is not None else self.sim.empty_heldout
        return {
            "strategy": self.name, "round": number, "labelled": len(self.labelled), "train": len(self.labelled) - n_val,
            "val": n_val, "version": f"v{number}" if number else "", "gate_passed": "" if decision is None else int(decision.passed),
            "gate_reason": "" if decision is None else decision.reason,
            "candidate_val_dice": "" if cand_val is None else round(cand_val.mean_dice, 4),
            "active_val_dice": "" if decision is None or decision.active is None else round(decision.active.mean_dice, 4),
            "candidate_heldout_dice": "" if cand_heldout is None else round(cand_heldout.mean_dice, 4),
            "heldout_dice": round(active, 4), "active_version": f"v{self.active.number}" if self.active else "none",
            "seconds": round(seconds, 2), "steps": steps, "budget_hit": int(budget_hit),
        }


class _Simulation:
    def __init__(self, data: SimDataset, out: Path, options: SimulationOptions, say: Callable[[str], None]) -> None:
        from medannot.io import write_image
        from medannot.workflows.learning.engines import create_promptable, resolve_engine_name

        self.data, self.out, self.options, self.say = data, out, options, say
        self.engine = create_promptable(resolve_engine_name(options.settings.engine, data.spatial_dims))
        order = sorted(data.cases, key=lambda c: random_key(f"holdout-{options.seed}", c.name))
        n_hold = min(max(1, int(round(len(order) * options.holdout_fraction))), len(order) - options.settings.min_cases)
        if n_hold < 1:
            raise InputError(f"the dataset has {len(order)} cases: too few for a held-out part and {options.settings.min_cases} "
                             "cases to train on; use a bigger dataset or a smaller min_cases")
        self.holdout = sorted(order[:n_hold], key=lambda c: c.name)
        pool = sorted(order[n_hold:], key=lambda c: c.name)
        if options.max_pool is not None:
            pool = sorted(sorted(pool, key=lambda c: random_key(f"pool-{options.seed}", c.name))[: options.max_pool],
                          key=lambda c: c.name)
        self.pool = pool
        self.by_name = {c.name: c for c in data.cases}
        self.min_shape = tuple(int(v) for v in np.min([c.image.spatial_shape for c in data.cases], axis=0))
        self.files: dict[str, LabelledCase] = {}
        folder = out / "cases"
        for c in self.pool:
            img, lab = folder / f"{c.name}_image.nii.gz", folder / f"{c.name}_label.nii.gz"
            write_image(c.image, img)
            write_image(c.image.with_array(c.truth[None].astype(np.uint8), kind="label"), lab)
            self.files[c.name] = LabelledCase(c.name, img, lab)
        self.empty_heldout = score_masks(((c.name, np.zeros_like(c.truth), c.truth) for c in self.holdout),
                                         data.label_values).mean_dice
        self._vectors: dict[str, np.ndarray] | None = None

    def vectors(self) -> dict[str, np.ndarray]:
        """Retrieval vectors of the pool cases (computed once)."""
        if self._vectors is None:
            from medannot.retrieval.features import FeatureExtractor

            extractor = FeatureExtractor(model=self.options.embedding_model)
            self._vectors = {c.name: extractor.vector(c.image) for c in self.pool}
        return self._vectors

    def score(self, proposer: Proposer, cases: list[SimCase]) -> Scores:
        """Dice of a model on cases."""
        return score_masks(((c.name, proposer.propose(c.image).labels.reshape(c.truth.shape), c.truth) for c in cases),
                           self.data.label_values)

    def full_data(self, rounds: int) -> dict[str, Any]:
        """Train the full-data reference model from scratch on the whole pool (the split rule in pool order)."""
        opts = self.options
        sides: dict[str, Side] = {}
        for c in self.pool:
            sides[c.name] = assign_side(len(sides), sum(s is Side.VAL for s in sides.values()), opts.settings.val_fraction)
        recipe = opts.settings.recipe.model_copy(update={"epochs": opts.settings.recipe.epochs * max(1, rounds),
                                                         "fine_tune": False, "seed": opts.seed})
        train = [self.files[n] for n, s in sides.items() if s is Side.TRAIN]
        val = [self.files[n] for n, s in sides.items() if s is Side.VAL]
        spec = RoundSpec(self.data.name, "full", self.data.spatial_dims, self.data.labels, train, val, self.min_shape,
                         self.out / "runs" / "full-data" / "model", None, recipe)
        result = run_round(spec)
        heldout = self.score(Proposer(str(result.bundle), value_map=self.data.label_values), self.holdout)
        self.say(f"full data: {len(train)} train / {len(val)} val cases, {result.steps_done} steps in {result.seconds:.0f} s: "
                 f"held-out Dice {heldout.mean_dice:.3f}")
        return {"heldout_dice": heldout.mean_dice, "steps": result.steps_done, "seconds": round(result.seconds, 1),
                "train": len(train), "val": len(val)}


def simulate(dataset: str | Path | SimDataset, out: str | Path, options: SimulationOptions | None = None,
             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the simulation (see the module docstring) and write its files under ``out``.

    Args:
        dataset: A dataset folder (:func:`.simdata.load_sim_dataset`) or a loaded dataset.
        out: Output folder (created).
        options: :class:`SimulationOptions`.
        say: Called with one line per case and round (progress).

    Returns:
        The summary (also in ``out/summary.json``).

    Raises:
        InputError: An unusable dataset. ConfigError: bad options. OutputError: files that cannot be written.
    """
    import torch

    from medannot.workflows.learning.simreport import write_report

    opts = (options or SimulationOptions()).checked()
    data = dataset if isinstance(dataset, SimDataset) else load_sim_dataset(dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    speak = say or (lambda _line: None)
    torch.set_num_threads(opts.settings.recipe.num_threads)
    start = time.monotonic()
    sim = _Simulation(data, out, opts, speak)
    speak(f"dataset {data.name}: {len(data.cases)} cases ({data.spatial_dims}D, labels {data.label_values}); "
          f"held out {len(sim.holdout)}, pool {len(sim.pool)}; engine {sim.engine.name}")
    runs = []
    for name in [NO_LEARNING, *[s for s in opts.strategies if s != NO_LEARNING]]:
        run = _Run(name, sim)
        run.run()
        runs.append(run)
    rounds = max((len(r.records) for r in runs), default=0)
    full = sim.full_data(rounds) if opts.full_data and rounds else None
    return write_report(out, data, sim, runs, full, opts, time.monotonic() - start)
