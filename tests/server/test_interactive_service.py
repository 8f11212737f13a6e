"""The Smart tool's service (issue 11 item 5): each interaction refines the previous mask, as the simulated user of
``medannot evaluate --interactive`` does, recent masks are reused (undo answers what the reviewer saw before), and a
server that lost them (a restart, another process) recomputes the same mask from the session's start.

Real data: the right half of the stardist nuclei image as a one-slice NIfTI case, the bundled promptable-2d
network (trained to correct its previous mask) and GrowCut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from server_helpers import nifti_bytes

from medannot.data.prompts import Prompts, PromptSpace
from medannot.evaluation.interactive import first_click, next_click
from medannot.server.files import BlobStore
from medannot.server.interactive import InteractiveService, prompts_from
from medannot.training.promptable_sources import object_cases


@dataclass(frozen=True)
class Row:
    """An interaction as the store keeps it (RAS mm; identity affine here, so mm = voxel)."""

    kind: str
    positive: bool
    coords: list


class Spy:
    """A real engine that records the previous mask it was given on each call (to check the contract)."""

    def __init__(self, engine) -> None:
        self.engine, self.name, self.previous = engine, engine.name, []

    def segment(self, image, prompts: Prompts) -> np.ndarray:
        self.previous.append(None if prompts.previous is None else np.asarray(prompts.previous, bool).copy())
        return self.engine.segment(image, prompts)


@pytest.fixture(scope="module")
def nucleus(tmp_path_factory):
    """A held-out real nucleus, its case stored as a one-slice NIfTI, and three clicks of the simulated user."""
    case = next(c for c in object_cases("held-out", 2, ["nuclei-right"]) if c.mask.sum() > 150)
    blobs = BlobStore(tmp_path_factory.mktemp("blobs"))
    sha = blobs.put(nifti_bytes(np.asarray(case.image.array[0], np.float32)[..., None]))
    return case, blobs, sha


def _clicks(service: InteractiveService, engine: str, case, sha: str, n: int) -> tuple[list[Row], list[np.ndarray]]:
    """``n`` interactions of the simulated user through the service: the rows and the mask after each."""
    rows: list[Row] = []
    masks: list[np.ndarray] = []
    for _ in range(n):
        click = first_click(case.mask) if not masks else next_click(case.mask, masks[-1])
        assert click is not None
        rows.append(Row("point", click.positive, [float(click.index[0]), float(click.index[1]), 0.0]))
        mask, _ = service.segment(engine, sha, 2, rows)
        assert mask.shape == (*case.mask.shape, 1)
        masks.append(mask[..., 0])
    return rows, masks


@pytest.mark.parametrize("engine", ["promptable-2d", "growcut"])
def test_each_interaction_refines_the_previous_mask_like_the_evaluation(nucleus, engine):
    case, blobs, sha = nucleus
    service = InteractiveService(blobs)
    spy = Spy(service.engine(engine))
    service._engines[engine] = spy
    rows, masks = _clicks(service, engine, case, sha, 3)
    assert service.engine_calls == 3
    # the engine got no previous mask on the first interaction and the mask it answered before on each next one
    assert spy.previous[0] is None
    for given, answered in zip(spy.previous[1:], masks[:-1]):
        np.testing.assert_array_equal(given, answered)
    # the same chain as medannot.evaluation.interactive.simulate: prompts so far + the previous mask
    image = service.image(sha, 2)
    direct, pred = [], None
    for n in range(1, 4):
        prompts = prompts_from(rows[:n], 2)
        assert prompts.space is PromptSpace.RAS
        pred = np.asarray(spy.engine.segment(image, prompts.with_previous(pred)), bool)
        direct.append(pred)
    for a, b in zip(masks, direct):
        np.testing.assert_array_equal(a, b)


def test_undo_answers_the_mask_seen_before_and_a_restart_replays_the_session(nucleus):
    case, blobs, sha = nucleus
    service = InteractiveService(blobs)
    rows, masks = _clicks(service, "promptable-2d", case, sha, 3)
    calls = service.engine_calls
    undone, _ = service.segment("promptable-2d", sha, 2, rows[:2])  # undo of the third interaction
    np.testing.assert_array_equal(undone[..., 0], masks[1])
    assert service.engine_calls == calls  # reused, not recomputed
    restarted = InteractiveService(blobs)  # a new server process: no masks in memory
    again, _ = restarted.segment("promptable-2d", sha, 2, rows)
    np.testing.assert_array_equal(again[..., 0], masks[2])
    assert restarted.engine_calls == 3  # the session replayed from its first interaction
    # the masks kept are bounded in bytes: with room for one mask only the last one stays
    small = InteractiveService(blobs, max_mask_bytes=case.mask.size)
    _clicks(small, "promptable-2d", case, sha, 3)
    assert len(small._masks) == 1


def test_a_session_without_interactions_is_one_line(nucleus):
    _, blobs, sha = nucleus
    from medannot.errors import InputError

    with pytest.raises(InputError, match="at least one click or box"):
        InteractiveService(blobs).segment("growcut", sha, 2, [])
