"""Federated training from the command line: the task registry bound to :mod:`medannot.training.federated`.

``medannot federated server`` builds a :class:`~medannot.training.federated.FederatedRun` from a training config
(its task's config model and hooks come from the registry) and ``medannot federated client`` joins it with a site's
dataset folder. Flower is an optional dependency (``pip install 'medannot[federated]'``, then
``pip install --no-deps flwr==1.42.0``: Flower pins older typer/fastapi/rich than medannot's, which it does not
need for its server and client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medannot.errors import ConfigError
from medannot.tasks import get_task
from medannot.training.config import LoopConfig, config_task, validate_config
from medannot.training.loop import TrainingHooks

__all__ = ["registry_binding", "require_flower", "server_config"]

FLOWER_INSTALL = "pip install 'medannot[federated]' && pip install --no-deps flwr==1.42.0"


def require_flower() -> None:
    """Check that Flower can be imported.

    Raises:
        ConfigError: Flower (or a package it needs) is missing, saying how to install it.
    """
    try:
        import flwr  # noqa: F401
        import flwr.server  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"federated training needs Flower ({exc}); install it: {FLOWER_INSTALL}") from None


def _validate(data: dict[str, Any]) -> LoopConfig:
    return validate_config(get_task(config_task(data)).config_model, data)


def _hooks(cfg: LoopConfig) -> TrainingHooks:
    return get_task(cfg.task).training(cfg)


def registry_binding() -> Any:
    """The :class:`~medannot.training.federated.TaskBinding` of the task registry (config model and hooks by the config's task)."""
    from medannot.training.federated import TaskBinding

    return TaskBinding(validate=_validate, hooks=_hooks)


def server_config(config: str | Path | dict[str, Any], val: str | Path | None = None, out: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The server's config: ``config`` with its data replaced by the held-out folder ``val`` (or by none).

    The server trains nothing; its ``data`` only names the held-out cases the shared weights are scored on.
    ``target``, ``fg_ratio`` and ``augment`` of the config's data parameters are kept (the sites use them).

    Args:
        config: A training config file or dict (e.g. ``configs/federated-nuclei.yaml``).
        val: Dataset folder of held-out labelled cases; None keeps the config's own ``data`` when it is a
            ``folder`` source with ``val_path`` only.
        out: The bundle folder (default: the config's ``out``).
        overrides: Dotted-key replacements (``{"network.params.channels": [8, 16]}``).

    Raises:
        ConfigError: Invalid config, or no held-out cases named.
    """
    cfg = validate_config(get_task(config_task(config)).config_model, config, overrides)
    data = cfg.resolved()
    params = dict((data.get("data") or {}).get("params") or {})
    kept = {k: v for k, v in params.items() if k in ("target", "fg_ratio", "augment")}
    if val is not None:
        data["data"] = {"source": "folder", "params": {**kept, "val_path": str(Path(val).resolve())}}
    elif (data.get("data") or {}).get("source") != "folder" or params.get("path") is not None or not params.get("val_path"):
        raise ConfigError("the server holds no training data: give --val DIR (held-out labelled cases), or a config whose data is "
                          "{source: folder, params: {val_path: DIR}}")
    if out is not None:
        data["out"] = str(out)
    return data
