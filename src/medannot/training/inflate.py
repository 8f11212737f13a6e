"""Inflating 2D convolution weights into a 3D network (I3D, Carreira & Zisserman 2017).

A 2D bundle can start a 3D run of the same architecture: every 2D kernel ``(out, in, kH, kW)`` becomes
``(out, in, kD, kH, kW)`` by repeating it along depth and scaling it so that the 3D layer answers a volume that is
constant along depth exactly as the 2D layer answers one slice (away from the depth borders, where zero padding
differs). A convolution sums all ``kD`` taps along depth into each output voxel, so its copies are divided by ``kD``;
a transposed convolution with stride ``s`` gives each output voxel only the taps of one residue class modulo ``s``
(kernel 3, stride 2: tap 1 alone, or taps 0 and 2), so each copy is divided by the size of its class
(0.5, 1, 0.5). Normalisation, bias and linear weights have the same shape in 2D and 3D and are copied as they are.
"""

from __future__ import annotations

import torch

__all__ = ["inflate_state"]


def _depth_factors(module: torch.nn.Module) -> torch.Tensor | None:
    """The factor of each depth tap of a 3D (transposed) convolution's inflated kernel; None for other modules."""
    if isinstance(module, torch.nn.ConvTranspose3d):
        k, s = module.kernel_size[0], module.stride[0]
        return torch.tensor([1.0 / len(range(i % s, k, s)) for i in range(k)])
    if isinstance(module, torch.nn.Conv3d):
        k = module.kernel_size[0]
        return torch.full((k,), 1.0 / k)
    return None


def inflate_state(network: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a 2D ``state`` that fit the 3D ``network`` once inflated, under the network's names.

    Args:
        network: A 3D network (``Conv3d`` / ``ConvTranspose3d`` layers) with the parent's architecture.
        state: The parent's 2D weights.

    Returns:
        Each 2D kernel whose 3D counterpart has the same channels and in-plane size, inflated; every other tensor
        whose name and shape already fit, unchanged. Tensors that fit neither way are left out (the caller reports
        them as new). An empty ``state`` gives an empty dict.
    """
    own = network.state_dict()
    factors = {f"{name}.weight": f for name, m in network.named_modules() if (f := _depth_factors(m)) is not None}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if tuple(target.shape) == tuple(value.shape):
            out[key] = value
        elif (key in factors and value.ndim == 4 and target.ndim == 5 and tuple(target.shape[:2]) == tuple(value.shape[:2])
              and tuple(target.shape[3:]) == tuple(value.shape[2:])):
            f = factors[key].to(value.dtype).view(1, 1, -1, 1, 1)
            out[key] = (value.unsqueeze(2) * f).to(target.dtype)
    return out
