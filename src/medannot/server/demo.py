"""``medannot serve --demo``: a user ``demo``/``demo`` and two projects holding the bundled real samples.

* ``demo-brain`` (model ``brain-mri``): a crop of the MNI152 2009a T1 template around the brain centre.
* ``demo-nuclei`` (model ``nuclei``): the right half of the stardist nuclei image (held out from training).

Each case gets an annotation job; the worker (the thread in ``serve``, or ``medannot worker``) annotates
them with the bundled models, so a newcomer can review model proposals at once. Loopback only: ``serve``
refuses ``--demo`` off loopback, and the demo password (below the password policy) logs in only when the
server and the browser are both on loopback, even from a data folder seeded earlier.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from medannot.data import Geometry, Image
from medannot.server import jobs as queue
from medannot.server import store
from medannot.server.db import Database
from medannot.server.files import BlobStore
from medannot.server.imaging import to_nifti_bytes
from medannot.server.models import CaseRecord, Project, User
from medannot.server.security import Role

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
BRAIN_CROP = (slice(30, 166), slice(30, 200), slice(40, 160))
"""Voxel box of the MNI152 T1 (197x233x189, 1 mm) kept for the demo brain case (136x170x120 mm)."""


def demo_images() -> list[tuple[str, str, Image]]:
    """``(project, case name, Image)`` of the demo cases (real bundled samples)."""
    from medannot import samples

    t1 = samples.mni152_t1()
    start = [s.start for s in BRAIN_CROP]
    origin = t1.geometry.index_to_world(np.asarray(start))
    crop = Image(t1.array[(slice(None), *BRAIN_CROP)].copy(),
                 Geometry(spacing=t1.geometry.spacing, origin=tuple(origin), direction=t1.geometry.direction), t1.kind,
                 {"source": "MNI152 2009a T1 (crop)"})
    nuclei = Image.from_spatial(samples.nuclei_image().scalar()[:, samples.NUCLEI_SPLIT_COLUMN :])
    return [("demo-nuclei", "nuclei-right-half", nuclei), ("demo-brain", "mni152-t1-crop", crop)]  # quick one first


def seed_demo(db: Database, blobs: BlobStore) -> bool:
    """Create the demo user, projects, cases and jobs unless they exist; returns True when it seeded."""
    with db.read() as s:
        if s.scalar(select(User).where(User.username == DEMO_USER)) is not None:
            return False
    models = {"demo-nuclei": "nuclei", "demo-brain": "brain-mri"}
    prepared = [(p, name, img, blobs.put(to_nifti_bytes(img))) for p, name, img in demo_images()]
    with db.write() as s:
        user = store.add_user(s, DEMO_USER, DEMO_PASSWORD, is_admin=False, policy=None)  # below the policy: loopback only
        projects: dict[str, Project] = {}
        for pname, model in models.items():
            projects[pname] = store.add_project(s, pname, model)
            store.set_member(s, projects[pname], user, Role.ADMIN)
        for pname, name, img, sha in prepared:
            volume = img.as_volume()
            case = CaseRecord(project_id=projects[pname].id, name=name, status="pending", image_sha256=sha, source_format="nifti",
                        spatial_dims=img.ndim, shape=list(volume.spatial_shape), affine=volume.affine.tolist(), created_by=user.id)
            s.add(case)
            s.flush()
            queue.enqueue(s, case, models[pname])
    return True
