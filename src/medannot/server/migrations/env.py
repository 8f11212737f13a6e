"""Alembic environment: runs on the connection handed over by ``Database.migrate`` (or the URL in the config)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from medannot.server.models import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:  # noqa: ANN001
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=conn.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic` command line with sqlalchemy.url set
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: set sqlalchemy.url (the medannot server migrates its database itself at start)")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
