"""RetinaNet detection networks and detectors, all from MONAI's detection stack (2D and 3D).

The network (registered as ``"retinanet"``) is MONAI's :class:`~monai.apps.detection.networks.retinanet_network.RetinaNet`
on a ResNet + feature-pyramid feature extractor; its ``out_channels`` is the number of object
classes (label values 1..K map to the detector's classes 0..K-1). The detector
(:func:`build_detector`) is MONAI's :class:`~monai.apps.detection.networks.retinanet_detector.RetinaNetDetector`
with ``AnchorGeneratorWithAnchorShape``, the ATSS matcher, the hard-negative sampler, MONAI's box
coder and its box selector (score threshold, top-k, per-class NMS from :mod:`monai.data.box_utils`).

The network is registered in the one network registry (:mod:`medannot.models.registry`) with task
``detection`` and ``outputs_background=False``: its outputs are the object classes, not the label map.

Feature pyramid width: MONAI's ``resnet_fpn_feature_extractor`` fixes the pyramid at 256 channels,
which with RetinaNet's four-convolution heads makes a ~6 M parameter network (too big for a small
bundle and slow on a CPU). ``fpn_channels=256`` uses that function as is; any other width builds
the same extractor (MONAI ``BackboneWithFPN`` + ``LastLevelMaxPool`` on the same ResNet layers)
with fewer channels.
"""

from __future__ import annotations

from typing import Any

import torch

from medannot.data.task import Task
from medannot.models.detection_spec import DetectionSpec
from medannot.models.registry import register_network

__all__ = ["build_detector", "build_retinanet", "retinanet_size_divisor"]


def retinanet_size_divisor(params: dict[str, Any]) -> int:
    """Input sizes must be multiples of this (voxels): conv1 stride x max-pool x 2 per returned layer x extra level."""
    stride = params.get("conv1_t_stride", 2)
    stride = max(stride) if isinstance(stride, (list, tuple)) else int(stride)
    pool = 1 if params.get("no_max_pool", False) else 2
    return int(stride * pool * 2 ** (max(params.get("returned_layers", (1, 2))) - 1) * 2)


_DEFAULTS: dict[str, Any] = {
    "block": "basic",
    "layers": [1, 1, 1, 1],
    "block_inplanes": [16, 32, 64, 128],
    "conv1_t_size": 7,
    "conv1_t_stride": 2,
    "no_max_pool": False,
    "returned_layers": [1, 2],
    "fpn_channels": 64,
    "num_anchors": 3,
}


@register_network("retinanet", task=Task.DETECTION, defaults=_DEFAULTS, divisor=retinanet_size_divisor, outputs_background=False,
                  closed_params=True, description="MONAI RetinaNet on a small MONAI ResNet + feature pyramid",
                  example_params={"block_inplanes": [4, 8, 16, 32], "fpn_channels": 8, "num_anchors": 1})
def build_retinanet(spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> torch.nn.Module:
    """MONAI RetinaNet with a small MONAI ResNet backbone.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels.
        out_channels: Number of object classes (K, without background).
        **params: ``block`` ("basic"/"bottleneck"), ``layers`` (4 ints), ``block_inplanes`` (4 ints, doubling),
            ``conv1_t_size``, ``conv1_t_stride``, ``no_max_pool``, ``returned_layers`` (subset of 1..4),
            ``fpn_channels``, ``num_anchors`` (anchors per location; must equal the anchor shapes of the bundle).
    """
    from monai.apps.detection.networks.retinanet_network import RetinaNet, resnet_fpn_feature_extractor
    from monai.networks.blocks.backbone_fpn_utils import BackboneWithFPN
    from monai.networks.blocks.feature_pyramid_network import LastLevelMaxPool
    from monai.networks.nets import resnet

    p = dict(_DEFAULTS, **params)
    inplanes = [int(v) for v in p["block_inplanes"]]
    if any(b != 2 * a for a, b in zip(inplanes, inplanes[1:])):
        raise ValueError(f"block_inplanes must double from layer to layer (MONAI's FPN assumes it), got {inplanes}")
    backbone = resnet.ResNet(
        block=p["block"],
        layers=[int(v) for v in p["layers"]],
        block_inplanes=inplanes,
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=p["conv1_t_size"],
        conv1_t_stride=p["conv1_t_stride"],
        no_max_pool=bool(p["no_max_pool"]),
    )
    returned = [int(v) for v in p["returned_layers"]]
    if int(p["fpn_channels"]) == 256:
        extractor = resnet_fpn_feature_extractor(backbone, spatial_dims, pretrained_backbone=False, returned_layers=returned)
    else:
        if min(returned) < 1 or max(returned) > 4:
            raise ValueError(f"returned_layers must lie in 1..4, got {returned}")
        stage = backbone.in_planes // 8
        extractor = BackboneWithFPN(
            backbone,
            {f"layer{k}": str(v) for v, k in enumerate(returned)},
            [stage * 2 ** (i - 1) for i in returned],
            int(p["fpn_channels"]),
            spatial_dims=spatial_dims,
            extra_blocks=LastLevelMaxPool(spatial_dims),
        )
    return RetinaNet(
        spatial_dims=spatial_dims,
        num_classes=int(out_channels),
        num_anchors=int(p["num_anchors"]),
        feature_extractor=extractor,
        size_divisible=retinanet_size_divisor(p),
    )


def build_detector(network: torch.nn.Module, spec: DetectionSpec, spatial_dims: int, patch_size: list[int] | None = None,
                   overlap: float = 0.25, sw_batch_size: int = 1) -> Any:
    """Wrap a RetinaNet in MONAI's ``RetinaNetDetector`` configured from a bundle's detection spec.

    Args:
        network: A network built by :func:`build_retinanet` (or any MONAI-compatible RetinaNet).
        spec: Anchors, thresholds, NMS IoU, matcher and sampler settings.
        spatial_dims: 2 or 3.
        patch_size: Sliding-window size in voxels (None: no sliding-window inferer).
        overlap: Sliding-window overlap (fraction).
        sw_batch_size: Windows per forward pass.

    Returns:
        The detector; ``detector(images)`` gives losses in train mode and boxes in eval mode
        (boxes in MONAI's ``StandardMode``: corners, max exclusive, array axis order).
    """
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    spec.check_dims(spatial_dims)
    anchors = AnchorGeneratorWithAnchorShape(
        feature_map_scales=list(spec.anchors.feature_map_scales),
        base_anchor_shapes=[tuple(int(v) for v in s) for s in spec.anchors.base_anchor_shapes],
    )
    detector = RetinaNetDetector(network=network, anchor_generator=anchors, debug=False)
    detector.set_atss_matcher(num_candidates=spec.atss_candidates, center_in_gt=spec.center_in_gt)
    detector.set_hard_negative_sampler(**spec.hard_negative)
    detector.set_target_keys(box_key="boxes", label_key="labels")
    if spec.box_coder_weights is not None:
        detector.set_box_coder_weights(tuple(float(w) for w in spec.box_coder_weights))  # type: ignore[arg-type]  # MONAI hints a 1-tuple
    detector.set_box_selector_parameters(
        score_thresh=spec.score_threshold,
        topk_candidates_per_level=spec.topk_candidates_per_level,
        nms_thresh=spec.nms_iou,
        detections_per_img=spec.detections_per_image,
    )
    if patch_size is not None:
        detector.set_sliding_window_inferer(roi_size=list(patch_size), sw_batch_size=sw_batch_size, overlap=overlap, mode="constant")
    return detector
