"""The one training loop: ``run_training(config, hooks) -> bundle folder`` for every task.

The loop owns what every task needs the same way: seeding, AdamW with the config's learning-rate schedule (a pure
function of the step, so a resumed run continues on the same curve), the progress bar, validation every
``val_every`` epochs through the real inference path (the task's hook runs its predictor on an in-memory bundle),
early stopping with the best weights kept, TensorBoard scalars, a checkpoint after every epoch (model,
optimiser, epoch, best weights, RNG states) so ``resume: true`` continues an interrupted run, transfer learning
(``init``: start from another bundle's weights, freeze and unfreeze them), and the end: the bundle is saved into a
staging folder, loaded back from disk exactly as ``medannot annotate`` loads it, measured on the held-out cases
by the task's hook, and only then renamed into place (:func:`medannot.io.atomic.atomic_folder`), so a killed run
leaves the previous bundle untouched and the card's numbers describe exactly what is shipped.

A task plugs in through :class:`TrainingHooks`: its network, its loss on one batch, its validation, how a
bundle is described, how the shipped bundle is measured and how its card reads.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from medannot.errors import ConfigError, ModelError
from medannot.io.atomic import atomic_folder, atomic_write_bytes, atomic_write_text
from medannot.models.bundle import Bundle
from medannot.training.callbacks import EarlyStopping, TensorBoardLogger
from medannot.training.config import FreezeMode, InitConfig, LoopConfig, lr_at
from medannot.training.inflate import inflate_state

__all__ = ["LocalTraining", "Shipped", "TrainingHooks", "Validation", "checkpoint_path", "config_chain", "load_parent_weights",
           "run_training", "ship_bundle", "train_weights"]


@dataclass
class Validation:
    """One validation of the network being trained.

    Attributes:
        score: Higher is better (early stopping and the choice of the best weights use it).
        metrics: Everything measured (stored in the bundle's ``metrics`` for the selected epoch).
        scalars: TensorBoard scalars (``val/<name>``).
        line: One line for the console after the epoch.
    """

    score: float
    metrics: dict[str, Any]
    scalars: dict[str, float] = field(default_factory=dict)
    line: str = ""


@dataclass
class Shipped:
    """What the task measured on the shipped bundle (loaded back from disk).

    Attributes:
        metrics: The bundle's held-out ``metrics``.
        spec_updates: Fields of ``bundle.json`` set from that measurement (e.g. a classifier's calibration).
        card_notes: Markdown appended to the model card (how the numbers were measured).
    """

    metrics: dict[str, Any]
    spec_updates: dict[str, Any] = field(default_factory=dict)
    card_notes: str = ""


class TrainingHooks(Protocol):
    """What a task plugs into :func:`run_training`.

    Attributes:
        network: The network being trained (its ``state_dict`` is what the bundle stores).
    """

    network: torch.nn.Module

    def train_mode(self) -> None:
        """Put the modules that train in training mode (called before each epoch and after each validation)."""

    def loss(self, rng: np.random.Generator) -> torch.Tensor:
        """Draw one batch with ``rng`` and return its scalar loss (with a graph to the network's weights)."""

    def validate(self) -> Validation | None:
        """Validate the current weights through the real inference path; None when there are no validation cases."""

    def bundle(self, state_dict: dict[str, torch.Tensor], metrics: dict[str, Any], training: dict[str, Any]) -> Bundle:
        """An in-memory bundle of these weights, metrics and training record."""

    def measure_shipped(self, bundle: Bundle, selected: dict[str, Any]) -> Shipped:
        """Held-out metrics of the bundle as loaded back from disk (``selected``: the metrics seen during training)."""

    def card(self, metrics: dict[str, Any], run: dict[str, Any]) -> str:
        """The model card (Markdown) for the finished run."""

    def data_record(self) -> dict[str, Any]:
        """What the run trained and validated on (names, counts), kept in the bundle's ``training.run``."""


def checkpoint_path(config: LoopConfig) -> Path:
    """Where the per-epoch checkpoint lives: ``log_dir/checkpoint.pt``, else a hidden file beside ``out``."""
    if config.log_dir is not None:
        return Path(config.log_dir) / "checkpoint.pt"
    out = Path(config.out)
    return out.parent / f".{out.name}.checkpoint.pt"


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's, PyTorch's and a new NumPy generator (returned) from ``seed``."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s weights."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def config_chain(parent: dict[str, Any] | None) -> list[str]:
    """The configs that trained a parent record's bundle, its ancestors first (``config_chain``, or the lone
    ``config_path`` of a record written before chains were kept); empty when none is known."""
    if not parent:
        return []
    return list(parent.get("config_chain") or ([parent["config_path"]] if parent.get("config_path") else []))


def load_parent_weights(network: torch.nn.Module, init: InitConfig) -> tuple[dict[str, Any], set[str]]:
    """Copy the weights of ``init.bundle`` that fit ``network`` (same name and shape) and freeze as asked.

    Args:
        network: The fresh network of the new run.
        init: Parent bundle and freezing rule.

    Returns:
        ``(record, copied)``: the parent record for the card and ``bundle.json`` (``bundle`` (name), ``version``,
        ``sha256``, ``path``, ``config_path`` (the config that trained the parent, when its bundle says),
        ``config_chain`` (the configs that trained the parent's ancestors and then the parent, in order),
        ``inflated_from`` (the parent's dimensionality when ``init.inflate``, else None),
        ``copied`` and ``new`` (tensor counts), ``new_tensors`` (names of the tensors that did
        not fit, up to 20), ``frozen`` (parameter count), ``freeze``, ``unfreeze_epoch``) and the names of the
        tensors copied.

    Raises:
        ModelError: Unknown or corrupt parent bundle, or a parent none of whose tensors fit the network.
    """
    parent = Bundle.load(init.bundle)
    state = parent.read_weights()
    own = network.state_dict()
    if init.inflate:
        fits = inflate_state(network, state)
    else:
        fits = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fits:
        raise ModelError(f"no weight of the parent bundle {parent.name!r} fits this network ({parent.spec.network.name} vs the config's); "
                         "start from a bundle with the same network", parent.path)
    network.load_state_dict(fits, strict=False)
    new = sorted(set(own) - set(fits))
    frozen = set_frozen(network, init, set(fits), frozen=True)
    parent_run = (parent.spec.training or {}).get("run") or {}
    trained_by = parent_run.get("config_path") or ""
    ancestors = config_chain(parent_run.get("parent"))
    record = {"bundle": parent.name, "version": parent.version, "sha256": parent.spec.sha256 or "",
              "path": str(parent.path) if parent.path else "", "config_path": trained_by,
              "config_chain": ancestors + [trained_by] if trained_by else [],
              "copied": len(fits), "new": len(new), "new_tensors": new[:20],
              "frozen": frozen, "freeze": init.freeze if isinstance(init.freeze, list) else str(init.freeze),
              "unfreeze_epoch": init.unfreeze_epoch, "inflated_from": parent.spec.spatial_dims if init.inflate else None}
    return record, set(fits)


def set_frozen(network: torch.nn.Module, init: InitConfig, loaded: set[str], frozen: bool) -> int:
    """Freeze (or release) the parameters ``init.freeze`` names; returns how many parameters (numbers) that touches.

    Raises:
        ConfigError: A list of prefixes that matches no parameter.
    """
    names = [n for n, _ in network.named_parameters()]
    if isinstance(init.freeze, list):
        chosen = [n for n in names if any(n.startswith(p) for p in init.freeze)]
        if not chosen:
            raise ConfigError(f"init.freeze prefixes {init.freeze} match no parameter; parameter names start like {names[:5]}")
    elif init.freeze is FreezeMode.LOADED:
        chosen = [n for n in names if n in loaded]
    else:
        chosen = []
    params = dict(network.named_parameters())
    for n in chosen:
        params[n].requires_grad_(not frozen)
    return int(sum(params[n].numel() for n in chosen))


@dataclass
class LocalTraining:
    """What :func:`train_weights` did.

    Attributes:
        weights: A detached copy of the network's weights after the last epoch (None with ``keep_weights=False``).
        train_loss: Mean training loss of each epoch, in order.
        validation: The task's validation after the last epoch (None unless asked, or without validation cases).
        lr: Learning rate of the last step.
        steps: Optimiser steps taken (iterations whose loss had a gradient).
    """

    weights: dict[str, torch.Tensor] | None
    train_loss: list[float]
    validation: Validation | None = None
    lr: float = 0.0
    steps: int = 0


def train_weights(hooks: TrainingHooks, cfg: LoopConfig, rng: np.random.Generator, epochs: int, *,
                  weights: dict[str, torch.Tensor] | None = None, optimizer: torch.optim.Optimizer | None = None,
                  first_epoch: int = 0, total_epochs: int | None = None,
                  penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
                  before_epoch: Callable[[int], None] | None = None, validate: bool = False,
                  progress: bool | None = None, keep_weights: bool = True) -> LocalTraining:
    """Train ``hooks.network`` for ``epochs`` epochs of ``cfg.iterations_per_epoch`` batches: the one loop's inner part.

    :func:`run_training` calls it once per epoch (with its own optimiser, so a resumed run continues it); a
    federated client calls it once per round with the weights the server sent
    (:mod:`medannot.training.federated`).

    Args:
        hooks: The task's training hooks (network, loss on one batch, validation).
        cfg: The run's config (optimiser, learning-rate schedule, iterations per epoch).
        rng: The generator every batch is drawn with (advanced in place).
        epochs: Epochs to train (0 trains nothing and returns the weights as they are).
        weights: Loaded into the network first (all tensors, strict); None trains the weights it has.
        optimizer: None makes a fresh AdamW with ``cfg.optimizer``'s settings over the network's parameters.
        first_epoch: Index of the first epoch on the run's learning-rate schedule (0-based).
        total_epochs: Length of the schedule in epochs (None: ``cfg.epochs``).
        penalty: Added to every batch's loss, e.g. FedProx's proximal term; called with the network.
        before_epoch: Called with each epoch's index before it starts (e.g. freezing and releasing weights).
        validate: Run the task's validation after the last epoch.
        progress: Show a progress bar per epoch (None = only on a terminal).
        keep_weights: Return a copy of the weights after training.

    Returns:
        The weights, per-epoch mean losses, the validation and the last learning rate.

    Raises:
        ConfigError: ``epochs`` below 0, or weights that do not fit the network.
    """
    if epochs < 0:
        raise ConfigError(f"epochs must be 0 or more, got {epochs}")
    model = hooks.network
    if weights is not None:
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise ConfigError(f"the weights do not fit this network ({str(exc).splitlines()[0]}); send weights of the config's network") from None
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    total = cfg.epochs if total_epochs is None else total_epochs
    steps = max(total, first_epoch + epochs) * cfg.iterations_per_epoch
    history: list[float] = []
    lr, stepped = cfg.optimizer.lr, 0
    for epoch in range(first_epoch, first_epoch + epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        hooks.train_mode()
        losses: list[float] = []
        bar = tqdm(range(cfg.iterations_per_epoch), desc=f"epoch {epoch + 1}/{total}",
                   disable=None if progress is None else not progress, leave=False)
        for it in bar:
            lr = lr_at(cfg.optimizer, epoch * cfg.iterations_per_epoch + it, steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = hooks.loss(rng)
            if penalty is not None:
                loss = loss + penalty(model)
            if loss.requires_grad:  # every weight frozen until init.unfreeze_epoch: nothing to step
                loss.backward()
                optimizer.step()
                stepped += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.close()
        history.append(float(np.mean(losses)))
    found = None
    if validate:
        found = hooks.validate()
        hooks.train_mode()
    return LocalTraining(state_copy(model) if keep_weights else None, history, found, lr, stepped)


def _write_config(cfg: LoopConfig) -> None:
    if cfg.log_dir is not None:
        atomic_write_text(Path(cfg.log_dir) / "config.json", json.dumps(cfg.resolved(), indent=2) + "\n")


def run_training(cfg: LoopConfig, build_hooks: Callable[[LoopConfig], TrainingHooks], config_path: str | Path | None = None,
                 progress: bool | None = None) -> Path:
    """Train the network of the task's hooks as ``cfg`` says and write the bundle folder ``cfg.out``.

    Args:
        cfg: The validated config (its task's config model).
        build_hooks: Makes the task's training hooks for ``cfg``; called after seeding, so the network's
            initial weights and the data source's draws follow ``cfg.seed``.
        config_path: The config file (named in the model card's re-training command).
        progress: Show progress bars (None = only on a terminal).

    Returns:
        The bundle folder.

    Raises:
        ConfigError: Bad transfer-learning settings. ModelError: a parent bundle that does not fit.
        OutputError: The bundle cannot be written (the previous one is left in place).
    """
    torch.set_num_threads(cfg.num_threads)
    rng = seed_everything(cfg.seed)
    hooks = build_hooks(cfg)
    model = hooks.network
    parent, copied = load_parent_weights(model, cfg.init) if cfg.init is not None else (None, set())
    if cfg.init is not None and cfg.init.unfreeze_epoch is None and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("init.freeze freezes every weight and init.unfreeze_epoch never releases them: nothing would train; "
                          "give unfreeze_epoch, or freeze fewer weights (a new head trains only when the labels differ)")
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    stopper = EarlyStopping(cfg.early_stopping_patience)
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = {}
    last_metrics: dict[str, Any] = {}
    start_epoch, seconds = 0, 0.0
    history: list[float] = []  # mean training loss per epoch
    ckpt = checkpoint_path(cfg)
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        if cfg.select_best:  # a run resumed with select_best: false ships its last weights, whatever it kept before
            best_state, best_metrics = state["best_state"], state["best_metrics"]
        last_metrics = state.get("last_metrics", {})
        stopper.load_state_dict(state["stopper"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if "python_rng" in state:
            random.setstate(state["python_rng"])
        seconds = float(state.get("seconds", 0.0))
        history = list(state.get("train_loss", []))
    _write_config(cfg)
    logger = TensorBoardLogger(cfg.log_dir)
    epoch = start_epoch - 1
    if stopper.should_stop:  # a resumed run that had already stopped early: only write the bundle
        start_epoch = cfg.epochs

    def release(e: int) -> None:  # transfer learning: frozen weights are released from init.unfreeze_epoch on
        if cfg.init is not None:
            released = cfg.init.unfreeze_epoch is not None and e + 1 >= cfg.init.unfreeze_epoch
            set_frozen(model, cfg.init, copied, frozen=not released)

    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            done = train_weights(hooks, cfg, rng, 1, optimizer=optimizer, first_epoch=epoch, before_epoch=release,
                                 progress=progress, keep_weights=False)
            lr = done.lr
            step = (epoch + 1) * cfg.iterations_per_epoch
            mean_loss = done.train_loss[0]
            history.append(round(mean_loss, 5))
            logger.scalar("train/loss", mean_loss, step)
            logger.scalar("train/lr", lr, step)
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                found = hooks.validate()
                hooks.train_mode()
                if found is not None:
                    for name, value in found.scalars.items():
                        logger.scalar(f"val/{name}", value, step)
                    last_metrics = dict(found.metrics, epoch=epoch + 1)
                    if stopper.update(found.score, epoch) and cfg.select_best:
                        best_state, best_metrics = state_copy(model), dict(last_metrics)
                    if progress is not False:
                        tqdm.write(f"epoch {epoch + 1}: loss {mean_loss:.4f}  {found.line}")
            seconds += time.perf_counter() - t0
            _save_checkpoint(ckpt, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "best_state": best_state, "best_metrics": best_metrics, "last_metrics": last_metrics,
                "stopper": stopper.state_dict(), "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(), "seconds": seconds, "train_loss": history,
            })
            if stopper.should_stop:
                break
    finally:
        logger.close()
    selected = best_state is not None
    final_state = best_state if best_state is not None else state_copy(model)
    run: dict[str, Any] = {
        "best_epoch": stopper.best_epoch + 1 if selected else epoch + 1,
        "epochs_run": epoch + 1,
        "seconds": round(seconds, 1),
        "selection": "best validation score" if selected else "last epoch",
        "train_loss": history,
    }
    run.update(hooks.data_record())
    if config_path is not None:
        run["config_path"] = Path(config_path).as_posix()
    if parent is not None:
        run["parent"] = parent
    return ship_bundle(cfg, hooks, final_state, best_metrics if selected else last_metrics, run)


def ship_bundle(cfg: LoopConfig, hooks: TrainingHooks, state: dict[str, torch.Tensor], selected: dict[str, Any], run: dict[str, Any],
                card_extra: str = "") -> Path:
    """Save, load back, measure, and rename the bundle into place (see the module docstring).

    Args:
        cfg: The run's config (``out``, ``weights_half``; its resolved form is the bundle's ``training``).
        hooks: The task's hooks (bundle, measurement, card).
        state: The weights to ship.
        selected: The metrics seen during training for those weights.
        run: The run record (``training.run`` of ``bundle.json``; the card reads it).
        card_extra: Markdown appended to the model card (e.g. a federated run's rounds and sites).

    Returns:
        The bundle folder ``cfg.out``.

    Raises:
        OutputError: The bundle cannot be written (the previous one is left in place).
    """
    training = dict(cfg.resolved(), run=run)
    with atomic_folder(Path(cfg.out), "bundle folder") as staging:
        hooks.bundle(state, selected, training).save(staging, half=cfg.weights_half)
        shipped = Bundle.load(staging)
        measured = hooks.measure_shipped(shipped, selected)
        shipped.spec = shipped.spec.model_copy(update={"metrics": measured.metrics, **measured.spec_updates})
        card = hooks.card(measured.metrics, run) + measured.card_notes + parent_card_section(run.get("parent")) + card_extra
        shipped.save(staging, card=card, half=cfg.weights_half)
    return Path(cfg.out)


def parent_card_section(parent: dict[str, Any] | None) -> str:
    """The model card's transfer-learning section (empty without a parent)."""
    if not parent:
        return ""
    freeze = parent.get("freeze")
    until = f", released from epoch {parent['unfreeze_epoch']}" if parent.get("unfreeze_epoch") else ""
    chain = config_chain(parent)
    inflated = (f", each {parent['inflated_from']}D kernel inflated to 3D (repeated along depth and scaled so that a "
                "depth-constant volume gets the parent's answer, `medannot.training.inflate`)" if parent.get("inflated_from") else "")
    return (
        "\n## Transfer learning\n\n"
        f"Started from bundle `{parent['bundle']}` {parent['version']} (weights sha256 `{parent['sha256']}`"
        + (", trained by " + ", then ".join(f"`medannot train {c}`" for c in chain) if chain else "") + "): "
        f"{parent['copied']} tensors copied{inflated}, {parent['new']} newly initialised"
        + (f" ({', '.join(parent['new_tensors'][:6])}{', ...' if parent['new'] > 6 else ''})" if parent["new"] else "")
        + f"; frozen: {freeze} ({parent['frozen']} parameters{until}).\n"
    )
