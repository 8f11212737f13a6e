"""The FastAPI application: ``create_app(settings)``.

Routes live in :mod:`medannot.server.routes` by area. Every ``/api`` route except ``POST /api/login``
needs a bearer token; ``/health``, ``/``, ``/login`` and ``/static/*`` (the review page, no data in it)
do not. Responses carry ``X-Content-Type-Options: nosniff`` and a strict Content-Security-Policy;
request bodies are bounded by ``max_upload_bytes`` (413 beyond it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from importlib import resources
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from medannot import __version__
from medannot.errors import GeometryError, InputError, MedannotError
from medannot.server.db import Database
from medannot.server.deps import AppContext
from medannot.server.files import BlobStore
from medannot.server.settings import ServerSettings

log = logging.getLogger("medannot.server")

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self' blob:; font-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def static_dir() -> Path:
    """Folder of the review page's files (owned by the page; served as is)."""
    return Path(str(resources.files("medannot.server") / "static"))


class BodyLimit:
    """ASGI middleware: answer 413 when a request body passes ``limit`` bytes (declared or streamed)."""

    def __init__(self, app, limit: int) -> None:  # noqa: ANN001
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        seen = 0

        async def limited_receive():  # noqa: ANN202
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send) -> None:  # noqa: ANN001
        body = f'{{"detail":"request body larger than {self.limit} bytes (max_upload_bytes)"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(settings: ServerSettings, start_worker: bool = False) -> FastAPI:
    """Build the app: open (and migrate) the database, mount routes and the review page.

    Args:
        settings: Server settings.
        start_worker: Also run an annotation worker thread for the app's lifetime.

    Raises:
        ConfigError: Unusable database URL or exposure rules violated (see :meth:`ServerSettings.check_exposure`).
    """
    from medannot.server.routes import auth, cases, exports, jobs, projects, versions

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.migrate()
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

    app = FastAPI(title="medannot review server", version=__version__, lifespan=lifespan,
                  description="Auto-annotation jobs, review with versions, access control, exports.")
    app.state.ctx = context

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN202, ANN001
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)

    @app.exception_handler(GeometryError)
    async def _geometry(_request: Request, exc: GeometryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(InputError)
    async def _input(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(MedannotError)
    async def _medannot(_request: Request, exc: MedannotError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health", tags=["server"])
    def health() -> dict:
        """Liveness: ``{"status": "ok"}`` (no authentication)."""
        return {"status": "ok"}

    for router in (auth.router, projects.router, cases.router, versions.router, jobs.router, exports.router):
        app.include_router(router)

    page = static_dir()

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(page / "index.html", media_type="text/html")

    @app.get("/login", include_in_schema=False)
    def login_page() -> Response:
        target = page / "login.html"
        return FileResponse(target if target.is_file() else page / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=page, check_dir=False), name="static")
    return app
