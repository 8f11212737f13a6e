"""EXPERIMENT (not shipped): a class-agnostic promptable network prototype, trained on CPU.

Written so it ports into the one training loop: ``build_network`` + ``loss_fn`` + ``make_batch`` +
``validate``; ``NetworkEngine`` is the inference side behind the PromptableEngine interface (crop around the
prompts at a field of view that doubles while the mask reaches the crop's border).

    nice -n 10 .venv/bin/python scripts/promptable_net.py --ndim 2 --minutes 30 --out /tmp/promptable2d

Writes ``OUT/weights.pt`` and ``OUT/log.json`` (loss and validation per round). Validation uses TRAIN-split
objects only (synthetic objects with another seed and real training objects); held-out objects are scored
by ``scripts/promptable_eval.py`` once, at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.data.image import Image
from medannot.data.prompts import Prompts
from medannot.evaluation.interactive import Click, InteractiveAccumulator, first_click, simulate
from medannot.training.promptable_data import CHANNELS, ExampleSpec, encode_prompts, make_example, resample_crop
from medannot.training.promptable_sources import ObjectCase, object_cases
from medannot.training.promptable_synth import SyntheticObjects

# ----------------------------------------------------------------------------- network, loss, batch


def build_network(ndim: int, features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)) -> torch.nn.Module:
    """MONAI BasicUNet: len(CHANNELS) inputs (image, positive, negative, box, previous) -> 1 logit map."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=ndim, in_channels=len(CHANNELS), out_channels=1, features=features)


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice (per example) + binary cross-entropy."""
    prob = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    inter = (prob * target).sum(dims)
    dice = 1 - (2 * inter + 1) / (prob.sum(dims) + target.sum(dims) + 1)
    return dice.mean() + torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


@dataclass
class ObjectPool:
    """Real TRAIN objects (with their first click precomputed) and a synthetic generator, mixed."""

    ndim: int
    p_synthetic: float
    seed: int = 0
    real: list[tuple[np.ndarray, np.ndarray, tuple[float, ...], tuple[int, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for case in object_cases("train", self.ndim):
            arr = case.image.array[0].astype(np.float32)
            self.real.append((arr, case.mask, case.image.spacing, first_click(case.mask, case.image.spacing).index))
        self.synth = SyntheticObjects(self.ndim, patch=160 if self.ndim == 2 else 96, seed=self.seed)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], tuple[int, ...] | None]:
        if not self.real or rng.random() < self.p_synthetic:
            c = self.synth.draw()
            return c.image.array[0], c.mask, c.image.spacing, None
        return self.real[int(rng.integers(len(self.real)))]


def make_batch(pool: ObjectPool, spec: ExampleSpec, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples as tensors ``(n, C, *crop)`` and ``(n, 1, *crop)``."""
    xs, ys = [], []
    while len(xs) < n:
        img, mask, spacing, hint = pool.draw(rng)
        ex = make_example(img, mask, spacing, spec, rng, hint)
        if ex is not None:
            xs.append(ex.inputs)
            ys.append(ex.target)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


# ----------------------------------------------------------------------------- inference engine


@dataclass
class NetworkEngine:
    """The prototype network behind the PromptableEngine interface.

    The FOV is a cube (mm) centred on the prompts: the crop at native resolution around the first click, or
    1.3 x the extent of the box / previous mask / clicks when larger. When the mask reaches the crop's border
    the FOV doubles (at most ``max_grow`` times). The crop's probabilities are sampled back onto the image
    grid (linear) inside the FOV; outside it the mask is empty.
    """

    net: torch.nn.Module
    spec: ExampleSpec
    name: str = "network"
    max_grow: int = 3

    def segment(self, image: Image, prompts: Prompts) -> np.ndarray:
        vp = prompts.resolve(image)
        arr = image.array[0]
        sp = np.asarray(image.spacing, float)
        lo, hi = vp.extent()
        ext_mm = float(((hi - lo + 1) * sp).max())
        fov = max(float(max(self.spec.crop)) * float(sp.min()), 1.3 * ext_mm)
        pos = vp.points[vp.point_positive]
        if len(vp.boxes) or vp.previous is not None and vp.previous.any() or not len(pos):
            centre = (lo + hi) / 2.0
        else:
            centre = pos[0].astype(float) if ext_mm < 0.5 * fov else (lo + hi) / 2.0
        for k in range(self.max_grow + 1):
            prob, step = self._predict(arr, vp, centre, fov, sp)
            m = prob > 0.5
            border = np.zeros(m.shape, bool)
            border[tuple(slice(1, -1) for _ in m.shape)] = True
            touches = (m & ~border).any()
            whole = np.all(step * np.asarray(self.spec.crop) >= np.asarray(arr.shape))
            if not touches or whole or k == self.max_grow:
                break
            nz = np.argwhere(m)
            centre = centre + ((nz.min(0) + nz.max(0)) / 2 - (np.asarray(m.shape) - 1) / 2) * step
            fov *= 2
        return self._paste(prob, centre, step, arr.shape)

    def _predict(self, arr: np.ndarray, vp: Any, centre: np.ndarray, fov: float, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crop = self.spec.crop
        step = (fov / max(crop)) / sp
        img = resample_crop(arr, centre, step, crop, order=1, cval=float(arr.min()))
        offset = centre - (np.asarray(crop) - 1) / 2 * step

        def to_crop(p: np.ndarray) -> np.ndarray:
            return np.rint((np.asarray(p, float) - offset) / step).astype(int)

        clicks = []
        for p, positive in zip(vp.points, vp.point_positive):
            c = to_crop(p)
            if np.all((c >= 0) & (c < np.asarray(crop))):
                clicks.append(Click(tuple(int(v) for v in c), bool(positive)))
        for v, positive in zip(vp.scribble_voxels, vp.scribble_positive):
            c = to_crop(v)
            if np.all((c >= 0) & (c < np.asarray(crop))):
                clicks.append(Click(tuple(int(x) for x in c), bool(positive)))
        boxes = [(to_crop(b[0]), to_crop(b[1])) for b in vp.boxes]
        prev = None
        if vp.previous is not None:
            prev = resample_crop(vp.previous.astype(np.float32), centre, step, crop, order=1) > 0.5
        x = encode_prompts(img, clicks, boxes, prev, self.spec.disc_radius)
        self.net.eval()
        with torch.no_grad():
            logits = self.net(torch.from_numpy(x[None]))
        return torch.sigmoid(logits)[0, 0].numpy(), step

    def _paste(self, prob: np.ndarray, centre: np.ndarray, step: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Probabilities sampled back (linear) onto the image voxels of the predicted object's bounding box."""
        from scipy import ndimage as ndi

        out = np.zeros(shape, bool)
        m = prob > 0.5
        if not m.any():
            return out
        crop = np.asarray(self.spec.crop)
        offset = centre - (crop - 1) / 2 * step  # image index of crop voxel 0
        nz = np.argwhere(m)
        lo = np.clip(np.floor(offset + (nz.min(0) - 1) * step).astype(int), 0, np.asarray(shape) - 1)
        hi = np.clip(np.ceil(offset + (nz.max(0) + 1) * step).astype(int) + 1, 1, np.asarray(shape))
        sub_shape = tuple(int(b - a) for a, b in zip(lo, hi))
        # image voxel lo + o -> crop coordinate (lo + o - offset) / step
        sub = ndi.affine_transform(prob, 1.0 / step, offset=(lo - offset) / step, output_shape=sub_shape, order=1,
                                   mode="constant", cval=0.0, prefilter=False)
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = sub > 0.5
        return out


# ----------------------------------------------------------------------------- validation


def validate(net: torch.nn.Module, spec: ExampleSpec, cases: list[ObjectCase], max_clicks: int = 5) -> dict[str, float]:
    """Simulated-user sessions on ``cases``: mean Dice after 1 and ``max_clicks`` clicks, mean NoC@85."""
    engine = NetworkEngine(net, spec)
    acc = InteractiveAccumulator()
    for c in cases:
        acc.update(simulate(engine, c.image, c.mask, max_clicks=max_clicks, case=c.name))
    s = acc.compute()["network"]
    return {"dice1": round(s.mean_dice[0], 4), f"dice{max_clicks}": round(s.mean_dice[-1], 4),
            "noc85": round(s.mean_noc[0.85], 3), "seconds": round(s.median_seconds, 4)}


def validation_cases(ndim: int, n_synthetic: int = 12) -> list[ObjectCase]:
    """TRAIN-split validation objects: synthetic ones from another seed plus a few real training objects."""
    synth = SyntheticObjects(ndim, patch=160 if ndim == 2 else 96, seed=12345)
    cases = [synth.draw(i) for i in range(n_synthetic)]
    real = object_cases("train", ndim)
    rng = np.random.default_rng(7)
    pick = rng.choice(len(real), size=min(len(real), 8 if ndim == 2 else 2), replace=False)
    return cases + [real[int(i)] for i in pick]


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ndim", type=int, choices=(2, 3), default=2)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--crop", type=int, default=None, help="crop side (default 96 in 2D, 64 in 3D)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--p-synthetic", type=float, default=None)
    ap.add_argument("--features", type=str, default="16,16,32,64,128,16")
    ap.add_argument("--validate-every", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None, help="start from these weights (continue a run)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    crop = a.crop or (96 if a.ndim == 2 else 64)
    batch = a.batch or (16 if a.ndim == 2 else 2)
    spec = ExampleSpec(crop=(crop,) * a.ndim, disc_radius=2)
    pool = ObjectPool(a.ndim, a.p_synthetic if a.p_synthetic is not None else (0.5 if a.ndim == 2 else 0.7), a.seed)
    val = validation_cases(a.ndim)
    net = build_network(a.ndim, tuple(int(v) for v in a.features.split(",")))
    if a.init is not None:
        net.load_state_dict(torch.load(a.init, map_location="cpu"))
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    rng = np.random.default_rng(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    log: dict[str, Any] = {"args": {k: str(v) for k, v in vars(a).items()}, "rounds": []}
    start = time.time()
    deadline = start + a.minutes * 60
    step, losses, best = 0, [], -1.0
    while time.time() < deadline:
        frac = (time.time() - start) / (a.minutes * 60)
        for g in opt.param_groups:
            g["lr"] = a.lr * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))
        net.train()
        x, y = make_batch(pool, spec, rng, batch)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % a.validate_every == 0:
            v = validate(net, spec, val)
            row = {"step": step, "minutes": round((time.time() - start) / 60, 1), "loss": round(float(np.mean(losses)), 4), **v}
            losses = []
            log["rounds"].append(row)
            print(json.dumps(row), flush=True)
            if v["dice1"] + v["dice5"] > best:
                best = v["dice1"] + v["dice5"]
                torch.save(net.state_dict(), a.out / "weights.pt")
            (a.out / "log.json").write_text(json.dumps(log, indent=1))
    v = validate(net, spec, val)
    row = {"step": step, "minutes": round((time.time() - start) / 60, 1), "loss": round(float(np.mean(losses or [0])), 4), **v, "final": True}
    log["rounds"].append(row)
    print(json.dumps(row), flush=True)
    if v["dice1"] + v["dice5"] > best:
        torch.save(net.state_dict(), a.out / "weights.pt")
    torch.save(net.state_dict(), a.out / "last.pt")
    (a.out / "log.json").write_text(json.dumps(log, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
