"""Federated training with Flower: three simulated sites made of disjoint tiles of the real stardist nuclei image.

The simulation test runs Flower's simulation engine (Ray) and checks what the sites sent, byte for byte, through
the audit log: only weight arrays (exactly the network's tensors) and a few scalars, no image or mask bytes, and
the shipped weights are the case-weighted mean of the last round's site weights (FedAvg). The unit tests need no Ray.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medannot import samples
from medannot.errors import ConfigError
from medannot.models.bundle import Bundle
from medannot.training.federated import (
    FederatedRun,
    FederatedSettings,
    SiteTrainer,
    Strategy,
    arrays_to_state,
    simulate,
    site_config,
    state_to_arrays,
)
from medannot.training.federated_data import FolderSource, tile_pairs, write_dataset
from medannot.workflows.federated import registry_binding, server_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "federated-nuclei.yaml"
LABELS = {0: "background", 1: "nucleus"}
FAST = {"iterations_per_epoch": 2, "batch_size": 2, "patch_size": [64, 64]}


@pytest.fixture(scope="module")
def nuclei_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three sites of disjoint 128x124 tiles of the left half (3, 3, 2 tiles) and the right half held out."""
    root = tmp_path_factory.mktemp("federated")
    image, label = samples.nuclei_image(), samples.nuclei_instances()
    tiles = tile_pairs(image, label, (128, 124), "nuclei", region=[(0, 512), (0, 248)])
    held = tile_pairs(image, label, (512, 256), "heldout", region=[(0, 512), (256, 512)])
    parts = {"site-a": tiles[0:3], "site-b": tiles[3:6], "site-c": tiles[6:8]}
    sites = [(name, write_dataset(pairs, root / name, LABELS, file_ending=".tif")) for name, pairs in parts.items()]
    return {"root": root, "sites": sites, "tiles": tiles, "heldout": write_dataset(held, root / "heldout", LABELS, file_ending=".tif")}


def _windows(raw: bytes, width: int = 48, count: int = 12) -> list[bytes]:
    """``count`` byte strings of ``width`` bytes spread over ``raw`` (skipping all-zero runs, which prove nothing)."""
    out = []
    for start in np.linspace(0, len(raw) - width, count * 4).astype(int):
        chunk = raw[start:start + width]
        if len(set(chunk)) > 4:
            out.append(chunk)
        if len(out) == count:
            break
    return out


@pytest.mark.slow
def test_three_site_simulation_sends_only_weights(nuclei_sites: dict, tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    data = server_config(CONFIG, val=nuclei_sites["heldout"], out=tmp_path / "bundle", overrides=FAST)
    run = FederatedRun(data, registry_binding(), FederatedSettings(rounds=2, local_epochs=1, min_sites=3))
    out = simulate(run, nuclei_sites["sites"], audit=audit)

    # the bundle and its card record the rounds, the sites' case counts and the strategy
    bundle = Bundle.load(out)
    fed = bundle.spec.training["run"]["federated"]
    assert fed["sites"] == {"site-a": 3, "site-b": 3, "site-c": 2}
    assert (fed["rounds"], fed["strategy"], fed["cases"]) == (2, "fedavg", 8)
    assert [r["round"] for r in fed["history"]] == [1, 2]
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Federated training" in card and "`site-c` 2 cases" in card and "strategy fedavg" in card
    assert 0.0 <= bundle.spec.metrics["mean_dice"] <= 1.0  # measured on the held-out half at the server

    # what the sites sent: one message per site and round, holding the network's tensors and scalars only
    blobs = sorted(audit.glob("*.bin"))
    assert len(blobs) == 6
    summaries = [json.loads(line) for line in (audit / "sent.jsonl").read_text().splitlines()]
    n_weights = sum(int(np.prod(v.shape)) for v in run.hooks.network.state_dict().values())
    for s in summaries:
        assert list(s["arrays"]) == ["fitres.parameters"]
        assert sum(int(np.prod(shape)) for _, shape in s["arrays"]["fitres.parameters"]) == n_weights
        assert {k for rec in s["metrics"].values() for k in rec} <= {"site", "cases", "train_loss", "num_examples", "code", "message"}

    # no image or mask bytes in any sent message: raw tiles, their files and the preprocessed float32 pixels
    sent = [b.read_bytes() for b in blobs]
    probes: list[bytes] = []
    for _, image, label in nuclei_sites["tiles"]:
        pixels = np.ascontiguousarray(image.array)
        probes += _windows(pixels.tobytes()) + _windows(np.ascontiguousarray(label.array).tobytes())
        probes += _windows(pixels.astype(np.float32).tobytes()) + _windows((label.array > 0).astype(np.uint8).tobytes())
    for _, folder in nuclei_sites["sites"]:
        for f in sorted(folder.rglob("*.tif")):
            probes += _windows(f.read_bytes()[256:], count=4)
    assert len(probes) > 200
    assert not [p for p in probes for blob in sent if p in blob]

    # FedAvg: the shipped weights are the case-weighted mean of what the sites sent in the last round
    from flwr.common.serde import message_from_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    last = []
    for blob in sorted(audit.glob("r002-*.bin")):
        msg = message_from_proto(ProtoMessage.FromString(blob.read_bytes()))
        arrays = [a.numpy() for a in msg.content.array_records["fitres.parameters"].values()]
        last.append((int(msg.content.metric_records["fitres.num_examples"]["num_examples"]), arrays))
    assert sorted(n for n, _ in last) == [2, 3, 3]
    shipped = bundle.read_weights()
    names = list(run.hooks.network.state_dict())
    total = sum(n for n, _ in last)
    for i, name in enumerate(names):
        mean = sum(n * arrays[i].astype(np.float64) for n, arrays in last) / total
        np.testing.assert_allclose(shipped[name].float().numpy(), mean, rtol=1e-5, atol=1e-6)


def _site(nuclei_sites: dict, data: dict) -> tuple[SiteTrainer, dict]:
    name, folder = nuclei_sites["sites"][0]
    return SiteTrainer(registry_binding(), folder, name), data


def test_fedprox_keeps_site_weights_near_the_global_ones(nuclei_sites: dict) -> None:
    data = server_config(CONFIG, val=nuclei_sites["heldout"], overrides={**FAST, "iterations_per_epoch": 3})
    run = FederatedRun(data, registry_binding(), FederatedSettings(rounds=1, min_sites=1))
    trainer, _ = _site(nuclei_sites, data)
    start = run.initial

    def drift(mu: float) -> float:
        out, cases, metrics = trainer.fit(start, {**run.fit_instructions(1), "proximal_mu": mu})
        assert (cases, metrics["cases"], metrics["site"]) == (3, 3, "site-a")
        return float(sum(np.sum((a.astype(np.float64) - b) ** 2) for a, b in zip(out, start, strict=True)))

    plain, proximal = drift(0.0), drift(50.0)
    assert plain > 0.0
    assert proximal < 0.7 * plain
    assert drift(0.0) == pytest.approx(plain)  # a round's draws are seeded by (seed, round, site): repeatable


def test_dp_wrapper_and_record(nuclei_sites: dict) -> None:
    from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedProx

    data = server_config(CONFIG, val=nuclei_sites["heldout"], overrides=FAST)
    settings = FederatedSettings(rounds=2, strategy="fedprox", proximal_mu=0.5, min_sites=3, dp_noise=0.3, dp_clip=2.0)
    run = FederatedRun(data, registry_binding(), settings)
    strategy = run.strategy()
    assert isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
    assert isinstance(strategy.strategy, FedProx) and strategy.strategy.proximal_mu == 0.5
    rec = settings.record()
    assert rec["strategy"] == "fedprox" and rec["proximal_mu"] == 0.5
    assert rec["differential_privacy"]["noise_multiplier"] == 0.3 and rec["differential_privacy"]["clipping_norm"] == 2.0
    assert FederatedSettings().record()["differential_privacy"] is None
    with pytest.raises(ConfigError, match="finished 0 of 2 rounds"):
        run.ship()


def test_settings_and_weights_are_checked() -> None:
    with pytest.raises(ConfigError, match="fedavg, fedprox"):
        Strategy.parse("fedsgd")
    with pytest.raises(ConfigError, match="must be 1 or more"):
        FederatedSettings(rounds=0)
    with pytest.raises(ConfigError, match="DP clip"):
        FederatedSettings(dp_clip=0.0)
    net = torch.nn.Linear(3, 2)
    arrays = state_to_arrays(net.state_dict())
    back = arrays_to_state(arrays, net.state_dict())
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ConfigError, match="same config"):
        arrays_to_state(arrays[:1], net.state_dict())
    with pytest.raises(ConfigError, match="same config"):
        arrays_to_state([arrays[1], arrays[0]], net.state_dict())


def test_site_config_and_folder_source(nuclei_sites: dict, tmp_path: Path) -> None:
    data = server_config(CONFIG, val=nuclei_sites["heldout"])
    _, folder = nuclei_sites["sites"][1]
    site = site_config(data, folder)
    assert site["data"] == {"source": "folder", "params": {"fg_ratio": 0.6, "target": "binary", "augment": data["data"]["params"]["augment"],
                                                         "path": str(folder)}}
    assert "val_path" not in site["data"]["params"]  # a site never sees the server's held-out cases
    server_only = FolderSource(patch_size=[64, 64], val_path=str(nuclei_sites["heldout"]), target="binary")
    assert server_only.train_count == 0 and len(server_only.validation_cases()) == 1
    with pytest.raises(ConfigError, match="only validates"):
        server_only.sample(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="needs data.params.path"):
        FolderSource(patch_size=[64, 64])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no training data"):
        server_config(CONFIG)  # the server holds no training data: --val or a folder source with val_path only
    with pytest.raises(Exception, match="does not exist"):
        SiteTrainer(registry_binding(), tmp_path / "missing", "site-x")
