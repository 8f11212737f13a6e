"""One registry of networks for every task: create one by name, list the names.

A network is registered with :func:`register_network` under a name and the :class:`~medannot.data.Task` it
serves; :func:`create_network` builds any of them from ``(name, spatial_dims, in_channels, out_channels,
**params)``, filling unset parameters from the registered defaults. An unknown name raises
:class:`~medannot.errors.ModelError` listing the valid ones. What a network returns depends on its task:

- segmentation and promptable: logits ``(N, out_channels, *spatial)`` with the input's spatial shape;
- classification: logits ``(N, out_channels)``; ``head`` names the final linear layer (its input is the
  embedding) and ``cam_layer`` the last feature map (Grad-CAM);
- detection: MONAI RetinaNet head outputs (a dict of per-level class and box maps); its ``out_channels`` counts
  object classes without background (``outputs_background=False``).

Every registered network passes one contract test (``tests/models/test_network_contract.py``): shapes in 2D and
3D, determinism in eval mode, and a save/load round trip of its weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from medannot.data.task import Task
from medannot.errors import ModelError

__all__ = ["NetworkSpec", "register_network", "create_network", "list_networks", "get_network_spec", "resolved_params",
           "size_divisor"]


def _one(_params: dict[str, Any]) -> int:
    return 1


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one registered network.

    Args:
        name: Registry name (lower case, e.g. ``"unet"``).
        task: The task whose outputs the network produces.
        factory: ``factory(spatial_dims, in_channels, out_channels, **params) -> torch.nn.Module``.
        defaults: Parameters used when the caller does not give them.
        divisor: ``divisor(params) -> int``: every spatial size of an input patch must be a
            multiple of this number (in voxels), e.g. ``2**len(strides)`` for a U-Net.
        description: One line for ``list_networks`` / help output.
        outputs_background: Whether output channel 0 is label value 0 (True for segmentation and classification,
            where the label map keys are the output channels; False for detection, whose outputs are the object
            classes 1..K).
        min_outputs: Fewest output channels the network is meaningful with (2 for a classifier).
        head: Dotted name of the final layer (its input is the embedding; its weight rows are the outputs), if any.
        cam_layer: Dotted name of the last spatial feature map (Grad-CAM), if any.
        closed_params: Only the default parameter names are accepted (an unknown one is an error naming them).
        example_params: Small parameters for tests and documentation (a network that builds in milliseconds).
    """

    name: str
    task: Task
    factory: Callable[..., torch.nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    divisor: Callable[[dict[str, Any]], int] = _one
    description: str = ""
    outputs_background: bool = True
    min_outputs: int = 1
    head: str | None = None
    cam_layer: str | None = None
    closed_params: bool = False
    example_params: dict[str, Any] = field(default_factory=dict)

    def output_channels(self, n_labels: int) -> int:
        """Network outputs for a label map of ``n_labels`` entries (label 0 included)."""
        return n_labels if self.outputs_background else n_labels - 1


_REGISTRY: dict[str, NetworkSpec] = {}


def register_network(
    name: str,
    task: Task = Task.SEGMENTATION,
    defaults: dict[str, Any] | None = None,
    divisor: Callable[[dict[str, Any]], int] | None = None,
    description: str = "",
    **options: Any,
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering a network factory under ``name`` for ``task``.

    Args:
        name: Registry name (case-insensitive).
        task: The task the network serves.
        defaults: Default parameters.
        divisor: Input size divisor as a function of the parameters (default 1).
        description: One line (default: the factory's first docstring line).
        **options: Further :class:`NetworkSpec` fields (``outputs_background``, ``head``, ``cam_layer``,
            ``min_outputs``, ``closed_params``, ``example_params``).

    Raises:
        ModelError: If ``name`` is already registered.
    """

    def deco(factory: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        key = name.lower()
        if key in _REGISTRY:
            raise ModelError(f"network {key!r} is already registered; choose another name")
        _REGISTRY[key] = NetworkSpec(
            name=key,
            task=Task.parse(task),
            factory=factory,
            defaults=dict(defaults or {}),
            divisor=divisor or _one,
            description=description or ((factory.__doc__ or "").strip().splitlines() or [""])[0],
            **options,
        )
        return factory

    return deco


def _ensure_builtin() -> None:
    # The built-in networks register themselves when their modules are imported.
    import medannot.models.classification  # noqa: F401
    import medannot.models.detection  # noqa: F401
    import medannot.models.networks  # noqa: F401
    import medannot.models.promptable  # noqa: F401


def list_networks(task: Task | str | None = None) -> list[str]:
    """Names of the registered networks (of one task, when given), sorted."""
    _ensure_builtin()
    wanted = None if task is None else Task.parse(task)
    return sorted(n for n, s in _REGISTRY.items() if wanted is None or s.task is wanted)


def get_network_spec(name: str, task: Task | str | None = None) -> NetworkSpec:
    """The :class:`NetworkSpec` registered under ``name`` (case-insensitive).

    Args:
        name: Registry name.
        task: When given, the network must serve this task.

    Raises:
        ModelError: If the name is unknown (the message lists the valid names) or serves another task.
    """
    _ensure_builtin()
    key = str(name).lower()
    spec = _REGISTRY.get(key)
    if spec is None:
        valid = ", ".join(list_networks(task))
        raise ModelError(f"unknown network {name!r}; expected one of: {valid}")
    if task is not None and spec.task is not Task.parse(task):
        valid = ", ".join(list_networks(task))
        raise ModelError(f"network {key!r} is a {spec.task} network, not a {Task.parse(task)} one; expected one of: {valid}")
    return spec


def resolved_params(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registered defaults of ``name`` updated with ``params``.

    Raises:
        ModelError: Unknown name, or a parameter a closed network does not have.
    """
    spec = get_network_spec(name)
    out = dict(spec.defaults)
    out.update(params or {})
    unknown = sorted(set(out) - set(spec.defaults)) if spec.closed_params else []
    if unknown:
        raise ModelError(f"cannot build network {spec.name!r}: unknown params {unknown}; allowed: {', '.join(spec.defaults)}")
    return out


def size_divisor(name: str, params: dict[str, Any] | None = None) -> int:
    """Every spatial size of an input must be a multiple of this (voxels) for network ``name``."""
    spec = get_network_spec(name)
    return int(spec.divisor(resolved_params(name, params)))


def create_network(name: str, spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """Build a registered network.

    Args:
        name: Registry name, e.g. ``"unet"``, ``"basicunet"``, ``"densenet-small"``, ``"retinanet"``.
        spatial_dims: 2 or 3.
        in_channels: Number of input channels (>= 1).
        out_channels: Number of output channels (segmentation/classification: one per label; detection: object
            classes without background).
        **params: Network-specific parameters; unset ones come from the registered defaults.

    Returns:
        The network (a fresh ``torch.nn.Module`` in training mode).

    Raises:
        ModelError: Unknown name, bad dimensions, or parameters the network rejects.
    """
    spec = get_network_spec(name)
    if spatial_dims not in (2, 3):
        raise ModelError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if int(in_channels) < 1 or int(out_channels) < max(1, spec.min_outputs):
        raise ModelError(f"network {spec.name!r} needs in_channels >= 1 and out_channels >= {max(1, spec.min_outputs)}, "
                         f"got {in_channels} and {out_channels}")
    merged = resolved_params(spec.name, params)
    try:
        return spec.factory(int(spatial_dims), int(in_channels), int(out_channels), **merged)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise ModelError(
            f"cannot build network {spec.name!r} with params {merged}: {exc}; check the parameter names and values"
        ) from exc
