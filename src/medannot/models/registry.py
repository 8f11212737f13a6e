"""Registry of segmentation networks: create one by name, list the names.

A network is registered with :func:`register_network`; :func:`create_network`
builds it from ``(name, spatial_dims, in_channels, out_channels, **params)``,
filling unset parameters from the registered defaults. An unknown name raises
:class:`~medannot.errors.ModelError` listing the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from medannot.errors import ModelError

__all__ = ["NetworkSpec", "register_network", "create_network", "list_networks", "get_network_spec"]


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one registered network.

    Args:
        name: Registry name (lower case, e.g. ``"unet"``).
        factory: ``factory(spatial_dims, in_channels, out_channels, **params) -> torch.nn.Module``.
        defaults: Parameters used when the caller does not give them.
        divisor: ``divisor(params) -> int``: every spatial size of an input patch must be a
            multiple of this number (in voxels), e.g. ``2**len(strides)`` for a U-Net.
        description: One line for ``list_networks`` / help output.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    divisor: Callable[[dict[str, Any]], int] = lambda params: 1
    description: str = ""


_REGISTRY: dict[str, NetworkSpec] = {}


def register_network(
    name: str,
    defaults: dict[str, Any] | None = None,
    divisor: Callable[[dict[str, Any]], int] | None = None,
    description: str = "",
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering a network factory under ``name``.

    Raises:
        ModelError: If ``name`` is already registered.
    """

    def deco(factory: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        key = name.lower()
        if key in _REGISTRY:
            raise ModelError(f"network {key!r} is already registered; choose another name")
        _REGISTRY[key] = NetworkSpec(
            name=key,
            factory=factory,
            defaults=dict(defaults or {}),
            divisor=divisor or (lambda params: 1),
            description=description or ((factory.__doc__ or "").strip().splitlines() or [""])[0],
        )
        return factory

    return deco


def _ensure_builtin() -> None:
    # The built-in networks register themselves on import of medannot.models.networks.
    import medannot.models.networks  # noqa: F401


def list_networks() -> list[str]:
    """Names of all registered networks, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_network_spec(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` registered under ``name`` (case-insensitive).

    Raises:
        ModelError: If the name is unknown; the message lists the valid names.
    """
    _ensure_builtin()
    key = str(name).lower()
    try:
        return _REGISTRY[key]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown network {name!r}; expected one of: {valid}") from None


def resolved_params(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registered defaults of ``name`` updated with ``params``."""
    spec = get_network_spec(name)
    out = dict(spec.defaults)
    out.update(params or {})
    return out


def size_divisor(name: str, params: dict[str, Any] | None = None) -> int:
    """Every spatial size of an input must be a multiple of this (voxels) for network ``name``."""
    spec = get_network_spec(name)
    return int(spec.divisor(resolved_params(name, params)))


def create_network(name: str, spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """Build a registered network.

    Args:
        name: Registry name, e.g. ``"unet"``, ``"basicunet"``, ``"attention-unet"``, ``"segresnet"``.
        spatial_dims: 2 or 3.
        in_channels: Number of input channels (>= 1).
        out_channels: Number of output channels (classes, >= 1).
        **params: Network-specific parameters; unset ones come from the registered defaults.

    Returns:
        The network (a fresh ``torch.nn.Module`` in training mode).

    Raises:
        ModelError: Unknown name, bad dimensions, or parameters the network rejects.
    """
    spec = get_network_spec(name)
    if spatial_dims not in (2, 3):
        raise ModelError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if int(in_channels) < 1 or int(out_channels) < 1:
        raise ModelError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
    merged = resolved_params(spec.name, params)
    try:
        return spec.factory(int(spatial_dims), int(in_channels), int(out_channels), **merged)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(
            f"cannot build network {spec.name!r} with params {merged}: {exc}; check the parameter names and values"
        ) from exc
