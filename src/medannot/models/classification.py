"""Image-level classification networks (MONAI DenseNet / ResNet) by name, and their pooled features.

Names (``create_classifier_network``):

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

from dataclasses import dataclass
from typing import Any, Callable

import torch

from medannot.errors import ModelError

__all__ = ["CLASSIFIER_NETWORKS", "create_classifier_network", "embed", "gradcam_layer", "has_dropout"]


@dataclass(frozen=True)
class ClassifierNetwork:
    """How to build one classification network and where its parts are.

    Args:
        factory: ``factory(spatial_dims, in_channels, num_classes, **params) -> nn.Module``.
        defaults: Parameters used when not given.
        head: Dotted name of the final linear layer (its input is the embedding).
        cam_layer: Dotted name of the layer whose output Grad-CAM explains (last spatial feature map).
    """

    factory: Callable[..., torch.nn.Module]
    defaults: dict[str, Any]
    head: str
    cam_layer: str


def _densenet(spatial_dims: int, in_channels: int, num_classes: int, **params: Any) -> torch.nn.Module:
    from monai.networks.nets import DenseNet

    params = dict(params)
    params["block_config"] = tuple(params.get("block_config", (6, 12, 24, 16)))
    return DenseNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, **params)


def _resnet(spatial_dims: int, in_channels: int, num_classes: int, **params: Any) -> torch.nn.Module:
    from monai.networks.nets import ResNet

    return ResNet(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes, **params)


CLASSIFIER_NETWORKS: dict[str, ClassifierNetwork] = {
    "densenet121": ClassifierNetwork(_densenet, {"init_features": 64, "growth_rate": 32, "block_config": [6, 12, 24, 16], "dropout_prob": 0.0},
                                     "class_layers.out", "class_layers.relu"),
    "densenet-small": ClassifierNetwork(_densenet, {"init_features": 16, "growth_rate": 8, "block_config": [2, 4, 4, 2], "dropout_prob": 0.0},
                                        "class_layers.out", "class_layers.relu"),
    "resnet18": ClassifierNetwork(_resnet, {"block": "basic", "layers": [2, 2, 2, 2], "block_inplanes": [64, 128, 256, 512]}, "fc", "layer4"),
    "resnet-small": ClassifierNetwork(_resnet, {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128]}, "fc", "layer4"),
}


def _spec(name: str) -> ClassifierNetwork:
    try:
        return CLASSIFIER_NETWORKS[str(name).lower()]
    except KeyError:
        raise ModelError(f"unknown classification network {name!r}; expected one of: {', '.join(sorted(CLASSIFIER_NETWORKS))}") from None


def classifier_params(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registered defaults of classification network ``name`` updated with ``params``."""
    out = dict(_spec(name).defaults)
    out.update(params or {})
    return out


def create_classifier_network(name: str, spatial_dims: int, in_channels: int, num_classes: int, **params: Any) -> torch.nn.Module:
    """Build a classification network.

    Args:
        name: One of :data:`CLASSIFIER_NETWORKS` (case-insensitive).
        spatial_dims: 2 or 3.
        in_channels: Input channels (>= 1).
        num_classes: Number of classes (>= 2).
        **params: Network parameters; unset ones come from the defaults.

    Raises:
        ModelError: Unknown name or parameters the network rejects.
    """
    spec = _spec(name)
    if spatial_dims not in (2, 3):
        raise ModelError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if int(num_classes) < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    merged = classifier_params(name, params)
    try:
        return spec.factory(int(spatial_dims), int(in_channels), int(num_classes), **merged)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"cannot build classification network {name!r} with params {merged}: {exc}") from exc


def gradcam_layer(name: str) -> str:
    """Dotted name of the layer of network ``name`` that Grad-CAM uses (the last feature map)."""
    return _spec(name).cam_layer


def embed(network: torch.nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and logits of a batch, in one forward pass.

    Args:
        network: A network built by :func:`create_classifier_network` with the same ``name``.
        name: Its registry name (tells which layer is the head).
        x: ``(N, C, *spatial)`` float32 batch.

    Returns:
        ``(features (N, D), logits (N, K))``: the features are the input of the final linear layer.
    """
    head = dict(network.named_modules())[_spec(name).head]
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
