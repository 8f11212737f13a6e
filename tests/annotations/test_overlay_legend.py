"""Every overlay carries a legend: a strip below the picture with a swatch per label shown, in the label's colour."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from medannot import samples
from medannot.annotations import LabelMap
from medannot.annotations.overlay import add_legend, label_legend, write_overlays
from medannot.annotations.overlay_boxes import write_box_overlays
from medannot.annotations.schema import Box
from medannot.data import Geometry, Image

RED, BLUE, GREEN = (230, 40, 40), (40, 90, 255), (20, 200, 60)


def _real_2d() -> tuple[Image, np.ndarray]:
    arr = samples.nuclei_image().scalar()[:128, 300:428].astype(np.float32)
    labels = (arr > np.percentile(arr, 85)).astype(np.uint8)
    labels[:16, :16] = 2
    return Image.from_spatial(arr), labels


def _strip(path, picture_rows: int) -> np.ndarray:
    with PILImage.open(path) as opened:
        pic = np.asarray(opened.convert("RGB"))
    assert pic.shape[0] > picture_rows  # the legend lies below the picture, which keeps its size
    return pic[picture_rows:]


def _has(strip: np.ndarray, color) -> bool:
    return bool(np.all(strip == np.array(color, np.uint8), axis=-1).sum() >= 25)  # a filled swatch, not a stray pixel


def test_label_overlay_2d_names_each_label_present_in_its_colour(tmp_path):
    image, labels = _real_2d()
    label_map = LabelMap.parse({1: {"name": "nucleus", "color": list(RED)}, 2: {"name": "debris", "color": list(BLUE)},
                                3: {"name": "absent", "color": list(GREEN)}})
    (path,) = write_overlays(image, labels, label_map, tmp_path)
    strip = _strip(path, 512)  # 128 pixels shown at 4x
    assert _has(strip, RED) and _has(strip, BLUE) and not _has(strip, GREEN)  # only labels present are listed
    assert (strip > 200).all(axis=-1).mean() > 0.6  # a white strip with dark writing
    assert (strip < 60).all(axis=-1).sum() > 50


def test_label_overlay_3d_views_carry_the_legend_and_an_empty_case_says_nothing_labelled(tmp_path):
    volume = np.random.default_rng(0).normal(size=(30, 40, 20)).astype(np.float32)
    labels = np.zeros(volume.shape, np.uint8)
    labels[5:15, 10:30, 4:16] = 1
    image = Image.from_spatial(volume, Geometry(spacing=(1.0, 1.0, 2.0)))
    for path in write_overlays(image, labels, LabelMap.parse({1: {"name": "liver", "color": list(RED)}}), tmp_path):
        assert _has(_strip(path, 256), RED)
    assert label_legend(LabelMap(), []) == [("nothing labelled", None)]
    plain = np.zeros((20, 30, 3), np.uint8)
    assert add_legend(plain, []) is plain


def test_box_overlay_legend_names_the_box_colours(tmp_path):
    image, _ = _real_2d()
    boxes = [Box(1, 1, "nucleus", 0.9, [10.0, 10.0, 30.0, 40.0], [[10, 30], [10, 40]], [20, 25], "detector"),
             Box(2, 1, "nucleus", 0.1, [50.0, 50.0, 60.0, 70.0], [[50, 60], [50, 70]], [55, 60], "detector")]
    (path,) = write_box_overlays(image, boxes, LabelMap.parse({1: {"name": "nucleus", "color": list(GREEN)}}), tmp_path, threshold=0.5)
    strip = _strip(path, 512)
    assert _has(strip, GREEN)
    (no_note,) = write_box_overlays(image, boxes[:1], LabelMap.parse({1: {"name": "nucleus", "color": list(GREEN)}}), tmp_path / "b", threshold=0.5)
    def writing(strip: np.ndarray) -> int:
        return int((strip < 60).all(axis=-1).sum())

    assert writing(strip) > writing(_strip(no_note, 512)) + 100  # the box left out is mentioned
