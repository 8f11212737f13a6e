"""Image-level classification networks (MONAI DenseNet / ResNet) by name, and their pooled features.

Registered in :mod:`medannot.models.registry` (task ``classification``; ``create_network(name, ...)``):

- ``densenet121``: MONAI ``DenseNet121`` (about 7 M parameters; for a GPU or a long CPU run);
- ``densenet-small``: MONAI ``DenseNet`` with 16 initial features, growth rate 8 and blocks ``(2, 4, 4, 2)``
  (about 45 k parameters: trains on 2 CPU cores in minutes, bundles under 1 MB);
- ``resnet18``: MONAI ``resnet18``;
- ``resnet-small``: MONAI ``ResNet`` with basic blocks ``[1, 1, 1, 1]`` and widths ``[16, 32, 64, 128]``.

Every network maps ``(N, C, *spatial)`` (2D or 3D) to logits ``(N, K)``. :func:`embed` returns the
global-average-pooled features that enter the final linear layer (the embedding used for retrieval),
and :func:`gradcam_layer` names the layer whose activations Grad-CAM uses.
"""

from __future__ import annotations

from typing import Any

import torch

from medannot.data.task import Task
from medannot.errors import ModelError
from medannot.models.registry import get_network_spec, register_network

__all__ = ["embed", "gradcam_layer", "has_dropout"]

_SMALL_DENSENET: dict[str, Any] = {"init_features": 4, "growth_rate": 4, "block_config": [1, 1]}


@register_network("densenet121", task=Task.CLASSIFICATION, min_outputs=2, head="class_layers.out", cam_layer="class_layers.relu",
                  defaults={"init_features": 64, "growth_rate": 32, "block_config": [6, 12, 24, 16], "dropout_prob": 0.0},
                  description="MONAI DenseNet121 (about 7 M parameters)", example_params=_SMALL_DENSENET)
@register_network("densenet-small", task=Task.CLASSIFICATION, min_outputs=2, head="class_layers.out", cam_layer="class_layers.relu",
                  defaults={"init_features": 16, "growth_rate": 8, "block_config": [2, 4, 4, 2], "dropout_prob": 0.0},
                  description="MONAI DenseNet, 16 initial features, growth 8, blocks (2, 4, 4, 2) (about 45 k parameters)",
                  example_params=_SMALL_DENSENET)
def _densenet(spatial_dims: int, in_channels: int, num_classes: int, **params: Any) -> torch.nn.Module:
    from monai.networks.nets import DenseNet

    params = dict(params)
    params["block_config"] = tuple(params.get("block_config", (6, 12, 24, 16)))
    return DenseNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, **params)


@register_network("resnet18", task=Task.CLASSIFICATION, min_outputs=2, head="fc", cam_layer="layer4",
                  defaults={"block": "basic", "layers": [2, 2, 2, 2], "block_inplanes": [64, 128, 256, 512]},
                  description="MONAI ResNet-18", example_params={"layers": [1, 1, 1, 1], "block_inplanes": [4, 8, 8, 8]})
@register_network("resnet-small", task=Task.CLASSIFICATION, min_outputs=2, head="fc", cam_layer="layer4",
                  defaults={"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128]},
                  description="MONAI ResNet, basic blocks [1, 1, 1, 1], widths [16, 32, 64, 128]",
                  example_params={"block_inplanes": [4, 8, 8, 8]})
def _resnet(spatial_dims: int, in_channels: int, num_classes: int, **params: Any) -> torch.nn.Module:
    from monai.networks.nets import ResNet

    return ResNet(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes, **params)


def _layer(name: str, which: str) -> str:
    spec = get_network_spec(name, Task.CLASSIFICATION)
    layer = getattr(spec, which)
    if layer is None:  # pragma: no cover - every registered classifier names both layers
        raise ModelError(f"classification network {name!r} does not name its {which}")
    return str(layer)


def gradcam_layer(name: str) -> str:
    """Dotted name of the layer of network ``name`` that Grad-CAM uses (the last feature map)."""
    return _layer(name, "cam_layer")


def embed(network: torch.nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and logits of a batch, in one forward pass.

    Args:
        network: A classification network built by ``create_network`` with the same ``name``.
        name: Its registry name (tells which layer is the head).
        x: ``(N, C, *spatial)`` float32 batch.

    Returns:
        ``(features (N, D), logits (N, K))``: the features are the input of the final linear layer.
    """
    head = dict(network.named_modules())[_layer(name, "head")]
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        logits = network(x)
    finally:
        handle.remove()
    return captured[0].flatten(1), logits


def has_dropout(network: torch.nn.Module) -> bool:
    """True when the network has a dropout layer with a non-zero probability (Monte-Carlo dropout is possible)."""
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and float(m.p) > 0 for m in network.modules())
