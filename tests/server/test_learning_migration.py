"""Migration 0003 (learning loop) on a database with data: SQLite rebuilds tables to change a column or add a
constraint, and with foreign keys on that would fire ON DELETE actions of the rows referencing them (a proposal
version would lose its job). ``Database.migrate`` runs migrations with foreign keys off, then checks the references."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from medannot.server.db import Database


def test_upgrading_a_filled_database_keeps_every_reference(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(resources.files("medannot.server") / "migrations"))))
    with db.write_engine.begin() as conn:  # a database from before the learning loop
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    with db.write() as s:
        s.execute(text("INSERT INTO projects (id, name, model, labels, created) VALUES (1, 'p', 'otsu', '[]', '2026-01-01')"))
        s.execute(text("INSERT INTO cases (id, project_id, name, status, image_sha256, source_format, spatial_dims, shape, affine, "
                       "created, updated) VALUES (1, 1, 'c', 'pending', 'x', 'nifti', 3, '[1,1,1]', '[]', '2026-01-01', '2026-01-01')"))
        s.execute(text("INSERT INTO jobs (id, project_id, case_id, kind, model, state, progress, message, attempts, created) "
                       "VALUES (7, 1, 1, 'annotate', 'otsu', 'done', 1, '', 1, '2026-01-01')"))
        s.execute(text("INSERT INTO annotation_versions (id, case_id, number, kind, mask_sha256, created, job_id) "
                       "VALUES (1, 1, 1, 'proposal', 'y', '2026-01-01', 7)"))
    db.migrate()
    with db.read() as s:
        assert s.execute(text("SELECT id, job_id, model_version_id FROM annotation_versions")).all() == [(1, 7, None)]
        assert s.execute(text("SELECT id, case_id, kind FROM jobs")).all() == [(7, 1, "annotate")]
        assert s.execute(text("SELECT settings, active_version_id FROM projects")).all() == [(None, None)]
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1  # on again for everything after the migration
    with db.write() as s:  # a training job has no case now
        s.execute(text("INSERT INTO jobs (project_id, case_id, kind, model, state, progress, message, attempts, created) "
                       "VALUES (1, NULL, 'train', 'p v1', 'queued', 0, '', 0, '2026-01-01')"))
    db.dispose()
