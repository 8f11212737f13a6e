"""Federated training with Flower: sites train the one loop on their own data and exchange only model weights.

The server (:class:`FederatedRun`) holds the config, the initial weights and, optionally, held-out cases; each
round it sends the current weights (and the config, as JSON) to every site, each site runs
:func:`medannot.training.loop.train_weights` for ``local_epochs`` epochs on its own dataset folder and sends
back its new weights, its case count and its mean training loss; the server averages the weights (FedAvg,
weighted by case counts; FedProx adds a proximal term on the sites for uneven data), measures them on its
held-out cases, and after the last round ships a bundle exactly as ``medannot train`` does (saved, loaded back,
measured, renamed into place) whose model card records the rounds, the sites' case counts and the strategy.

Flower carries the messages: :func:`serve` / :func:`join` for real sites over gRPC, :func:`simulate` for
Flower's simulation engine (Ray) on one machine. Optional central differential privacy: Flower's
``DifferentialPrivacyServerSideFixedClipping`` clips each site's update to ``dp_clip`` (L2) and adds Gaussian
noise of standard deviation ``dp_noise x dp_clip / sites`` to every weight of the average. An :class:`AuditLog` mod on a site writes every message it
sends to a folder, byte for byte as serialised, for whoever must check what leaves the site.

The task registry sits above this layer: callers pass a :class:`TaskBinding` (config validation and training
hooks), as ``run_training`` takes ``build_hooks``.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import json
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.errors import ConfigError, InputError
from medannot.training.config import LoopConfig
from medannot.training.federated_data import count_labelled_cases
from medannot.training.loop import TrainingHooks, seed_everything, ship_bundle, train_weights

__all__ = ["AuditLog", "FederatedRun", "FederatedSettings", "SiteTrainer", "Strategy", "TaskBinding", "arrays_to_state",
           "join", "serve", "simulate", "site_config", "state_to_arrays"]


class Strategy(enum.StrEnum):
    """How the server combines the sites' weights."""

    FEDAVG = "fedavg"  # weighted mean by case count (McMahan et al. 2017)
    FEDPROX = "fedprox"  # FedAvg + a proximal term mu/2 |w - w_global|^2 on each site (Li et al. 2020), for uneven sites

    @classmethod
    def parse(cls, value: str | Strategy) -> Strategy:
        """The strategy named ``value``.

        Raises:
            ConfigError: Unknown name (the valid ones are listed).
        """
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown strategy {value!r}; expected one of: {', '.join(s.value for s in cls)}") from None


@dataclass(frozen=True)
class FederatedSettings:
    """How a federated run goes.

    Attributes:
        rounds: Rounds of (send weights, train locally, average).
        local_epochs: Epochs of ``iterations_per_epoch`` batches each site trains per round.
        strategy: FedAvg or FedProx.
        proximal_mu: FedProx's mu (ignored by FedAvg).
        min_sites: Sites that must take part in every round (the server waits for them).
        dp_noise: Noise multiplier of Flower's central DP with server-side fixed clipping; 0 = no DP wrapper.
        dp_clip: L2 norm each site's update is clipped to (with ``dp_noise`` > 0).
        round_timeout_s: Seconds a round waits for the sites (None: no limit).
    """

    rounds: int = 3
    local_epochs: int = 1
    strategy: Strategy = Strategy.FEDAVG
    proximal_mu: float = 0.1
    min_sites: int = 2
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    round_timeout_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        if self.rounds < 1 or self.local_epochs < 1 or self.min_sites < 1:
            raise ConfigError(f"rounds ({self.rounds}), local epochs ({self.local_epochs}) and sites ({self.min_sites}) must be 1 or more")
        if self.proximal_mu < 0 or self.dp_noise < 0 or self.dp_clip <= 0:
            raise ConfigError(f"proximal mu ({self.proximal_mu}) and DP noise ({self.dp_noise}) must be >= 0 and the DP clip ({self.dp_clip}) > 0")

    def record(self) -> dict[str, Any]:
        """Plain values for ``bundle.json`` and the card."""
        out: dict[str, Any] = {"rounds": self.rounds, "local_epochs": self.local_epochs, "strategy": self.strategy.value}
        if self.strategy is Strategy.FEDPROX:
            out["proximal_mu"] = self.proximal_mu
        out["differential_privacy"] = (
            {"mechanism": "central, server-side fixed clipping (Flower)", "noise_multiplier": self.dp_noise, "clipping_norm": self.dp_clip}
            if self.dp_noise > 0 else None
        )
        return out


@dataclass(frozen=True)
class TaskBinding:
    """What the federated code needs from the task registry (a higher layer).

    Attributes:
        validate: A config dict -> the validated config of its task.
        hooks: A validated config -> its task's training hooks.
    """

    validate: Callable[[dict[str, Any]], LoopConfig]
    hooks: Callable[[LoopConfig], TrainingHooks]


def state_to_arrays(state: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """The weights as NumPy arrays in ``state_dict`` order (what travels)."""
    return [v.detach().cpu().numpy().copy() for v in state.values()]


def arrays_to_state(arrays: Sequence[np.ndarray], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Arrays in ``like``'s order back into a state dict with ``like``'s names, shapes and dtypes.

    Raises:
        ConfigError: Another count or shape of arrays (weights of another network).
    """
    if len(arrays) != len(like):
        raise ConfigError(f"received {len(arrays)} weight arrays; this network has {len(like)}: both sides must use the same config")
    out: dict[str, torch.Tensor] = {}
    for (name, ref), arr in zip(like.items(), arrays, strict=True):
        if tuple(arr.shape) != tuple(ref.shape):
            raise ConfigError(f"weight {name!r} has shape {tuple(arr.shape)}; this network's is {tuple(ref.shape)}: both sides must use the same config")
        out[name] = torch.as_tensor(np.asarray(arr)).to(ref.dtype)
    return out


def site_config(server_config: dict[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """A site's training config: the server's, with the data replaced by the site's own dataset folder.

    The ``folder`` source trains on every labelled case of ``data_dir``; ``target``, ``fg_ratio`` and ``augment``
    are kept from the server's data parameters.
    """
    cfg = json.loads(json.dumps(server_config))
    params = {k: v for k, v in ((cfg.get("data") or {}).get("params") or {}).items() if k in ("target", "fg_ratio", "augment")}
    cfg["data"] = {"source": "folder", "params": {**params, "path": str(data_dir)}}
    cfg["init"] = None  # the server's weights arrive every round
    cfg["resume"] = False
    cfg["log_dir"] = None
    return cfg


_SITE_CACHE: dict[tuple[str, str], TrainingHooks] = {}


class SiteTrainer:
    """A site: trains the weights it receives on its own dataset folder; what it returns is weights and counts only.

    Args:
        binding: Config validation and hooks of the task registry.
        data_dir: The site's dataset folder (MSD / nnU-Net raw, labelled ``imagesTr``).
        name: The site's name in the server's record (no patient data: choose e.g. ``site-a``).

    Raises:
        InputError: ``data_dir`` missing. ConfigError: it holds no labelled case.
    """

    def __init__(self, binding: TaskBinding, data_dir: str | Path, name: str) -> None:
        self.binding = binding
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise InputError("the site's data folder does not exist; give a dataset folder (dataset.json, imagesTr/, labelsTr/)", self.data_dir)
        self.name = name
        self.cases = count_labelled_cases(self.data_dir)
        if self.cases == 0:
            raise ConfigError(f"{self.data_dir}: no labelled case (imagesTr/ with labelsTr/); a site needs its own labelled cases")

    def hooks(self, config_json: str) -> tuple[LoopConfig, TrainingHooks]:
        """The validated site config and its hooks (built once per process and config: data read once)."""
        cfg = self.binding.validate(site_config(json.loads(config_json), self.data_dir))
        key = (str(self.data_dir.resolve()), config_json)
        if key not in _SITE_CACHE:
            torch.manual_seed(cfg.seed)  # every site builds the same network; the server's weights replace its values
            _SITE_CACHE[key] = self.binding.hooks(cfg)
        return cfg, _SITE_CACHE[key]

    def fit(self, arrays: Sequence[np.ndarray], instructions: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        """One round: ``local_epochs`` of the one loop from the received weights.

        Args:
            arrays: The global weights.
            instructions: ``config`` (JSON), ``round``, ``rounds``, ``local_epochs`` and FedProx's ``proximal_mu``.

        Returns:
            ``(new weights, case count, {"site", "cases", "train_loss"})``.
        """
        cfg, hooks = self.hooks(str(instructions["config"]))
        torch.set_num_threads(cfg.num_threads)
        rnd, rounds, local = int(instructions["round"]), int(instructions["rounds"]), int(instructions["local_epochs"])
        like = hooks.network.state_dict()
        weights = arrays_to_state(arrays, like)
        seed = [cfg.seed, rnd, zlib.crc32(self.name.encode())]
        rng = np.random.default_rng(seed)
        torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        mu = float(instructions.get("proximal_mu", 0.0))
        penalty = _proximal(weights, mu) if mu > 0 else None
        done = train_weights(hooks, cfg, rng, local, weights=weights, first_epoch=(rnd - 1) * local, total_epochs=rounds * local,
                             penalty=penalty, progress=False)
        return state_to_arrays(done.weights or hooks.network.state_dict()), self.cases, {"site": self.name, "cases": self.cases, "train_loss": float(done.train_loss[-1])}


def _proximal(global_weights: dict[str, torch.Tensor], mu: float) -> Callable[[torch.nn.Module], torch.Tensor]:
    """FedProx's term mu/2 * sum |w - w_global|^2 over the trainable parameters."""
    anchor = {k: v.detach().clone().float() for k, v in global_weights.items()}

    def penalty(model: torch.nn.Module) -> torch.Tensor:
        terms = [((p - anchor[n]) ** 2).sum() for n, p in model.named_parameters() if p.requires_grad and n in anchor]
        return 0.5 * mu * torch.stack(terms).sum() if terms else torch.zeros(())

    return penalty


@dataclass
class _Record:
    rounds: list[dict[str, Any]] = field(default_factory=list)
    sites: dict[str, int] = field(default_factory=dict)
    weights: list[np.ndarray] | None = None
    validation: dict[str, Any] = field(default_factory=dict)


class FederatedRun:
    """The server side of a federated run: config, initial weights, central measurement, the shipped bundle.

    Args:
        config: The training config (dict, as a YAML file holds it); its ``data`` names the server's held-out cases
            (e.g. ``{"source": "folder", "params": {"val_path": DIR, "target": "binary"}}``) or none.
        binding: Config validation and hooks of the task registry.
        settings: Rounds, local epochs, strategy, DP.

    Raises:
        ConfigError: Invalid config or settings.
    """

    def __init__(self, config: dict[str, Any], binding: TaskBinding, settings: FederatedSettings) -> None:
        self.settings = settings
        self.binding = binding
        raw = json.loads(json.dumps(config))
        raw["epochs"] = settings.rounds * settings.local_epochs  # the learning-rate schedule spans the whole run
        raw["resume"] = False
        self.cfg = binding.validate(raw)
        torch.set_num_threads(self.cfg.num_threads)
        seed_everything(self.cfg.seed)
        self.hooks = binding.hooks(self.cfg)
        self.initial = state_to_arrays(self.hooks.network.state_dict())
        self.config_json = json.dumps(self.cfg.resolved(), sort_keys=True)
        self.record = _Record()
        self._start = time.perf_counter()

    def fit_instructions(self, server_round: int) -> dict[str, Any]:
        """What each site is told in round ``server_round`` (besides the weights)."""
        return {"config": self.config_json, "round": server_round, "rounds": self.settings.rounds, "local_epochs": self.settings.local_epochs}

    def aggregate_metrics(self, results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        """Record the sites of a round (name -> cases) and their case-weighted mean training loss."""
        total = sum(n for n, _ in results) or 1
        loss = float(sum(n * float(m.get("train_loss", 0.0)) for n, m in results) / total)
        sites = {str(m.get("site", f"site-{i}")): int(m.get("cases", n)) for i, (n, m) in enumerate(results)}
        self.record.sites.update(sites)
        self.record.rounds.append({"round": len(self.record.rounds) + 1, "sites": sorted(sites), "train_loss": round(loss, 5)})
        return {"train_loss": loss}

    def evaluate(self, server_round: int, arrays: list[np.ndarray], _config: dict[str, Any]) -> tuple[float, dict[str, Any]] | None:
        """Keep the global weights of each round and score them on the server's held-out cases (if any)."""
        if server_round == 0:
            return None
        self.record.weights = [np.array(a, copy=True) for a in arrays]
        self.hooks.network.load_state_dict(arrays_to_state(arrays, self.hooks.network.state_dict()))
        found = self.hooks.validate()
        if found is None:
            return None
        self.record.validation = dict(found.metrics, epoch=server_round * self.settings.local_epochs)
        if self.record.rounds and self.record.rounds[-1]["round"] == server_round:
            self.record.rounds[-1]["score"] = round(float(found.score), 5)
        return 1.0 - float(found.score), {"score": float(found.score)}

    def strategy(self) -> Any:
        """The Flower strategy (FedAvg or FedProx, wrapped in server-side DP when asked)."""
        from flwr.common import ndarrays_to_parameters
        from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx

        s = self.settings
        common: dict[str, Any] = dict(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=s.min_sites, min_evaluate_clients=0, min_available_clients=s.min_sites,
            evaluate_fn=self.evaluate, on_fit_config_fn=self.fit_instructions, accept_failures=False,
            initial_parameters=ndarrays_to_parameters(self.initial), fit_metrics_aggregation_fn=self.aggregate_metrics,
        )
        strategy = FedProx(proximal_mu=s.proximal_mu, **common) if s.strategy is Strategy.FEDPROX else FedAvg(**common)
        if s.dp_noise > 0:
            return DifferentialPrivacyServerSideFixedClipping(strategy, noise_multiplier=s.dp_noise, clipping_norm=s.dp_clip,
                                                              num_sampled_clients=s.min_sites)
        return strategy

    def ship(self) -> Path:
        """Write the bundle of the last round's weights (saved, loaded back, measured on the held-out cases).

        Raises:
            ConfigError: No round finished (no weights to ship). OutputError: the bundle cannot be written.
        """
        if self.record.weights is None or len(self.record.rounds) < self.settings.rounds:
            raise ConfigError(f"the federated run finished {len(self.record.rounds)} of {self.settings.rounds} rounds; no bundle written "
                              "(check that every site connected and trained)")
        state = arrays_to_state(self.record.weights, self.hooks.network.state_dict())
        fed = dict(self.settings.record(), sites=dict(sorted(self.record.sites.items())), cases=sum(self.record.sites.values()),
                   history=self.record.rounds)
        epochs = self.settings.rounds * self.settings.local_epochs
        run: dict[str, Any] = {"best_epoch": epochs, "epochs_run": epochs, "seconds": round(time.perf_counter() - self._start, 1),
                               "selection": "last round", "train_loss": [r["train_loss"] for r in self.record.rounds], "federated": fed}
        run.update(self.hooks.data_record())
        return ship_bundle(self.cfg, self.hooks, state, self.record.validation, run, card_extra=federated_card_section(fed))


def federated_card_section(fed: dict[str, Any]) -> str:
    """The model card's federated-training section."""
    sites = ", ".join(f"`{k}` {v} cases" for k, v in fed["sites"].items())
    dp = fed.get("differential_privacy")
    dp_line = (f"central differential privacy (Flower, server-side fixed clipping): clipping norm {dp['clipping_norm']}, "
               f"noise multiplier {dp['noise_multiplier']}" if dp else "no differential privacy")
    mu = f" (mu = {fed['proximal_mu']})" if "proximal_mu" in fed else ""
    rows = "\n".join(f"| {r['round']} | {r['train_loss']:.4f} | {r.get('score', float('nan')):.4f} |" for r in fed["history"])
    return (
        "\n## Federated training\n\n"
        f"Trained with Flower across {len(fed['sites'])} sites that exchanged only model weights: strategy "
        f"{fed['strategy']}{mu}, {fed['rounds']} rounds of {fed['local_epochs']} local epoch(s) each; {dp_line}.\n"
        f"Sites and their training cases: {sites} ({fed['cases']} in all).\n\n"
        "| round | mean site training loss | held-out score at the server |\n|---|---|---|\n" + rows + "\n"
    )


class AuditLog:
    """A Flower client mod that writes every message the site sends, serialised, to ``folder`` (and a summary).

    Each reply becomes ``r<round>-<node>-<NNNN>-<type>.bin`` (the message's protobuf bytes) and one line of
    ``sent.jsonl``: the round, the message type, each array's dtype and shape, and each metric (name and value).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def __call__(self, msg: Any, ctx: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        from flwr.common.serde import message_to_proto

        from medannot.io import atomic_write_bytes

        reply = call_next(msg, ctx)
        rnd = 0
        if msg.has_content():
            for rec in msg.content.config_records.values():
                rnd = int(rec.get("round", rnd))
        self.folder.mkdir(parents=True, exist_ok=True)
        seq = len(list(self.folder.glob("*.bin")))
        kind = str(reply.metadata.message_type).replace("/", "-")
        atomic_write_bytes(self.folder / f"r{rnd:03d}-{ctx.node_id}-{seq:04d}-{kind}.bin", message_to_proto(reply).SerializeToString())
        summary: dict[str, Any] = {"round": rnd, "node": int(ctx.node_id), "type": str(reply.metadata.message_type), "arrays": {}, "metrics": {}}
        if reply.has_content():
            for rname, rec in reply.content.array_records.items():
                summary["arrays"][rname] = [[str(a.numpy().dtype), list(a.numpy().shape)] for a in rec.values()]
            for rname, rec in list(reply.content.metric_records.items()) + list(reply.content.config_records.items()):
                summary["metrics"][rname] = {k: v if isinstance(v, (int, float, str, bool)) else repr(v) for k, v in rec.items()}
        with (self.folder / "sent.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(summary) + "\n")
        return reply


class _SiteClients:
    """``client_fn`` of a Flower ClientApp: partition ``i`` (simulation) or the one site (``join``) -> its client."""

    def __init__(self, binding: TaskBinding, sites: Sequence[tuple[str, str]]) -> None:
        self.binding = binding
        self.sites = list(sites)

    def __call__(self, context: Any) -> Any:
        from flwr.client import NumPyClient

        index = int(context.node_config.get("partition-id", 0)) if len(self.sites) > 1 else 0
        name, folder = self.sites[index]
        trainer = SiteTrainer(self.binding, folder, name)

        class _Client(NumPyClient):
            def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
                return trainer.fit(parameters, config)

        return _Client().to_client()


def _client_app(binding: TaskBinding, sites: Sequence[tuple[str, str]], audit: str | Path | None) -> Any:
    from flwr.client import ClientApp

    return ClientApp(client_fn=_SiteClients(binding, sites), mods=[AuditLog(audit)] if audit is not None else [])


def serve(run: FederatedRun, address: str = "127.0.0.1:8080", certificates: tuple[bytes, bytes, bytes] | None = None) -> Path:
    """Run the server over gRPC until every round is done, then ship the bundle.

    Args:
        run: The server side of the run.
        address: ``HOST:PORT`` to listen on.
        certificates: ``(CA certificate, server certificate, server private key)`` PEM bytes for TLS; None: plain gRPC
            (use only on a private network or a tunnel).

    Returns:
        The bundle folder.
    """
    from flwr.server import ServerConfig, start_server

    start_server(server_address=address, strategy=run.strategy(), certificates=certificates,
                 config=ServerConfig(num_rounds=run.settings.rounds, round_timeout=run.settings.round_timeout_s))
    return run.ship()


def join(binding: TaskBinding, data_dir: str | Path, name: str, address: str = "127.0.0.1:8080", root_certificate: bytes | None = None,
         audit: str | Path | None = None, max_wait_s: float | None = 600.0) -> None:
    """Take part in a run as one site until the server says it is over.

    Args:
        binding: Config validation and hooks of the task registry.
        data_dir: The site's dataset folder (never leaves the site).
        name: The site's name in the server's record.
        address: The server's ``HOST:PORT``.
        root_certificate: PEM CA certificate of a TLS server; None: plain gRPC.
        audit: Folder where every sent message is written (:class:`AuditLog`); None: no log.
        max_wait_s: Give up connecting after this long (None: keep trying).

    Raises:
        InputError / ConfigError: The data folder is missing or holds no labelled case (checked before connecting).
    """
    from flwr.compat.client.app import start_client_internal

    SiteTrainer(binding, data_dir, name)  # fail fast on a bad folder
    _wait_for_server(address, max_wait_s)
    app = _client_app(binding, [(name, str(data_dir))], audit)
    start_client_internal(server_address=address, node_config={}, load_client_app_fn=lambda *_: app, insecure=root_certificate is None,
                          root_certificates=root_certificate, max_wait_time=max_wait_s)


def _wait_for_server(address: str, max_wait_s: float | None) -> None:
    """Wait until ``HOST:PORT`` accepts connections (Flower's client gives up at once when the server is not up yet).

    Raises:
        ConfigError: Not reachable within ``max_wait_s`` seconds (None: wait on).
    """
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"server address {address!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
    deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
            return
        except OSError as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise ConfigError(f"cannot reach the federated server at {address} ({exc.strerror or exc}) within {max_wait_s:.0f} s; "
                                  "start `medannot federated server` first, or check the address") from None
        time.sleep(1.0)


def simulate(run: FederatedRun, sites: Sequence[tuple[str, str | Path]], audit: str | Path | None = None,
             cpus: int = 2, cpus_per_site: float = 1.0) -> Path:
    """Run every round with Flower's simulation engine (sites as Ray actors on this machine), then ship the bundle.

    Args:
        run: The server side of the run (its ``min_sites`` should equal ``len(sites)``).
        sites: ``[(name, dataset folder), ...]``: one simulated site each.
        audit: Folder where every message the sites send is written (:class:`AuditLog`).
        cpus: CPUs the local Ray instance may use.
        cpus_per_site: CPUs reserved per simulated site (sites beyond ``cpus / cpus_per_site`` wait their turn).

    Returns:
        The bundle folder.

    Raises:
        ConfigError: Fewer sites than ``min_sites``, or a round that did not finish.
    """
    import os

    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.simulation import run_simulation

    if len(sites) < run.settings.min_sites:
        raise ConfigError(f"{len(sites)} sites given; the run needs at least {run.settings.min_sites}")
    for name, folder in sites:
        SiteTrainer(run.binding, folder, name)  # fail fast on a bad folder, before Ray starts
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no accelerators here; silences Ray's FutureWarning
    strategy = run.strategy()
    server = ServerApp(server_fn=lambda _ctx: ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=run.settings.rounds)))
    client = _client_app(run.binding, [(n, str(f)) for n, f in sites], audit)
    with ray_quietly():
        run_simulation(server, client, num_supernodes=len(sites),
                       backend_config={"client_resources": {"num_cpus": cpus_per_site, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False, "log_to_driver": False}})
    return run.ship()


@contextlib.contextmanager
def ray_quietly() -> Iterator[None]:
    """Run Ray inside, then collect what its shutdown leaves behind (handles of its child processes and of
    ``/dev/null``) with their ResourceWarnings off: Ray's own housekeeping, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()
