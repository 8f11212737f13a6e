"""The Smart tool on the server: warm promptable engines, decoded case images, prompts from recorded interactions.

A reviewer's clicks and boxes on a case form *sessions* (one object each): every interaction is recorded
(:class:`medannot.server.models.Interaction`) and the object's mask is recomputed from all interactions of its
session that were not undone, by the project's engine (:func:`medannot.workflows.learning.engines.create_promptable`:
a classical engine by name, or a promptable bundle). Engines and the last few decoded case images stay in memory
in the server process, so an interaction costs the engine's time only; at most one segmentation per CPU core runs
at once. Coordinates are world millimetres (RAS), the ones the review page shows.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from medannot.data import Image
from medannot.data.prompts import BoxPrompt, PointPrompt, PromptableEngine, Prompts, PromptSpace
from medannot.server.files import BlobStore
from medannot.server.imaging import read_nifti_bytes

__all__ = ["InteractiveService", "prompts_from"]

MAX_IMAGES = 4
"""Decoded case images kept in memory (the most recently used)."""


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

    def __init__(self, blobs: BlobStore, max_images: int = MAX_IMAGES) -> None:
        self.blobs = blobs
        self.max_images = max_images
        self._engines: dict[str, PromptableEngine] = {}
        self._images: OrderedDict[str, Image] = OrderedDict()
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

    def segment(self, engine: str, sha: str, dims: int, prompts: Prompts) -> tuple[np.ndarray, float]:
        """The object's mask (bool, the stored grid's shape: one slice for a 2D case) and the engine's time (s).

        Raises:
            InputError: Bad prompts (outside the image, a box of zero size). ConfigError: an unknown engine.
        """
        eng = self.engine(engine)
        image = self.image(sha, dims)
        prompts.resolve(image)  # bad prompts fail here, before waiting for a slot
        with self._gate:
            t0 = time.perf_counter()
            mask = np.asarray(eng.segment(image, prompts), bool)
            seconds = time.perf_counter() - t0
        return (mask[..., None] if dims == 2 else mask), seconds
