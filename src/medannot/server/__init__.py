"""The annotation review server: FastAPI app, SQLAlchemy store, job queue with leases, auth, exports.

Entry points: :func:`medannot.server.app.create_app` (the ASGI app), :class:`medannot.server.worker.Worker`
(annotation jobs), :class:`medannot.server.settings.ServerSettings` (every option, typed). The CLI commands
``medannot serve``, ``medannot worker``, ``medannot users``, ``medannot projects`` live in
:mod:`medannot.server.cli`. Guards that run before any route (Host allow-list, body limits, authentication)
are in :mod:`medannot.server.middleware`; users, passwords, tokens and the login lockout in
:mod:`medannot.server.accounts`; compressed input is read through :mod:`medannot.io.bounded`.
"""
