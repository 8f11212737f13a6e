"""The 3D detection path on SYNTHETIC lesion phantoms: the generator's boxes, a tiny RetinaNet trained for a
few iterations through `medannot train` (task: detection), resumed, loaded as a bundle, and boxes returned
on an oblique anisotropic grid in the world coordinates nibabel gives. No accuracy is claimed."""

import json

import numpy as np
import pytest
from nibabel.affines import apply_affine
from scipy.spatial.transform import Rotation

from medannot.data import Geometry
from medannot.data.boxes import boxes_from_instances
from medannot.inference.detector import Detector
from medannot.models import Bundle
from medannot.tasks import train
from medannot.training.synth_lesions import synthetic_lesion_phantom


def _config(tmp_path, **over):
    cfg = {
        "name": "synthetic-lesions-3d",
        "task": "detection",
        "spatial_dims": 3,
        "labels": {"0": {"name": "background"}, "1": {"name": "synthetic lesion"}},
        "network": {"name": "retinanet", "params": {"block_inplanes": [4, 8, 16, 32], "fpn_channels": 8, "returned_layers": [1]}},
        "epochs": 2,
        "iterations_per_epoch": 2,
        "batch_size": 2,
        "patch_size": [32, 32, 32],
        "num_threads": 1,
        "data": {"source": "synthetic-lesions", "params": {"shape": [40, 40, 40], "pool": 2, "n_lesions": 2}},
        "inference": {"patch_size": [32, 32, 32]},
        "detection": {"anchors": {"feature_map_scales": [1, 2], "base_anchor_shapes": [[6, 6, 6], [10, 10, 10]]},
                      "hard_negative": {"batch_size_per_image": 32, "positive_fraction": 0.3, "min_neg": 4, "pool_size": 10},
                      "score_threshold": 0.0, "detections_per_image": 20},
        "out": str(tmp_path / "bundle"),
        "log_dir": str(tmp_path / "logs"),
    }
    cfg.update(over)
    return cfg


def test_phantom_boxes_are_the_boxes_of_its_lesions():
    geo = Geometry(spacing=(0.8, 0.8, 2.0))
    case = synthetic_lesion_phantom((48, 48, 24), geo, n_lesions=3, seed=2)
    assert case.image.meta["synthetic"] is True and "SYNTHETIC" in case.image.meta["description"]
    ids, boxes = boxes_from_instances(case.instances.array[0])
    assert len(ids) == len(case.radii_mm) >= 2
    np.testing.assert_array_equal(boxes, case.boxes)
    # Radii are in mm, so the voxel extent of a lesion depends on the spacing of each axis.
    extent_mm = (case.boxes[:, 3:] - case.boxes[:, :3]) * np.array(geo.spacing)
    np.testing.assert_allclose(extent_mm, 2 * case.radii_mm, atol=2 * max(geo.spacing) + 1e-9)
    assert case.image.array[0][case.instances.array[0] > 0].mean() > case.image.array[0][case.instances.array[0] == 0].mean() + 0.3


@pytest.mark.slow
def test_tiny_3d_retinanet_trains_resumes_and_returns_world_boxes(tmp_path):
    folder = train(_config(tmp_path), progress=False)
    bundle = Bundle.load(folder)
    assert bundle.task == "detection" and bundle.spatial_dims == 3
    metrics = bundle.spec.metrics
    assert {"ap", "ap50", "froc", "n_truth"} <= set(metrics) and metrics["n_truth"] >= 1
    assert (tmp_path / "logs" / "checkpoint.pt").is_file()
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    # Resume: one more epoch continues from the checkpoint (epochs_run counts all epochs).
    again = train(_config(tmp_path, epochs=3, resume=True), progress=False)
    assert json.loads((again / "bundle.json").read_text())["training"]["run"]["epochs_run"] == 3

    rot = Rotation.from_euler("zyx", [25, 10, -15], degrees=True).as_matrix()
    geo = Geometry(spacing=(1.2, 0.9, 2.0), origin=(-30.0, 15.0, 7.5), direction=rot)
    case = synthetic_lesion_phantom((40, 40, 24), geo, n_lesions=2, seed=7)
    found = Detector.from_bundle(folder).detect(case.image)
    assert len(found) >= 1 and found.geometry is geo and found.shape == (40, 40, 24)
    assert np.all(found.boxes[:, :3] >= 0) and np.all(found.boxes[:, 3:] <= np.array([40, 40, 24]))
    assert np.all(np.diff(found.scores) <= 0)
    # Detector-independent check of the world boxes: the extent of the corner edges mapped by nibabel.
    mm = found.boxes_mm
    for k in range(min(5, len(found))):
        b = found.boxes[k]
        corners = np.array(np.meshgrid(*[[b[a] - 0.5, b[a + 3] - 0.5] for a in range(3)], indexing="ij")).reshape(3, -1).T
        world = apply_affine(geo.affine, corners)
        np.testing.assert_allclose(mm[k, :, 0], world.min(axis=0), atol=1e-6)
        np.testing.assert_allclose(mm[k, :, 1], world.max(axis=0), atol=1e-6)
