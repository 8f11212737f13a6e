"""A project's promptable engine by name: a classical engine, or a promptable bundle once one is installed.

The review page's Smart tool and the simulated annotator use whatever :func:`create_promptable` returns: any
object that follows :class:`~medannot.data.prompts.PromptableEngine` (``name``, ``segment(image, prompts)``).
Classical engines are built by :func:`medannot.classical.interactive.create_engine`; any other name is loaded as a
bundle (``medannot.tasks.load_predictor``), and its predictor is used when it is a promptable engine, so the
promptable network plugs in by name (the project setting ``engine``) without a change here.
"""

from __future__ import annotations

from typing import Any

from medannot.classical.interactive import create_engine, list_engines
from medannot.data.prompts import PromptableEngine
from medannot.errors import ConfigError, MedannotError

__all__ = ["check_engine_name", "create_promptable", "list_promptable"]


def list_promptable() -> list[str]:
    """Names of the engines available without a bundle (the classical ones)."""
    return list_engines()


def create_promptable(name: str, **params: Any) -> PromptableEngine:
    """The engine called ``name``.

    Raises:
        ConfigError: Neither a classical engine nor a bundle whose predictor is a promptable engine (the
            classical names are listed).
    """
    if name in list_engines():
        return create_engine(name, **params)
    hint = f"use one of {', '.join(list_engines())} or a promptable segmentation bundle"
    try:
        from medannot.tasks import load_predictor

        predictor = load_predictor(name)
    except MedannotError:
        raise ConfigError(f"unknown promptable engine {name[:100]!r}; {hint}") from None
    except Exception:  # noqa: BLE001 - a name that is no path at all: the same one line
        raise ConfigError(f"unknown promptable engine {name[:100]!r}; {hint}") from None
    if not isinstance(predictor, PromptableEngine):
        raise ConfigError(f"model {name[:100]!r} is not a promptable engine (it has no segment(image, prompts)); {hint}")
    return predictor


def check_engine_name(name: str) -> str:
    """``name`` when :func:`create_promptable` can build it (a classical name is accepted without loading anything).

    Raises:
        ConfigError: As :func:`create_promptable`.
    """
    if name not in list_engines():
        create_promptable(name)
    return name
