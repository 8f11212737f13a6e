"""Non-maximum suppression: MONAI's box_utils NMS and the detector's box selection (the bundle's score
threshold and NMS IoU) against torchvision.ops."""

import numpy as np
import pytest
import torch
import torchvision
from monai.data.box_utils import non_max_suppression

from medannot.models import create_network
from medannot.models.detection import build_detector
from medannot.models.detection_spec import DetectionSpec


def _random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30 + 2
    return torch.cat([xy, xy + wh], dim=1), torch.rand(n, generator=g)


@pytest.mark.parametrize("iou", [0.1, 0.3, 0.5, 0.7])
def test_monai_nms_keeps_what_torchvision_keeps(iou):
    boxes, scores = _random_boxes(300, seed=int(iou * 10))
    ours = non_max_suppression(boxes, scores, nms_thresh=iou)
    ref = torchvision.ops.nms(boxes, scores, iou)
    assert torch.equal(torch.as_tensor(ours).sort().values, ref.sort().values)


def test_detector_selection_applies_the_bundle_threshold_and_per_class_nms_like_torchvision():
    spec = DetectionSpec(score_threshold=0.3, nms_iou=0.4, anchors={"feature_map_scales": [1], "base_anchor_shapes": [[8, 8]]})
    net = create_network("retinanet", 2, 1, 2, num_anchors=1)
    det = build_detector(net, spec, 2)
    boxes, _ = _random_boxes(200, seed=3)
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(200, 2, generator=g) * 2
    sel_boxes, sel_scores, sel_labels = det.box_selector.select_boxes_per_image([boxes], [logits], [200, 200])
    probs = torch.sigmoid(logits)
    flat = probs.flatten()
    keep = flat > 0.3
    idx = torch.nonzero(keep).squeeze(1)
    cand_boxes, cand_scores, cand_labels = boxes[idx // 2], flat[idx], idx % 2
    ref = torchvision.ops.batched_nms(cand_boxes, cand_scores, cand_labels, 0.4)
    got = sorted(zip(np.round(sel_scores.numpy(), 6).tolist(), sel_labels.tolist()))
    want = sorted(zip(np.round(cand_scores[ref].numpy(), 6).tolist(), cand_labels[ref].tolist()))
    assert got == want and len(got) > 5
    assert torch.all(sel_scores > 0.3)
