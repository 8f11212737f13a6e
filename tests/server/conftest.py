"""Server test fixtures: one live server per backend (SQLite, and a real PostgreSQL started here)."""

from __future__ import annotations

import pytest
from server_helpers import PostgresServer, start_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL 15 server on loopback (fails, not skips, when PostgreSQL is not installed)."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def live(request, tmp_path_factory):
    """A live server (uvicorn thread) on SQLite or PostgreSQL, shared by the server tests (each module uses its own users and projects)."""
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgresql" else None
    server = start_server(tmp_path_factory.mktemp(f"srv-{request.param}"), url, lease_seconds=30.0, heartbeat_seconds=0.5)
    yield server
    server.stop()
