"""The FastAPI application: ``create_app(settings)``.

Routes live in :mod:`medannot.server.routes` by area. Every ``/api`` route except ``POST /api/login``
needs a bearer token, checked before any body is read; ``/health``, ``/``, ``/login``, ``/docs`` (the
vendored Swagger UI) and ``/static/*`` (the review page, no data in it) do not. Requests pass the guards
of :mod:`medannot.server.middleware` first (Host allow-list, body limits, authentication); responses
carry ``X-Content-Type-Options: nosniff`` and a strict Content-Security-Policy; errors are short JSON
messages without server paths (validation errors never echo the input).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from medannot import __version__
from medannot.errors import MedannotError
from medannot.server import store
from medannot.server.db import Database
from medannot.server.deps import AppContext
from medannot.server.files import BlobStore, private_folder
from medannot.server.middleware import CSP, AuthGate, BodyLimit, HostCheck, SecurityHeaders, public_message
from medannot.server.settings import ServerSettings

log = logging.getLogger("medannot.server")

DOCS_CSP = CSP.replace("script-src 'self' 'wasm-unsafe-eval'", "script-src 'self'")
"""The API page runs only the vendored Swagger UI (``static/vendor/swagger-ui``) and ``static/docs.js``."""


def static_dir() -> Path:
    """Folder of the review page's files (owned by the page; served as is)."""
    return Path(str(resources.files("medannot.server") / "static"))


def safe_next(raw: str | None) -> bool:
    """True when a login page's ``next`` is a same-origin relative path (``/...``, not ``//``, no backslash or control)."""
    if raw is None:
        return True
    if not raw.startswith("/") or raw.startswith("//") or re.search(r"[\\\x00-\x1f\x7f]", raw):
        return False
    parts = urlsplit(raw)
    return not parts.scheme and not parts.netloc


def _csp_for(path: str) -> str:
    return DOCS_CSP if path == "/docs" else CSP


def create_app(settings: ServerSettings, start_worker: bool = False) -> FastAPI:
    """Build the app: open (and migrate) the database, mount routes and the review page.

    Args:
        settings: Server settings.
        start_worker: Also run an annotation worker thread for the app's lifetime.

    Raises:
        ConfigError: Unusable database URL or exposure rules violated (see :meth:`ServerSettings.check_exposure`).
    """
    from medannot.server.routes import auth, cases, exports, interactions, jobs, learning, projects, versions

    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    private_folder(data_dir)
    db = Database(settings.database_url)
    db.migrate()
    db.restrict_files()
    context = AppContext(settings=settings, db=db, blobs=BlobStore(settings.data_dir), secret=settings.resolved_secret())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = None
        if start_worker:
            from medannot.server.worker import Worker

            worker = Worker(settings, db)
            thread = threading.Thread(target=worker.run_forever, args=(stop,), name="medannot-worker", daemon=True)
            thread.start()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=5)
        db.dispose()

    app = FastAPI(title="medannot review server", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Auto-annotation jobs, review with versions, access control, exports.")
    app.state.ctx = context

    def lookup(token: str) -> object:
        with db.read() as s:
            user = store.user_for_token(s, token, context.secret)
            if user is not None:
                s.expunge(user)
            return user

    # added innermost first: the request meets SecurityHeaders, HostCheck, BodyLimit, AuthGate, then the routes
    app.add_middleware(AuthGate, lookup=lookup)
    app.add_middleware(BodyLimit, json_limit=settings.max_json_bytes, upload_limit=settings.max_upload_bytes)
    app.add_middleware(HostCheck, allowed=settings.resolved_allowed_hosts())
    app.add_middleware(SecurityHeaders, csp_for=_csp_for)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back (a password, a megabyte of JSON): keep where, what and why only
        errors = [{"loc": [x if isinstance(x, int) else str(x)[:64] for x in list(e.get("loc", ()))[:8]],
                   "msg": str(e.get("msg", ""))[:200], "type": str(e.get("type", ""))[:64]} for e in exc.errors()[:20]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(MedannotError)
    async def _medannot(_request: Request, exc: MedannotError) -> JSONResponse:
        return JSONResponse({"detail": public_message(exc)}, status_code=422)

    @app.exception_handler(RecursionError)
    async def _nested(_request: Request, _exc: RecursionError) -> JSONResponse:
        return JSONResponse({"detail": "the request is nested too deeply"}, status_code=400)

    @app.get("/health", tags=["server"])
    def health() -> dict:
        """Liveness: ``{"status": "ok"}`` (no authentication)."""
        return {"status": "ok"}

    for router in (auth.router, projects.router, cases.router, versions.router, jobs.router, exports.router, learning.router,
                   interactions.router):
        app.include_router(router)
    from medannot.server.monailabel.routes import router as monailabel_router  # MONAI Label clients (3D Slicer)
    app.include_router(monailabel_router)

    page = static_dir()

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(page / "index.html", media_type="text/html")

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        if not safe_next(request.query_params.get("next")):
            return RedirectResponse("/login", status_code=303)  # an open redirect attempt: drop the target
        target = page / "login.html"
        return FileResponse(target if target.is_file() else page / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return FileResponse(page / "docs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=page, check_dir=False), name="static")
    return app
