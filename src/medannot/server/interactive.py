"""The Smart tool on the server: warm promptable engines, decoded case images, prompts from recorded interactions.

A reviewer's clicks and boxes on a case form *sessions* (one object each): every interaction is recorded
(:class:`medannot.server.models.Interaction`) and the object's mask comes from the interactions of its session
that were not undone, by the project's engine (:func:`medannot.workflows.learning.engines.create_promptable`: a
classical engine by name, or a promptable bundle). Each interaction refines the mask of the ones before it: the
engine gets every prompt so far and that previous mask, as the simulated user of ``medannot evaluate
--interactive`` does (a promptable network is trained to correct its previous mask). The masks of recent
interactions stay in memory (bounded in bytes); a missing one (another server process, a restart) is recomputed
from the session's first interaction, so the same interactions always give the same mask, and undo answers the
mask the reviewer saw before. Engines and the last few decoded case images stay in memory too, so an interaction
costs the engine's time only; at most one segmentation per CPU core runs at once. Coordinates are world
millimetres (RAS), the ones the review page shows.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from medannot.data import Image
from medannot.data.prompts import BoxPrompt, PointPrompt, PromptableEngine, Prompts, PromptSpace
from medannot.errors import InputError
from medannot.server.files import BlobStore
from medannot.server.imaging import read_nifti_bytes

__all__ = ["InteractiveService", "prompts_from"]

MAX_IMAGES = 4
"""Decoded case images kept in memory (the most recently used)."""
MAX_MASK_BYTES = 256 * 2**20
"""Bytes of interaction masks kept in memory (the most recently used; one byte per voxel)."""


def prompts_from(rows: Sequence[Any], dims: int) -> Prompts:
    """The prompts of one session from its interactions (``kind``, ``positive``, ``coords`` in RAS mm), in order.

    A 2D case uses the first two coordinates (its world plane is the x-y plane of the stored one-slice volume).
    """
    points, boxes = [], []
    for r in rows:
        if r.kind == "point":
            points.append(PointPrompt(tuple(float(v) for v in r.coords[:dims]), bool(r.positive)))
        else:
            lo, hi = r.coords
            boxes.append(BoxPrompt(tuple(float(v) for v in lo[:dims]), tuple(float(v) for v in hi[:dims])))
    return Prompts(tuple(points), tuple(boxes), space=PromptSpace.RAS)


class InteractiveService:
    """Engines and images kept warm for the Smart tool (one per app).

    Args:
        blobs: The server's blob store.
        max_images: Decoded images kept.
    """

    def __init__(self, blobs: BlobStore, max_images: int = MAX_IMAGES, max_mask_bytes: int = MAX_MASK_BYTES) -> None:
        self.blobs = blobs
        self.max_images = max_images
        self.max_mask_bytes = max_mask_bytes
        self._engines: dict[str, PromptableEngine] = {}
        self._images: OrderedDict[str, Image] = OrderedDict()
        self._masks: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self.engine_calls = 0
        self._lock = threading.Lock()
        self._gate = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))

    def engine(self, name: str) -> PromptableEngine:
        """The engine called ``name`` (built once)."""
        from medannot.workflows.learning.engines import create_promptable

        with self._lock:
            found = self._engines.get(name)
        if found is None:
            found = create_promptable(name)
            with self._lock:
                found = self._engines.setdefault(name, found)
        return found

    def image(self, sha: str, dims: int) -> Image:
        """The case image (a 2D case as a 2D image), decoded once while it is among the recent ones."""
        with self._lock:
            if sha in self._images:
                self._images.move_to_end(sha)
                return self._images[sha]
        image = read_nifti_bytes(self.blobs.get(sha), what="case image")
        if dims == 2:
            image = image.as_plane()
        if image.channels != 1:
            image = image.with_array(np.asarray(image.array, np.float32).mean(axis=0, keepdims=True))
        with self._lock:
            self._images[sha] = image
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)
        return image

    def segment(self, engine: str, sha: str, dims: int, rows: Sequence[Any]) -> tuple[np.ndarray, float]:
        """The object's mask after a session's interactions (see the module docstring) and the engine's time (s).

        Args:
            engine: The project's engine name.
            sha: The case image's blob.
            dims: The case's spatial dimensions (2: a one-slice volume).
            rows: The session's interactions not undone, in order (``kind``, ``positive``, ``coords`` in RAS mm);
                at least one.

        Returns:
            Bool mask of the stored grid's shape (one slice for a 2D case) and the seconds of the engine calls
            this request made (the last interaction's, or the session replayed from its start).

        Raises:
            InputError: No interaction, or bad prompts (outside the image, a box of zero size). ConfigError: an
                unknown engine.
        """
        if not rows:
            raise InputError("a Smart tool session needs at least one click or box")
        eng = self.engine(engine)
        image = self.image(sha, dims)
        prompts_from(rows, dims).resolve(image)  # bad prompts fail here, before waiting for a slot
        keys = [_mask_key(engine, sha, dims, rows[:n]) for n in range(1, len(rows) + 1)]
        with self._gate:
            start, previous = 0, None
            with self._lock:
                for n in range(len(keys), 0, -1):  # the longest prefix already computed
                    if keys[n - 1] in self._masks:
                        start, previous = n, self._masks[keys[n - 1]]
                        self._masks.move_to_end(keys[n - 1])
                        break
            t0 = time.perf_counter()
            for n in range(start + 1, len(rows) + 1):
                previous = np.asarray(eng.segment(image, prompts_from(rows[:n], dims).with_previous(previous)), bool)
                self._remember(keys[n - 1], previous)
            seconds = time.perf_counter() - t0
        mask = previous if previous is not None else np.zeros(image.spatial_shape, bool)
        return (mask[..., None] if dims == 2 else mask), seconds

    def _remember(self, key: tuple[Any, ...], mask: np.ndarray) -> None:
        """Keep a freshly computed mask (and count the engine call), dropping the oldest beyond the byte budget."""
        with self._lock:
            self.engine_calls += 1
            self._masks[key] = mask
            total = sum(m.nbytes for m in self._masks.values())
            while total > self.max_mask_bytes and len(self._masks) > 1:
                _, dropped = self._masks.popitem(last=False)
                total -= dropped.nbytes


def _mask_key(engine: str, sha: str, dims: int, rows: Sequence[Any]) -> tuple[Any, ...]:
    """What a session's mask depends on: engine, image, and its interactions' contents in order."""
    return engine, sha, dims, json.dumps([[r.kind, bool(r.positive), r.coords] for r in rows])
