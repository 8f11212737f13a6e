"""Exports: a project's accepted annotations as a zip (NIfTI labels, COCO JSON for 2D, manifest)."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from medannot.server import store
from medannot.server.deps import ERRORS, ZIP_DOWNLOAD, ProjectId, ctx, current_user, project_access
from medannot.server.export import write_export
from medannot.server.files import private_folder
from medannot.server.models import User
from medannot.server.security import Action

router = APIRouter(prefix="/api", tags=["exports"], responses=ERRORS)


@router.post("/projects/{pid}/export", responses=ZIP_DOWNLOAD)
def export_project(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """Download the accepted annotations of the project as ``application/zip`` (see :mod:`medannot.server.export`)."""
    c = ctx(request)
    folder = private_folder(Path(c.settings.data_dir) / "exports")
    target = folder / f"export-{pid}-{secrets.token_hex(8)}.zip"
    with c.db.write() as s:
        project, _ = project_access(s, user, pid, Action.EXPORT)
        manifest = write_export(s, project, c.blobs, target)
        store.audit(s, user, "export", pid, detail={"cases": [x["id"] for x in manifest["cases"]]})
        name = project.name
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "project"
    return FileResponse(target, media_type="application/zip", filename=f"medannot-{safe}-accepted.zip",
                        content_disposition_type="attachment", background=BackgroundTask(target.unlink, missing_ok=True))
