"""A project's promptable engine by name: a classical engine, or a promptable bundle (the network) once one is installed.

The review page's Smart tool and the simulated annotator use whatever :func:`create_promptable` returns: any
object that follows :class:`~medannot.data.prompts.PromptableEngine` (``name``, ``segment(image, prompts)``). Names
are resolved by the promptable task's :func:`medannot.tasks.promptable.create_engine` (classical engines by name,
bundled promptable models, promptable bundle folders; engines are built once and kept warm), so the promptable
network plugs in by name (the project setting ``engine``) without a change here.
"""

from __future__ import annotations

from typing import Any

from medannot.classical.interactive import list_engines
from medannot.data.prompts import PromptableEngine
from medannot.errors import ConfigError, MedannotError

__all__ = ["AUTO", "check_engine_name", "create_promptable", "list_promptable", "resolve_engine_name"]

AUTO = "auto"
"""The engine setting that means: the default of the case's dimensionality
(:func:`medannot.tasks.promptable.default_engine`, the engine ``medannot segment`` uses without ``--engine``)."""


def resolve_engine_name(name: str, ndim: int) -> str:
    """The engine to run for a case of ``ndim`` spatial dimensions: ``name``, or the default when it is :data:`AUTO`."""
    if name != AUTO:
        return name
    from medannot.tasks.promptable import default_engine

    return default_engine(ndim)


def list_promptable() -> list[str]:
    """Names of the engines available now: the classical ones and the bundled promptable models."""
    from medannot.tasks.promptable import list_engines as all_engines

    return all_engines()


def create_promptable(name: str, **params: Any) -> PromptableEngine:
    """The engine called ``name`` (built once and reused).

    Raises:
        ConfigError: Neither a classical engine nor a promptable bundle (the valid names are listed).
    """
    from medannot.tasks.promptable import create_engine

    try:
        return create_engine(name, **params)
    except ConfigError:
        raise
    except MedannotError as exc:
        raise ConfigError(f"engine {name[:100]!r}: {str(exc).splitlines()[0][:200]}") from None
    except Exception:  # noqa: BLE001 - a name that is no path at all: the same one line as an unknown engine
        raise ConfigError(f"unknown engine {name[:100]!r}; choose one of: {', '.join(list_promptable())}") from None


def check_engine_name(name: str) -> str:
    """``name`` when :func:`create_promptable` can build it, or :data:`AUTO` (a classical name is accepted without
    loading anything).

    Raises:
        ConfigError: As :func:`create_promptable`.
    """
    if name != AUTO and name not in list_engines():
        create_promptable(name)
    return name
