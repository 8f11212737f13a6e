"""The simulated user (clicker), NoC and failure rate on cases whose answer is known, CSV and plot writers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import ndimage as ndi

from medannot.data import Image
from medannot.data.prompts import Prompts
from medannot.errors import InputError
from medannot.evaluation.interactive import (
    Click,
    InteractiveAccumulator,
    box_from_mask,
    first_click,
    next_click,
    noc,
    plot_clicks_vs_dice,
    simulate,
    write_interactive_csv,
)


def _two_squares() -> tuple[Image, np.ndarray]:
    truth = np.zeros((60, 110), bool)
    truth[20:41, 20:41] = True  # A: 21 x 21, centre (30, 30)
    truth[25:36, 75:86] = True  # B: 11 x 11, centre (30, 80)
    return Image.from_spatial(truth.astype(np.float32)), truth


class ComponentOracle:
    """Returns the true connected components under the positive clicks, minus those under negative clicks."""

    name = "oracle"

    def __init__(self, truth: np.ndarray, extra: np.ndarray | None = None) -> None:
        self.lab, _ = ndi.label(truth)
        self.extra = extra

    def segment(self, image: Image, prompts: Prompts) -> np.ndarray:
        vp = prompts.resolve(image)
        keep = {int(self.lab[tuple(p)]) for p in vp.seeds(True)} - {0}
        out = np.isin(self.lab, sorted(keep))
        if self.extra is not None and not any(self.extra[tuple(p)] for p in vp.seeds(False)):
            out |= self.extra
        return out


class Nothing:
    name = "nothing"

    def segment(self, image: Image, prompts: Prompts) -> np.ndarray:
        prompts.resolve(image)
        return np.zeros(image.spatial_shape, bool)


def test_clicks_go_to_the_centre_of_the_object_then_of_the_largest_error():
    img, truth = _two_squares()
    res = simulate(ComponentOracle(truth), img, truth, max_clicks=4)
    assert res.clicks[:2] == [Click((30, 30), True), Click((30, 80), True)]
    assert res.dices[0] == pytest.approx(2 * 441 / (441 + 441 + 121))
    assert res.dices[1:] == [1.0, 1.0, 1.0]
    assert res.noc(0.80) == (1, False) and res.noc(0.85) == (1, False) and res.noc(0.90) == (2, False)


def test_a_false_alarm_gets_a_negative_click_at_its_centre():
    img, truth = _two_squares()
    extra = np.zeros(truth.shape, bool)
    extra[45:56, 55:70] = True  # 11 x 15 false alarm, centre (50, 62)
    res = simulate(ComponentOracle(truth, extra), img, truth, max_clicks=3)
    # the false alarm (165 px) is larger than the missed square B (121 px): the second click is negative, at the
    # first voxel (array order) of the false alarm's centre line (all of (50, 60..64) are 6 px from its edge)
    assert res.clicks == [Click((30, 30), True), Click((50, 60), False), Click((30, 80), True)]
    assert res.dices == pytest.approx([882 / 1168, 882 / 1003, 1.0])


def test_never_reaching_a_threshold_counts_max_clicks_and_fails():
    img, truth = _two_squares()
    res = simulate(Nothing(), img, truth, max_clicks=20)
    assert res.dices == [0.0] * 20
    assert all(res.noc(t) == (20, True) for t in (0.8, 0.85, 0.9))
    assert noc([0.5, 0.79, 0.81], 0.8, max_clicks=20) == (3, False)
    assert noc([0.5, 0.79, 0.81], 0.9, max_clicks=20) == (20, True)


def test_clicker_is_deterministic_and_uses_spacing():
    truth = np.zeros((40, 40), bool)
    truth[10:30, 5:35] = True
    assert first_click(truth) == first_click(truth.copy())
    # with 4 mm rows the farthest point is still the centre row but ties are broken the same way each time
    a = first_click(truth, spacing=(4.0, 1.0))
    assert a == first_click(truth, spacing=(4.0, 1.0)) and truth[a.index]
    pred = truth.copy()
    pred[10:30, 5:10] = False
    assert next_click(truth, pred) == Click((12, 7), True)  # the missed 20 x 5 strip: 3 px from its edges, first in array order
    assert next_click(truth, truth) is None
    with pytest.raises(InputError, match="empty"):
        first_click(np.zeros((4, 4), bool))


def test_box_from_mask_and_its_jitter():
    truth = np.zeros((50, 50), bool)
    truth[10:21, 30:41] = True
    b = box_from_mask(truth)
    assert b.minimum == (10.0, 30.0) and b.maximum == (20.0, 40.0)
    j1, j2 = box_from_mask(truth, 0.1, 3), box_from_mask(truth, 0.1, 3)
    assert j1 == j2 and all(abs(x - y) <= 1.1 for x, y in zip(j1.minimum + j1.maximum, b.minimum + b.maximum))


def test_box_first_interaction():
    img, truth = _two_squares()
    res = simulate(ComponentOracle(truth), img, truth, max_clicks=2, first="box")
    assert res.clicks[0] == Click((), True) and len(res.dices) == 2


def test_accumulator_csv_and_plot(tmp_path):
    img, truth = _two_squares()
    acc = InteractiveAccumulator()
    acc.update(simulate(ComponentOracle(truth), img, truth, max_clicks=5, case="a"))
    acc.update(simulate(Nothing(), img, truth, max_clicks=5, case="a"))
    s = acc.compute()
    assert s["oracle"].mean_noc[0.9] == 2 and s["oracle"].failure_rate[0.9] == 0.0
    assert s["nothing"].mean_noc[0.9] == 5 and s["nothing"].failure_rate[0.9] == 1.0
    assert s["oracle"].mean_dice[1:] == [1.0] * 4
    path = write_interactive_csv(acc.results, tmp_path / "i.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["engine"] for r in rows] == ["oracle", "nothing"] and rows[0]["noc90"] == "2" and rows[1]["failed90"] == "1"
    png = plot_clicks_vs_dice(s, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc.reset()
    assert acc.compute() == {}


def test_empty_truth_is_refused():
    img, truth = _two_squares()
    with pytest.raises(InputError, match="empty"):
        simulate(Nothing(), img, np.zeros_like(truth))
