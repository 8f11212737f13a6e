"""Networks of the promptable task: image + prompt maps + previous mask in, one object logit map out.

``promptable-unet`` is MONAI's BasicUNet with ``in_channels`` inputs (the encoding of
:mod:`medannot.inference.promptable`: image, positive clicks, negative clicks, box, previous mask) and a single
output channel, the logit of "this voxel belongs to the object the prompts point at". It is class-agnostic:
the bundle's labels are ``0`` background and ``1`` object, and the network has no background output.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks import nets

from medannot.data.task import Task
from medannot.errors import ModelError
from medannot.models.registry import register_network

__all__ = ["promptable_unet"]


@register_network(
    "promptable-unet",
    task=Task.PROMPTABLE,
    defaults={"features": (16, 16, 32, 64, 128, 16)},
    divisor=lambda params: 16,
    description="MONAI BasicUNet, prompt maps and previous mask as input channels, one object logit out",
    outputs_background=False,
    closed_params=True,
    example_params={"features": (4, 4, 8, 8, 16, 4)},
)
def promptable_unet(spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """MONAI BasicUNet with one output channel (the object's logit).

    Raises:
        ModelError: ``out_channels`` other than 1 (a promptable network segments one object at a time).
    """
    if out_channels != 1:
        raise ModelError(f"a promptable network has one output (the object's logit), got out_channels={out_channels}; "
                         "give the bundle the labels 0 background and 1 object")
    features = tuple(int(f) for f in params["features"])
    return nets.BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, features=features)
