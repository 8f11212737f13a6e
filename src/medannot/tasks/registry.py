"""The task registry: one plug-in per :class:`~medannot.data.Task`, and the questions the rest of medannot asks it.

Built-in tasks register themselves when :mod:`medannot.tasks` is imported; a new task is one module with a class
that follows :class:`~medannot.tasks.base.TaskPlugin` and ``@register_task`` on it (``docs/adding-a-task.md``).
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from medannot.data import Task
from medannot.errors import ConfigError, ModelError
from medannot.models.bundle import Bundle
from medannot.tasks.base import CasePredictor, PredictOptions, TaskPlugin
from medannot.training.config import config_task, validate_config
from medannot.training.loop import run_training

__all__ = ["get_task", "list_tasks", "load_predictor", "register_task", "task_of_predictions", "train"]

_TASKS: dict[Task, TaskPlugin] = {}
P = TypeVar("P", bound=type)


def register_task(cls: P) -> P:
    """Class decorator: register an instance of ``cls`` under ``cls.task``.

    Raises:
        ConfigError: If that task is already registered.
    """
    task = Task.parse(cls.task)  # type: ignore[attr-defined]
    if task in _TASKS:
        raise ConfigError(f"task {task.value!r} is already registered by {type(_TASKS[task]).__name__}")
    _TASKS[task] = cls()
    return cls


_PLUGINS_LOADED = False


def _ensure_builtin() -> None:
    """Register the built-in tasks, then those of installed plug-ins (entry points in the group ``medannot.tasks``).

    Raises:
        ConfigError: A plug-in that cannot be imported (naming it and the package that declares it).
    """
    global _PLUGINS_LOADED
    import medannot.tasks.builtin  # noqa: F401 - registers the built-in tasks

    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for entry in entry_points(group="medannot.tasks"):
        try:
            entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is named, not a traceback
            raise ConfigError(f"task plug-in {entry.name!r} ({entry.value}) cannot be imported: {type(exc).__name__}: {exc}; "
                              "reinstall or remove the package that declares it") from None


def get_task(task: Task | str) -> TaskPlugin:
    """The plug-in of ``task``.

    Raises:
        ConfigError: Unknown task name (the valid ones are listed), or a task with no plug-in registered.
    """
    _ensure_builtin()
    key = Task.parse(task)
    if key not in _TASKS:
        raise ConfigError(f"task {key.value!r} has no plug-in yet; registered: {', '.join(t.value for t in _TASKS)}")
    return _TASKS[key]


def list_tasks() -> list[TaskPlugin]:
    """The registered plug-ins, in :class:`Task` order."""
    _ensure_builtin()
    return [_TASKS[t] for t in Task if t in _TASKS]


def load_predictor(model: str | Path | Bundle, options: PredictOptions | None = None) -> CasePredictor:
    """The predictor of a bundle (bundled name, folder or loaded bundle), made by its task's plug-in.

    Raises:
        ModelError: Unknown or corrupt bundle. ConfigError: options its task does not take.
    """
    _ensure_builtin()  # plug-in task names must exist before a bundle naming them is validated
    bundle = model if isinstance(model, Bundle) else Bundle.load(model)
    return get_task(bundle.task).predictor(bundle, options or PredictOptions())


def train(config: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None, progress: bool | None = None) -> Path:
    """Train the model a config describes, with its task's config model and hooks, in the one training loop.

    Args:
        config: A YAML/JSON config file, a dict, or a validated config.
        overrides: Dotted-key replacements (``{"epochs": 1, "out": "runs/x"}``).
        progress: Show progress bars (None = only on a terminal).

    Returns:
        The bundle folder.

    Raises:
        ConfigError: Invalid config (fields named). ModelError: data or a parent bundle that does not fit.
    """
    _ensure_builtin()
    plugin = get_task(config_task(config))
    cfg = validate_config(plugin.config_model, config, overrides)
    path = config if isinstance(config, (str, Path)) else None
    return run_training(cfg, plugin.training, config_path=path, progress=progress)


def task_of_predictions(pred: str | Path) -> Task:
    """The task recorded in a prediction folder (``annotation.json`` provenance), so ``evaluate`` needs no guess.

    A folder holding ``classifications.csv`` (or such a CSV itself) was written by a classifier; a bare label file (no ``annotation.json``
    anywhere) is a segmentation. Annotation files of older medannot versions recorded detection and classification
    in ``provenance.parameters.task``.

    Raises:
        ModelError: Case folders that record different tasks.
    """
    _ensure_builtin()
    root = Path(pred)
    if root.is_file() and root.suffix.lower() == ".csv":
        return Task.CLASSIFICATION
    if root.is_file():
        candidates = [root.parent / "annotation.json"] if root.name != "annotation.json" else [root]
    elif (root / "classifications.csv").is_file():
        return Task.CLASSIFICATION
    else:
        candidates = [root / "annotation.json", *sorted(root.glob("*/annotation.json"))[:50]]
    found: set[Task] = set()
    for path in candidates:
        if not path.is_file():
            continue
        try:
            prov = json.loads(path.read_text(encoding="utf-8")).get("provenance") or {}
        except (OSError, ValueError, AttributeError):
            continue
        recorded = prov.get("task") or (prov.get("parameters") or {}).get("task") or Task.SEGMENTATION
        try:
            found.add(Task.parse(recorded))
        except ConfigError:
            continue
    if len(found) > 1:
        raise ModelError(f"the predictions mix tasks ({', '.join(sorted(found))}); evaluate each model's output folder on its own", root)
    return found.pop() if found else Task.SEGMENTATION
