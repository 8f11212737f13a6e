"""Built-in segmentation networks (all from MONAI), registered by name (task ``segmentation``).

Each factory takes ``(spatial_dims, in_channels, out_channels, **params)`` and
returns a network mapping ``(N, in_channels, *spatial)`` to
``(N, out_channels, *spatial)`` logits. Defaults are small (CPU-friendly).
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks import nets

from medannot.models.registry import register_network


def _strides_divisor(params: dict[str, Any]) -> int:
    out = 1
    for s in params.get("strides", ()):
        out *= int(s) if not isinstance(s, (list, tuple)) else int(max(s))
    return out


@register_network(
    "unet",
    defaults={"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 2, "norm": "INSTANCE"},
    divisor=_strides_divisor,
    description="MONAI UNet (residual units), channels/strides configurable",
    example_params={"channels": (4, 8), "strides": (2,), "num_res_units": 1},
)
def unet(spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """MONAI UNet."""
    params = dict(params)
    params["channels"] = tuple(params["channels"])
    params["strides"] = tuple(params["strides"])
    return nets.UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **params)


@register_network(
    "basicunet",
    defaults={"features": (16, 16, 32, 64, 128, 16)},
    divisor=lambda params: 16,
    description="MONAI BasicUNet (4 poolings; sizes multiple of 16)",
    example_params={"features": (4, 4, 8, 8, 16, 4)},
)
def basicunet(spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """MONAI BasicUNet."""
    params = dict(params)
    params["features"] = tuple(params["features"])
    return nets.BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **params)


@register_network(
    "attention-unet",
    defaults={"channels": (16, 32, 64, 128), "strides": (2, 2, 2)},
    divisor=_strides_divisor,
    description="MONAI AttentionUnet (attention gates on the skip connections)",
    example_params={"channels": (4, 8), "strides": (2,)},
)
def attention_unet(spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """MONAI AttentionUnet."""
    params = dict(params)
    params["channels"] = tuple(params["channels"])
    params["strides"] = tuple(params["strides"])
    return nets.AttentionUnet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **params)


def _segresnet_divisor(params: dict[str, Any]) -> int:
    return 2 ** (len(tuple(params.get("blocks_down", (1, 2, 2, 4)))) - 1)


@register_network(
    "segresnet",
    defaults={"init_filters": 8, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)},
    divisor=_segresnet_divisor,
    description="MONAI SegResNet (residual encoder-decoder)",
    example_params={"init_filters": 8, "blocks_down": (1, 1), "blocks_up": (1,)},
)
def segresnet(spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """MONAI SegResNet."""
    params = dict(params)
    for key in ("blocks_down", "blocks_up"):
        params[key] = tuple(params[key])
    return nets.SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **params)


# UNETR is not registered: MONAI's UNETR needs the optional 'einops' package, which medannot does not depend on.
