"""``medannot federated server`` and two ``medannot federated client`` processes over gRPC on loopback.

Two sites of disjoint tiles of the real stardist nuclei image; one round; the server ships a bundle whose card names
both sites, and each site's audit folder holds what it sent.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medannot import samples
from medannot.models.bundle import Bundle
from medannot.training.federated_data import tile_pairs, write_dataset

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "federated-nuclei.yaml"
MEDANNOT = Path(sys.executable).parent / "medannot"
LABELS = {0: "background", 1: "nucleus"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_server_and_two_clients_over_grpc(tmp_path: Path) -> None:
    image, label = samples.nuclei_image(), samples.nuclei_instances()
    tiles = tile_pairs(image, label, (128, 124), "nuclei", region=[(0, 512), (0, 248)])
    north = write_dataset(tiles[:4], tmp_path / "north", LABELS, file_ending=".tif")
    south = write_dataset(tiles[4:], tmp_path / "south", LABELS, file_ending=".tif")
    held = write_dataset(tile_pairs(image, label, (512, 256), "heldout", region=[(0, 512), (256, 512)]), tmp_path / "heldout", LABELS,
                         file_ending=".tif")
    address = f"127.0.0.1:{_free_port()}"
    out = tmp_path / "bundle"
    server = subprocess.Popen([str(MEDANNOT), "federated", "server", str(CONFIG), "--val", str(held), "--address", address, "--sites", "2",
                               "--rounds", "1", "--out", str(out), "--set", "iterations_per_epoch=2", "--set", "patch_size=[64,64]",
                               "--set", "batch_size=2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clients = [subprocess.Popen([str(MEDANNOT), "federated", "client", "--data", str(site), "--server", address, "--audit",
                                 str(tmp_path / f"audit-{site.name}"), "--wait", "240"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for site in (north, south)]
    try:
        server_log, _ = server.communicate(timeout=400)
        client_logs = [c.communicate(timeout=120)[0] for c in clients]
    finally:
        for proc in (server, *clients):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert server.returncode == 0, server_log[-3000:]
    assert f"bundle written: {out}" in server_log
    for c, log in zip(clients, client_logs, strict=True):
        assert c.returncode == 0 and "the server ended the run" in log, log[-3000:]
    fed = Bundle.load(out).spec.training["run"]["federated"]
    assert fed["sites"] == {"north": 4, "south": 4} and fed["rounds"] == 1
    for site in ("north", "south"):
        sent = [json.loads(line) for line in (tmp_path / f"audit-{site}" / "sent.jsonl").read_text().splitlines()]
        assert [s["type"] for s in sent] == ["train"]
        assert {k for rec in sent[0]["metrics"].values() for k in rec} <= {"site", "cases", "train_loss", "num_examples", "code", "message"}


def test_client_refuses_a_folder_without_labelled_cases(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medannot.cli import app

    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["federated", "client", "--data", str(tmp_path / "empty"), "--server", "127.0.0.1:9"])
    assert res.exit_code == 2 and "medannot: error:" in res.output and "dataset" in res.output, res.output
    res = CliRunner().invoke(app, ["federated", "server", str(CONFIG), "--strategy", "fedsgd"])
    assert res.exit_code == 2 and "fedavg, fedprox" in res.output, res.output
    res = CliRunner().invoke(app, ["federated", "server", str(CONFIG)])
    assert res.exit_code == 2 and "--val" in res.output, res.output
