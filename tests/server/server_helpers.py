"""Helpers of the server tests: a live uvicorn server in a thread, a throwaway PostgreSQL, users and files."""

from __future__ import annotations

import gzip
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL 15 server in a temporary folder on loopback (as user ``postgres`` when run as root)."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"{PG_BIN}/initdb not found: install the Debian package 'postgresql' (scripts/system_deps.txt)")
        self.root = Path(tempfile.mkdtemp(prefix="medannot-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o700)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "medannot", "--no-sync", "-E", "UTF8"])
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=300"
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log.txt"), "-o", opts, "-w", "start"])
        self._dbs = 0

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(self.as_user + cmd, check=True, capture_output=True, timeout=120)

    def new_database(self) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        import psycopg

        self._dbs += 1
        name = f"medannot_{self._dbs}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=medannot dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://medannot@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(self.as_user + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class LiveServer:
    """A running app (uvicorn in a thread) with its settings and database."""

    url: str
    settings: object
    app: object
    server: object
    thread: threading.Thread
    tokens: dict[str, str] = field(default_factory=dict)
    _clients: dict = field(default_factory=dict)

    @property
    def db(self):  # noqa: ANN201
        return self.app.state.ctx.db

    def client(self, user: str | None = None) -> httpx.Client:
        """A shared client acting as ``user`` (None: anonymous); do not close it."""
        if user not in self._clients:
            self._clients[user] = httpx.Client(base_url=self.url, timeout=120.0)
        c = self._clients[user]
        c.headers.pop("Authorization", None)
        if user:
            c.headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return c

    def login(self, user: str, password: str = PASSWORD) -> str:
        r = self.client(None).post("/api/login", json={"username": user, "password": password})
        r.raise_for_status()
        self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def stop(self) -> None:
        for c in self._clients.values():
            c.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(data_dir: Path, db_url: str | None = None, **settings_kw) -> LiveServer:
    """Start create_app(settings) under uvicorn on a free loopback port and wait until it answers."""
    import uvicorn

    from medannot.server.app import create_app
    from medannot.server.settings import ServerSettings

    port = free_port()
    settings = ServerSettings(data_dir=data_dir, db_url=db_url, port=port, **settings_kw)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("server did not start")
    return LiveServer(url, settings, app, server, thread)


def add_users(live: LiveServer, names: list[str], admin: set[str] = frozenset()) -> None:
    from medannot.server import store

    with live.db.write() as s:
        for n in names:
            store.add_user(s, n, PASSWORD, n in admin)
    for n in names:
        live.login(n)


def add_project(live: LiveServer, name: str, model: str, members: dict[str, str], labels: object | None = None) -> int:
    from sqlalchemy import select

    from medannot.server import store
    from medannot.server.models import User

    with live.db.write() as s:
        project = store.add_project(s, name, model, labels)
        for user, role in members.items():
            store.set_member(s, project, s.scalar(select(User).where(User.username == user)), role)
        return project.id


def nifti_bytes(array: np.ndarray, affine: np.ndarray | None = None, gz: bool = True) -> bytes:
    """A NIfTI file's bytes (synthetic test data)."""
    img = nib.Nifti1Image(array, np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine)
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


def synthetic_volume(shape=(24, 20, 12), seed: int = 0) -> np.ndarray:
    """A synthetic int16 volume: noise plus a bright block (so Otsu finds the block)."""
    rng = np.random.default_rng(seed)
    arr = (rng.random(shape) * 100).astype(np.int16)
    arr[6:14, 5:12, 3:8] += 600
    return arr


def read_mask(data: bytes) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).dataobj)


def upload(client: httpx.Client, pid: int, name: str, data: bytes, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/api/projects/{pid}/cases", files={"file": (name, io.BytesIO(data), "application/octet-stream")},
                       headers=headers)


def run_jobs(live: LiveServer) -> int:
    """Run every queued job in this process with a real Worker; returns how many ran."""
    from medannot.server.worker import Worker

    worker = Worker(live.settings, live.db, name="test-worker")
    n = 0
    while worker.run_once() is not None:
        n += 1
    worker.close()
    return n
