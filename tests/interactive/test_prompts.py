"""Prompt parsing in both spaces, conversion to voxels, and each bad-prompt error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medannot.data import Geometry, Image, ImageKind
from medannot.data.prompts import BoxPrompt, PointPrompt, PromptableEngine, Prompts, PromptSpace, Scribble
from medannot.errors import GeometryError, InputError


def _volume() -> Image:
    # oblique-free but flipped and anisotropic: index (i, j, k) -> world (-2 i + 10, 1.5 j - 5, 3 k + 1)
    geom = Geometry(spacing=(2.0, 1.5, 3.0), origin=(10.0, -5.0, 1.0), direction=np.diag([-1.0, 1.0, 1.0]))
    return Image(np.zeros((1, 20, 30, 10), np.float32), geom)


def test_ras_points_boxes_scribbles_resolve_to_the_voxels_the_geometry_says():
    img = _volume()
    g = img.geometry
    data = {
        "space": "ras",
        "label": "lesion",
        "points": [{"xyz": g.index_to_world([3, 4, 5]).tolist(), "positive": True},
                   {"xyz": g.index_to_world([7, 8, 2]).tolist(), "positive": False}],
        "boxes": [{"min": g.index_to_world([2, 3, 4]).tolist(), "max": g.index_to_world([6, 9, 4]).tolist()}],
        "scribbles": [{"points": [g.index_to_world([1, 1, 1]).tolist(), g.index_to_world([1, 5, 1]).tolist()]}],
    }
    p = Prompts.from_dict(json.loads(json.dumps(data)), img.geometry)
    assert p.space is PromptSpace.RAS and p.label == "lesion"
    vp = p.resolve(img)
    assert vp.points.tolist() == [[3, 4, 5], [7, 8, 2]]
    assert vp.point_positive.tolist() == [True, False]
    assert vp.boxes.tolist() == [[[2, 3, 4], [6, 9, 4]]]  # flat along k: a 2D box on slice 4
    assert sorted(map(tuple, vp.scribble_voxels.tolist())) == [(1, j, 1) for j in range(1, 6)]
    assert vp.seeds(True).tolist()[0] == [3, 4, 5] and len(vp.seeds(True)) == 6
    assert vp.seeds(False).tolist() == [[7, 8, 2]]


def test_voxel_space_round_trips_through_json():
    img = _volume()
    p = Prompts(points=(PointPrompt((3, 4, 5)), PointPrompt((1, 2, 3), False)), boxes=(BoxPrompt((1, 1, 1), (4, 5, 6)),),
                scribbles=(Scribble(((0, 0, 0), (2, 2, 2)), False),), space="voxel", label="node")
    d = p.to_dict()
    assert d["points"][0] == {"ijk": [3.0, 4.0, 5.0], "positive": True}
    q = Prompts.from_dict(json.loads(json.dumps(d)), img.geometry)
    assert q.to_dict() == d
    vp = q.resolve(img)
    assert vp.points.tolist() == [[3, 4, 5], [1, 2, 3]]
    assert vp.scribble_voxels.tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    lo, hi = vp.extent()
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [4, 5, 6]


def test_2d_image_prompts():
    img = Image.from_spatial(np.zeros((40, 50), np.float32), spacing=(0.5, 0.5))
    p = Prompts.from_dict({"space": "ras", "points": [{"xyz": [5.0, 10.0]}]}, img.geometry)
    assert p.resolve(img).points.tolist() == [[10, 20]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"space": "voxel", "points": [{"ijk": [25, 4, 5]}]}, "outside the image"),
        ({"space": "ras", "points": [{"xyz": [1000.0, 0.0, 0.0]}]}, "outside the image"),
        ({"space": "voxel", "boxes": [{"min": [2, 3, 4], "max": [2, 3, 9]}]}, "zero size"),
        ({"space": "voxel", "boxes": [{"min": [50, 50, 50], "max": [60, 60, 60]}]}, "outside the image"),
        ({"space": "voxel"}, "empty prompt set"),
        ({"space": "voxel", "points": [{"ijk": [1, 2]}]}, "give 3 coordinates"),
        ({"space": "voxel", "scribbles": [{"points": [[1, 1, 1], [1, 1, 40]]}]}, "outside the image"),
    ],
)
def test_bad_prompts_give_one_line_input_errors(data, message):
    img = _volume()
    with pytest.raises(InputError, match=message) as info:
        Prompts.from_dict(data).resolve(img)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"space": "lps", "points": []}, "unknown prompt space"),
        ({"space": "ras", "points": [{"ijk": [1, 2, 3]}]}, "has no 'xyz'"),
        ({"points": [{"xyz": [1, 2, "a"]}]}, "expected a list of numbers"),
        ({"points": [{"xyz": [1, 2, 3], "positive": "yes"}]}, "true or false"),
        ({"boxes": [{"min": [1, 2, 3]}]}, "needs 'min' and 'max'"),
        ({"clicks": []}, "unknown keys"),
        ({"version": 2}, "not supported"),
    ],
)
def test_malformed_prompt_json_is_refused(data, message):
    with pytest.raises(InputError, match=message):
        Prompts.from_dict(data, _volume().geometry)


def test_zero_size_box_on_a_2d_image():
    img = Image.from_spatial(np.zeros((40, 50), np.float32))
    with pytest.raises(InputError, match="zero size"):
        Prompts(boxes=(BoxPrompt((3, 4), (3, 20)),)).resolve(img)
    assert Prompts(boxes=(BoxPrompt((3, 4), (9, 20)),)).resolve(img).boxes.tolist() == [[[3, 4], [9, 20]]]


def test_previous_mask_on_another_grid_is_a_geometry_error():
    img = _volume()
    other = Image(np.zeros((1, 20, 30, 10), np.uint8), Geometry(spacing=(1.0, 1.0, 1.0)), ImageKind.LABEL)
    p = Prompts(points=(PointPrompt((3, 4, 5)),), previous=other)
    with pytest.raises(GeometryError, match="another grid"):
        p.resolve(img)
    with pytest.raises(GeometryError, match="shape"):
        p.with_previous(np.zeros((5, 5, 5), bool)).resolve(img)
    same = Image(np.zeros((1, 20, 30, 10), np.uint8), img.geometry, ImageKind.LABEL)
    same.array[0, 3, 4, 5] = 1
    vp = p.with_previous(same).resolve(img)
    assert vp.previous is not None and vp.previous.sum() == 1 and vp.previous.dtype == bool


def test_previous_mask_alone_is_an_empty_prompt_set():
    img = _volume()
    with pytest.raises(InputError, match="empty prompt set"):
        Prompts(previous=np.ones(img.spatial_shape, bool)).resolve(img)


def test_classical_engines_satisfy_the_engine_protocol():
    from medannot.classical.interactive import create_engine, list_engines

    for name in list_engines():
        assert isinstance(create_engine(name), PromptableEngine)
