"""Where a classifier looked: Grad-CAM and occlusion sensitivity maps (MONAI ``monai.visualize``).

Both work on the *prepared* network input ``(C, *input_size)`` (see :mod:`medannot.inference.classifier_input`)
and return a float32 map of the input size with values in [0, 1] (1 = most important for the class):

- :func:`gradcam_map`: MONAI ``GradCAM`` on the network's last feature map (Selvaraju et al. 2017), upsampled
  to the input and min-max scaled by MONAI; a constant map (no gradient) becomes all zeros.
- :func:`occlusion_map`: MONAI ``OcclusionSensitivity`` (Gaussian occlusion); importance = the drop of the
  class's log-odds when the neighbourhood of a voxel is occluded (:func:`occlusion_drop`), clipped at 0 and
  divided by its maximum (all zeros when no occlusion lowers the class).

:func:`map_on_image` puts a map back onto the original image's grid (undoing the pad-to-square and resize).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["gradcam_map", "log_odds", "occlusion_drop", "occlusion_map", "map_on_image", "quadrant_mass"]


def gradcam_map(network: torch.nn.Module, layer: str, x: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of ``class_index`` for one prepared input ``x`` ``(C, *spatial)``.

    Args:
        network: The classifier (put in eval mode; gradients are computed but no weight changes).
        layer: Dotted name of the feature layer (:func:`medannot.models.classification.gradcam_layer`).
        x: Prepared input, float32.
        class_index: The class to explain.

    Returns:
        ``(*spatial)`` float32 map in [0, 1]: 1 where the evidence for the class is strongest, 0 where there is none
        (all zeros when no feature supports the class).
    """
    from monai.visualize import GradCAM

    network.eval()
    # MONAI's default post-processing maps (min, max) to (1, 0): it flips the map. Keep the raw ReLU(sum_c w_c A_c)
    # (upsampled to the input) and scale it here so that 1 is the strongest evidence and 0 none.
    cam = GradCAM(nn_module=network, target_layers=layer, postprocessing=lambda m: m)
    with torch.enable_grad():
        out = cam(torch.as_tensor(np.asarray(x, np.float32))[None], class_idx=int(class_index))
    m = np.nan_to_num(out[0, 0].detach().float().numpy(), nan=0.0)
    top = float(m.max())
    return (np.clip(m, 0.0, None) / top if top > 0 else np.zeros_like(m)).astype(np.float32)


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """Per-class log-odds ``z_k - logsumexp_{j != k} z_j`` of logits ``(N, K)`` (= ``ln(p_k / (1 - p_k))``; never saturates)."""
    z = logits.float()
    k = z.shape[1]
    others = z[:, None, :].expand(-1, k, -1).masked_fill(torch.eye(k, dtype=torch.bool, device=z.device)[None], float("-inf"))
    return z - torch.logsumexp(others, dim=2)


def occlusion_drop(network: torch.nn.Module, x: np.ndarray, class_index: int, mask_size: int = 12, n_batch: int = 64,
                   overlap: float = 0.5) -> np.ndarray:
    """Drop of the class's log-odds when the neighbourhood of each voxel is occluded (MONAI ``OcclusionSensitivity``).

    Occlusion is MONAI's Gaussian mode (the window is multiplied by ``1 - gaussian``); overlapping windows are
    averaged with Gaussian weights. Log-odds rather than probabilities, because a confident network's softmax
    barely moves (0.9994 -> 0.9990) and normalising such drops would draw noise as if it were evidence.

    Args:
        network: The classifier.
        x: Prepared input ``(C, *spatial)``, float32.
        class_index: The class to explain.
        mask_size: Side of the occluding window (voxels).
        n_batch: Occluded copies per forward pass.
        overlap: Overlap of neighbouring windows (0 <= overlap < 1).

    Returns:
        ``(*spatial)`` float32 drop in log-odds (nats; negative where occlusion raised the class).
    """
    from monai.visualize import OcclusionSensitivity

    network.eval()
    xt = torch.as_tensor(np.asarray(x, np.float32))[None]
    occ = OcclusionSensitivity(nn_module=network, mask_size=mask_size, n_batch=n_batch, verbose=False, overlap=overlap,
                               activate=log_odds)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's list indexing, deprecated in torch
        base = log_odds(network(xt))[0, int(class_index)].item()
        occ_map, _ = occ(xt)  # (1, K, *spatial): log-odds with each neighbourhood occluded
    return (base - occ_map[0, int(class_index)].float().numpy()).astype(np.float32)


def occlusion_map(network: torch.nn.Module, x: np.ndarray, class_index: int, mask_size: int = 12, n_batch: int = 64) -> np.ndarray:
    """Occlusion sensitivity of ``class_index`` for one prepared input ``x`` ``(C, *spatial)``, scaled to [0, 1].

    The :func:`occlusion_drop` clipped at 0 and divided by its maximum (all zeros when no occlusion lowers the
    class). The scale is lost: keep :func:`occlusion_drop`'s maximum to tell a decisive region from noise.

    Returns:
        ``(*spatial)`` float32 map in [0, 1].
    """
    drop = np.clip(occlusion_drop(network, x, class_index, mask_size, n_batch), 0.0, None)
    top = float(drop.max())
    return (drop / top if top > 0 else np.zeros_like(drop)).astype(np.float32)


def map_on_image(saliency: np.ndarray, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Undo the classifier's pad-to-square and resize: a map of the input size -> the original image's grid.

    Args:
        saliency: ``(*input_size)`` map.
        spatial_shape: The original image's spatial shape (for a 2D model given a volume: the slice's shape).

    Returns:
        ``spatial_shape`` float32 map (bilinear/trilinear resampling, then the padding cropped off).
    """
    import torch.nn.functional as F

    side = max(spatial_shape)
    t = torch.as_tensor(np.asarray(saliency, np.float32))[None, None]
    mode = "bilinear" if t.ndim == 4 else "trilinear"
    big = F.interpolate(t, size=[side] * len(spatial_shape), mode=mode, align_corners=False)[0, 0].numpy()
    starts = [(side - s) // 2 for s in spatial_shape]
    return np.ascontiguousarray(big[tuple(slice(a, a + s) for a, s in zip(starts, spatial_shape))], dtype=np.float32)


def quadrant_mass(saliency: np.ndarray) -> np.ndarray:
    """Fraction of a 2D map's total mass in each quadrant ``[top-left, top-right, bottom-left, bottom-right]``."""
    m = np.clip(np.asarray(saliency, np.float64), 0, None)
    h, w = m.shape[0] // 2, m.shape[1] // 2
    q = np.array([m[:h, :w].sum(), m[:h, w:].sum(), m[h:, :w].sum(), m[h:, w:].sum()])
    return q / q.sum() if q.sum() > 0 else q
