"""The server's command line and schema: exposure rules of `medannot serve`, users/projects commands,
a real `serve` process, and Alembic migrations equal to the models on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port

from medannot.server.db import Database

MEDANNOT = str(Path(sys.executable).with_name("medannot"))
SECRET = "0123456789abcdef0123"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, stdin: str | None = None) -> Ran:
    """The real `medannot` Typer app, in this process (the serve test below runs a separate process)."""
    from typer.testing import CliRunner

    from medannot.cli import app

    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_serve_refuses_a_public_address_without_secret_and_users(tmp_path):
    data = str(tmp_path / "d")
    no_secret = run("serve", "--host", "0.0.0.0", "--data", data)
    assert no_secret.returncode == 2 and no_secret.stderr.count("\n") == 1
    assert "without a secret" in no_secret.stderr and "Traceback" not in no_secret.stderr
    no_users = run("serve", "--host", "0.0.0.0", "--data", data, "--secret", SECRET)
    assert no_users.returncode == 2 and "authentication is not configured" in no_users.stderr
    short = run("serve", "--host", "0.0.0.0", "--data", data, "--secret", "short")
    assert short.returncode == 2 and "shorter than 16" in short.stderr
    assert run("users", "add", "root", "--password-stdin", "--admin", "--data", data, stdin="a long password\n").returncode == 0
    demo = run("serve", "--host", "10.1.2.3", "--data", data, "--secret", SECRET, "--demo")
    assert demo.returncode == 2 and "loopback only" in demo.stderr


def test_exposure_rules_accept_loopback_and_configured_servers(tmp_path):
    from medannot.errors import ConfigError
    from medannot.server.settings import ServerSettings

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        ServerSettings(data_dir=tmp_path, host=host).check_exposure(0)
    ServerSettings(data_dir=tmp_path, host="0.0.0.0", secret=SECRET).check_exposure(1)
    with pytest.raises(ConfigError):
        ServerSettings(data_dir=tmp_path, host="::", secret=SECRET).check_exposure(0)


@pytest.mark.slow  # the unknown-model check loads torch
def test_users_and_projects_commands(tmp_path):
    data = str(tmp_path / "d")
    assert run("users", "add", "ann", "--password-stdin", "--data", data, stdin="another long password\n").returncode == 0
    dup = run("users", "add", "ann", "--password-stdin", "--data", data, stdin="another long password\n")
    assert dup.returncode == 2 and "exists already" in dup.stderr
    made = run("projects", "add", "brains", "--model", "otsu", "--labels", "1=grey matter,2=white matter", "--member", "ann=annotator",
               "--data", data)
    assert made.returncode == 0, made.stderr
    assert "1=grey matter, 2=white matter" in made.stdout
    bad_role = run("projects", "member", "brains", "ann", "boss", "--data", data)
    assert bad_role.returncode == 2 and "unknown role 'boss'" in bad_role.stderr
    bad_model = run("projects", "add", "x", "--model", "no-such-model", "--data", data)
    assert bad_model.returncode == 2 and "Traceback" not in bad_model.stderr


@pytest.mark.slow
def test_serve_process_answers_and_logs_in(tmp_path):
    data = str(tmp_path / "d")
    assert run("users", "add", "eve", "--password-stdin", "--data", data, stdin="a long password\n").returncode == 0
    port = free_port()
    proc = subprocess.Popen([MEDANNOT, "serve", "--port", str(port), "--data", data, "--no-worker"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(url + "/api/projects").status_code == 401
        token = httpx.post(url + "/api/login", json={"username": "eve", "password": "a long password"}).json()["token"]
        assert httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "eve"
        assert httpx.get(url + "/openapi.json").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _schema_diff(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from medannot.server.models import Base

    db = Database(url)
    db.migrate()
    db.migrate()  # a second start changes nothing
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    db.dispose()
    return diff


def test_migrations_build_exactly_the_models_on_sqlite(tmp_path):
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert _schema_diff(url) == []
    db = Database(url)
    with db.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL: a commit survives power loss
    db.dispose()


def test_migrations_build_exactly_the_models_on_postgresql(postgres):
    assert _schema_diff(postgres.new_database()) == []


@pytest.mark.slow  # reads the bundled label maps (loads torch)
def test_demo_seeds_a_user_projects_and_queued_jobs(tmp_path):
    from sqlalchemy import select

    from medannot.server.models import CaseRecord, Job, Project

    data = str(tmp_path / "d")
    first = run("projects", "demo", "--data", data)
    assert first.returncode == 0 and "demo/demo" in first.stdout
    assert "exists already" in run("projects", "demo", "--data", data).stdout
    db = Database(f"sqlite:///{tmp_path / 'd' / 'medannot.db'}")
    with db.read() as s:
        projects = {p.name: p.model for p in s.scalars(select(Project))}
        cases = {c.name: (c.spatial_dims, c.shape) for c in s.scalars(select(CaseRecord))}
        states = [j.state for j in s.scalars(select(Job))]
    db.dispose()
    assert projects == {"demo-nuclei": "nuclei", "demo-brain": "brain-mri"}
    assert cases == {"nuclei-right-half": (2, [512, 256, 1]), "mni152-t1-crop": (3, [136, 170, 120])}
    assert states == ["queued", "queued"]
