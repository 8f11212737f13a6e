"""The annotation review server: FastAPI app, SQLAlchemy store, job queue with leases, auth, exports.

Entry points: :func:`medannot.server.app.create_app` (the ASGI app), :class:`medannot.server.worker.Worker`
(annotation jobs), :class:`medannot.server.settings.ServerSettings` (every option, typed). The CLI commands
``medannot serve``, ``medannot worker``, ``medannot users``, ``medannot projects`` live in
:mod:`medannot.server.cli`.
"""
