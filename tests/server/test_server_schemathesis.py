"""Schemathesis against the server's own OpenAPI schema (issue 14), in-process over ASGI and authenticated as
a site admin: every operation gets generated requests (valid and invalid), half of the generated ids are
swapped for ids that exist, and no answer may be a 5xx or differ from the schema (status code, content
type, body). The number of examples per operation is bounded (``MEDANNOT_SCHEMATHESIS_EXAMPLES``, default
25, a fixed seed) so the run takes under a minute on two cores; ``make fuzz`` runs ``MEDANNOT_FUZZ_EXAMPLES``
(default 300) with a random seed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance
from server_helpers import PASSWORD, synthetic_volume

from medannot.server import accounts, store
from medannot.server.models import User

EXAMPLES = int(os.environ.get("MEDANNOT_SCHEMATHESIS_EXAMPLES", "25"))
FUZZ_EXAMPLES = int(os.environ.get("MEDANNOT_FUZZ_EXAMPLES", "300"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class World:
    """The app under test (made at import: Schemathesis reads its schema while pytest collects), what exists in
    it once seeded, and a token that is renewed when a generated call revoked it."""

    def __init__(self) -> None:
        from medannot.server.app import create_app
        from medannot.server.settings import ServerSettings

        self.folder = tempfile.TemporaryDirectory(prefix="medannot-schemathesis-")
        self.settings = ServerSettings(data_dir=Path(self.folder.name), allowed_hosts=["testserver"], login_max_failures=10**6,
                                       login_max_failures_per_address=10**6)
        self.app = create_app(self.settings)
        self.ctx = self.app.state.ctx
        self.known: dict = {}
        self._token: str | None = None
        self.admin_id = 0

    def seed(self) -> None:
        """A site admin, a victim user, a project with one annotated case."""
        from medannot.data import Image
        from medannot.server import jobs as queue
        from medannot.server.imaging import to_nifti_bytes
        from medannot.server.models import CaseRecord
        from medannot.server.worker import Worker

        with self.ctx.db.write() as s:
            admin = store.add_user(s, "fuzz-admin", PASSWORD, is_admin=True)
            victim = store.add_user(s, "fuzz-victim", PASSWORD)
            project = store.add_project(s, "fuzz", "otsu")
            store.set_member(s, project, admin, "admin")
            store.set_member(s, project, victim, "annotator")
            self.admin_id, self.known = admin.id, {"pid": project.id, "uid": victim.id, "username": "fuzz-victim"}
        image = Image.from_spatial(synthetic_volume())
        sha = self.ctx.blobs.put(to_nifti_bytes(image))
        with self.ctx.db.write() as s:  # a case as an upload makes it, with its job
            volume = image.as_volume()
            case = CaseRecord(project_id=self.known["pid"], name="scan", status="pending", image_sha256=sha, source_format="nifti",
                              spatial_dims=3, shape=list(volume.spatial_shape), affine=volume.affine.tolist(),
                              created_by=self.admin_id)
            s.add(case)
            s.flush()
            job = queue.enqueue(s, case, "otsu")
            self.known.update(cid=case.id, jid=job.id)
        worker = Worker(self.settings, self.ctx.db, name="fuzz-worker")
        assert worker.run_once() == self.known["jid"]
        worker.close()
        with self.ctx.db.read() as s:
            self.known["vid"] = store.latest_version(s, self.known["cid"]).id

    def token(self) -> str:
        """A valid token of the site admin (a new one when a generated call logged it out or changed its password)."""
        with self.ctx.db.write() as s:
            if self._token and accounts.user_for_token(s, self._token, self.ctx.secret) is not None:
                return self._token
            user = s.get(User, self.admin_id)
            assert user is not None and not user.disabled, "the fuzzing admin was deleted or disabled (the server forbids both)"
            self._token = accounts.issue_token(s, user, self.ctx.secret, 1.0)
            return self._token


WORLD = World()
schema = schemathesis.openapi.from_asgi("/openapi.json", WORLD.app)


@pytest.fixture(scope="module")
def world():
    WORLD.seed()
    yield WORLD
    WORLD.ctx.db.dispose()
    WORLD.folder.cleanup()


def _call(case, world) -> None:  # noqa: ANN001
    for key, value in list((case.path_parameters or {}).items()):  # half of the ids: ones that exist
        if key in world.known and (hash(str(value)) % 2 == 0):
            case.path_parameters[key] = world.known[key]
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {world.token()}"}
    response = case.call()
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api_answers_match_the_schema_and_are_never_5xx(case, world):
    _call(case, world)


@pytest.mark.slow
@pytest.mark.fuzz
@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_many_examples_random_seed(case, world):
    """``make fuzz``: many more examples per operation, a new random seed each run."""
    _call(case, world)
