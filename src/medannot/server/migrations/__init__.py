"""Alembic migrations of the server database (applied by :meth:`medannot.server.db.Database.migrate`)."""
