"""Database connection: engines, sessions, and schema migration at start.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL``, so a write that was
acknowledged (committed) survives a power cut, and readers never block the writer. Write transactions
begin with ``BEGIN IMMEDIATE``: they queue for the write lock up front (``busy_timeout``) instead of
failing with "database is locked" when upgrading a read snapshot. PostgreSQL is used as given by URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from medannot.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 60_000
MIGRATION_LOCK_ID = 0x6D656461  # pg advisory lock id ("meda") serialising concurrent migrations


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                           pool_size=20, max_overflow=40)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see module docstring)
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """Engines and session factories for one database URL.

    ``read()`` sessions see a consistent snapshot; ``write()`` sessions hold the write lock (SQLite) from
    their first statement and commit on success, roll back on error.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, "BEGIN")
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
        elif url.startswith("postgresql"):
            self.engine = create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
            self.write_engine = self.engine
        else:
            raise ConfigError(f"unsupported database URL {url.split(':')[0]!r}; use sqlite:///FILE or postgresql+psycopg://...")
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (rolled back at the end)."""
        with self._read() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work is committed when the block ends without error."""
        with self._write() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe when several processes start at once).

        On SQLite the migrations run with foreign keys off: Alembic rebuilds a table to change a column or add a
        constraint (copy, drop, rename), and dropping a table with foreign keys on would fire the ON DELETE actions
        of the rows that reference it. References are checked before the migration commits.
        """
        from alembic import command
        from alembic.config import Config

        script_location = str(Path(str(resources.files("medannot.server") / "migrations")))
        cfg = Config()
        cfg.set_main_option("script_location", script_location)
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.write_engine.connect() as conn:
            raw = conn.connection.driver_connection if self.is_sqlite else None
            if raw is not None:  # outside any transaction (SQLite ignores it inside one): see the note below
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    if not self.is_sqlite:
                        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    if raw is not None:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise ConfigError(f"database migration left {len(broken)} broken references (first in table "
                                              f"{broken[0][0]}); the database was left as it was")
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys=ON")

    def restrict_files(self) -> None:
        """SQLite: make the database file and its WAL/shared-memory files 0600 (SQLite gives new ones the same mode)."""
        if not self.is_sqlite:
            return
        path = self.engine.url.database
        if not path or path == ":memory:":
            return
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(f"{path}{suffix}", 0o600)
            except FileNotFoundError:
                continue
            except OSError:  # not ours: the data folder (0700) still keeps others out
                continue

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
