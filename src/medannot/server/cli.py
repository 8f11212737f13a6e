"""CLI commands of the server: ``medannot serve``, ``medannot worker``, ``medannot users``, ``medannot projects``
(with the learning loop's ``projects train / models / activate / settings / repropose`` and ``medannot simulate``
from :mod:`medannot.server.cli_learning`).

Registered on the main Typer app by :func:`register`; heavy imports stay inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

DATA_HELP = "Data folder (database, images, masks)."
DB_HELP = "Database URL (default: SQLite in the data folder), e.g. postgresql+psycopg://user@localhost/medannot."

users_app = typer.Typer(help="Manage server users.", no_args_is_help=True)
projects_app = typer.Typer(help="Manage server projects.", no_args_is_help=True)


def _settings(data: Path, db: Optional[str], **kw: object):  # noqa: ANN202
    from pydantic import ValidationError

    from medannot.errors import ConfigError
    from medannot.server.settings import ServerSettings

    try:
        return ServerSettings.model_validate({"data_dir": data, "db_url": db, **{k: v for k, v in kw.items() if v is not None}})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"option {'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None


def _database(data: Path, db: Optional[str]):  # noqa: ANN202
    from medannot.server.db import Database

    settings = _settings(data, db)
    data.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    database.migrate()
    return database


SECRET_ENV = "MEDANNOT_SECRET"


def _read_secret(secret: Optional[str], secret_file: Optional[Path]) -> Optional[str]:
    """The secret from ``--secret-file``, else ``MEDANNOT_SECRET``, else ``--secret`` (warned: visible in /proc)."""
    import os

    from medannot.errors import ConfigError

    given = [name for name, value in (("--secret-file", secret_file), (SECRET_ENV, os.environ.get(SECRET_ENV)),
                                      ("--secret", secret)) if value]
    if len(given) > 1:
        raise ConfigError(f"give the secret once: {' and '.join(given)} were both given")
    if secret_file is not None:
        try:
            value = secret_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the secret file ({getattr(exc, 'strerror', None) or type(exc).__name__})",
                              secret_file) from None
        if len(value) < 16:
            raise ConfigError("the secret is shorter than 16 characters; use e.g. `openssl rand -hex 32`", secret_file)
        return value
    if os.environ.get(SECRET_ENV):
        value = os.environ[SECRET_ENV].strip()
        if len(value) < 16:
            raise ConfigError(f"{SECRET_ENV} is shorter than 16 characters; use e.g. `openssl rand -hex 32`")
        return value
    if secret is not None:
        if len(secret) < 16:
            raise ConfigError("--secret is shorter than 16 characters; use e.g. `openssl rand -hex 32`")
        typer.echo("warning: --secret is visible to every user of this machine (ps, /proc/PID/cmdline); "
                   f"use --secret-file FILE (mode 600) or the environment variable {SECRET_ENV}", err=True)
    return secret


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (non-loopback needs users and a secret)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    secret_file: Optional[Path] = typer.Option(None, "--secret-file", help=f"File holding the secret keying the token hashes "
                                               f"(16+ characters); or set {SECRET_ENV}."),
    secret: Optional[str] = typer.Option(None, "--secret", help="The secret itself (visible in /proc: prefer --secret-file)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="Host name clients use (repeatable; *.example.org "
                                           "allowed); others get 400. Default: loopback names on loopback, else any."),
    token_hours: Optional[float] = typer.Option(None, "--token-hours", help="Lifetime of a login token (hours, default 12)."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not run an annotation worker thread in the server."),
    demo: bool = typer.Option(False, "--demo", help="Seed user demo/demo and demo projects with the bundled samples (loopback only)."),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", help="Largest upload, mask or draft body in MiB "
                                                  "(default 512)."),
    max_image_mb: Optional[float] = typer.Option(None, "--max-image-mb", help="Largest voxel data one uploaded image may "
                                                 "declare, in MiB (default 1024)."),
    job_delay: Optional[float] = typer.Option(None, "--job-delay", help="FOR TESTS: seconds a worker waits before each job."),
) -> None:
    """Run the review server (API at /api, docs at /docs, review page at /)."""
    import os

    import uvicorn
    from sqlalchemy import func, select

    from medannot.server import accounts
    from medannot.server.app import create_app
    from medannot.server.demo import DEMO_PASSWORD, DEMO_USER, seed_demo
    from medannot.server.files import BlobStore
    from medannot.server.models import User

    os.umask(0o077)  # everything the server creates (database, blobs, exports, temporary files) is its user's only
    settings = _settings(data, db, host=host, port=port, secret=_read_secret(secret, secret_file), demo=demo,
                         max_upload_bytes=int(max_upload_mb * 1024**2) if max_upload_mb else None,
                         max_image_bytes=int(max_image_mb * 1024**2) if max_image_mb else None,
                         job_delay_seconds=job_delay, token_hours=token_hours, allowed_hosts=allowed_host or None,
                         tls_cert=tls_cert, tls_key=tls_key)
    database = _database(data, db)
    with database.read() as s:
        users = int(s.scalar(select(func.count(User.id))) or 0)
        demo_user = accounts.check_password(s, DEMO_USER, DEMO_PASSWORD) if not settings.on_loopback else None
    settings.check_exposure(users)
    if not settings.on_loopback:
        if tls_cert is None:
            _warn(f"serving plain HTTP on {host}: tokens and images cross the network unencrypted; "
                  "use --tls-cert/--tls-key or a TLS reverse proxy")
        if not allowed_host:
            _warn("any Host header is accepted; pass --allowed-host NAME (the name clients use) to refuse others")
        if demo_user is not None:
            _warn(f"user {DEMO_USER} still has the demo password; it cannot log in off loopback "
                  f"(`medannot users passwd {DEMO_USER}` or `medannot users delete {DEMO_USER}`)")
    if demo and seed_demo(database, BlobStore(data)):
        typer.echo(f"demo: user {DEMO_USER}/{DEMO_PASSWORD}, projects demo-brain and demo-nuclei (being annotated by the worker)")
    database.dispose()
    app = create_app(settings, start_worker=not no_worker)
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls_cert else "http"
    typer.echo(f"medannot server on {scheme}://{shown}:{port}/ (API docs /docs; data {data}; database "
               f"{settings.database_url.split('://')[0]})")
    uvicorn.run(app, host=host, port=port, log_level="warning", ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None)


def worker(
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    once: bool = typer.Option(False, "--once", help="Run at most one job, then exit."),
    lease_seconds: Optional[float] = typer.Option(None, "--lease-seconds", help="Lease of a claimed job without heartbeat (s, default 60)."),
    heartbeat_seconds: Optional[float] = typer.Option(None, "--heartbeat-seconds", help="Lease renewal period (s, default 5)."),
    poll_seconds: Optional[float] = typer.Option(None, "--poll-seconds", help="Idle wait between looks for a job (s, default 1)."),
    job_delay: Optional[float] = typer.Option(None, "--job-delay", help="FOR TESTS: seconds to wait (heartbeating) before each job."),
    max_attempts: Optional[int] = typer.Option(None, "--max-attempts", help="Tries per job, failures and dead workers "
                                               "counted alike (default 3); then the job is failed with the reason."),
) -> None:
    """Run annotation jobs from the queue until interrupted."""
    import logging
    import os

    from medannot.server.worker import Worker

    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    settings = _settings(data, db, lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds, poll_seconds=poll_seconds,
                         job_delay_seconds=job_delay, max_attempts=max_attempts)
    w = Worker(settings, _database(data, db))
    typer.echo(f"worker {w.name} waiting for jobs", err=True)
    try:
        if once:
            w.run_once()
        else:
            w.run_forever()
    finally:
        w.close()


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password (10+ characters)", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin."),
    admin: bool = typer.Option(False, "--admin", help="Site admin: creates projects and users, sees everything."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Create a user (the password, 10-256 characters, is read from stdin or asked for)."""
    from medannot.server import accounts, store

    password = _new_password(password_stdin)
    with _database(data, db).write() as s:
        user = accounts.add_user(s, name, password, admin, _settings(data, db).password_policy())
        store.audit(s, None, "add_user", detail={"username": user.username, "is_admin": admin}, actor="cli")
        typer.echo(f"user {user.username} created (id {user.id}{', site admin' if admin else ''})")


@users_app.command("passwd")
def users_passwd(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from the first line of stdin."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Set a user's password; every token of that user is revoked at once."""
    from medannot.server import accounts, store

    password = _new_password(password_stdin)
    with _database(data, db).write() as s:
        user = accounts.get_user(s, name)
        revoked = accounts.set_password(s, user, password, _settings(data, db).password_policy())
        store.audit(s, None, "set_password", detail={"username": user.username, "tokens_revoked": revoked}, actor="cli")
    typer.echo(f"password of {name} changed; {revoked} token(s) revoked")


def _set_disabled(name: str, disabled: bool, data: Path, db: Optional[str]) -> None:
    from medannot.server import accounts, store

    with _database(data, db).write() as s:
        user = accounts.get_user(s, name)
        revoked = accounts.set_disabled(s, user, disabled)
        store.audit(s, None, "disable_user" if disabled else "enable_user",
                    detail={"username": user.username, "tokens_revoked": revoked}, actor="cli")
    typer.echo(f"user {name} {'disabled' if disabled else 'enabled'}" + (f"; {revoked} token(s) revoked" if disabled else ""))


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="User name."),
                  data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
                  db: Optional[str] = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Disable a user: it cannot log in and all of its tokens are revoked at once."""
    _set_disabled(name, True, data, db)


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="User name."),
                 data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
                 db: Optional[str] = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Enable a disabled user again."""
    _set_disabled(name, False, data, db)


@users_app.command("delete")
def users_delete(name: str = typer.Argument(..., help="User name."),
                 data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
                 db: Optional[str] = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Delete a user with its tokens, memberships and drafts (its versions and audit entries stay)."""
    from medannot.server import accounts, store

    with _database(data, db).write() as s:
        user = accounts.get_user(s, name)
        uid = user.id
        accounts.delete_user(s, user)
        store.audit(s, None, "delete_user", detail={"username": name, "user_id": uid}, actor="cli")
    typer.echo(f"user {name} deleted")


@users_app.command("list")
def users_list(data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
               db: Optional[str] = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """List users (name, id, site admin, disabled)."""
    from sqlalchemy import select

    from medannot.server.models import User

    with _database(data, db).read() as s:
        for u in s.scalars(select(User).order_by(User.id)):
            flags = ", ".join(f for f, on in (("site admin", u.is_admin), ("disabled", u.disabled)) if on)
            typer.echo(f"{u.username}\t(id {u.id}{', ' + flags if flags else ''})")


@projects_app.command("add")
def projects_add(
    name: str = typer.Argument(..., help="Project name."),
    model: Optional[str] = typer.Option(None, "--model", help="Bundled model, bundle folder, or classical method (e.g. otsu); "
                                         "leave it out to start from nothing (then give --labels)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="'1=grey matter,2=white matter' (default: the model's labels)."),
    member: list[str] = typer.Option([], "--member", help="USER=ROLE (admin, annotator, reviewer); repeatable."),
    setting: list[str] = typer.Option([], "--set", help="Learning setting KEY=VALUE (e.g. retrain_every=10, strategy=uncertainty, "
                                      "engine=growcut, gate.max_label_drop=0.02, recipe.time_budget_s=300); repeatable."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Create a project with a label map, a model (or none: it learns from its accepted cases) and members."""
    from sqlalchemy import select

    from medannot.errors import InputError
    from medannot.server import store
    from medannot.server.cli_learning import parse_settings_options
    from medannot.server.models import User

    with _database(data, db).write() as s:
        project = store.add_project(s, name, model, labels, parse_settings_options(setting) or None)
        for item in member:
            username, _, role = item.partition("=")
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise InputError(f"--member {item!r}: no user {username!r}; add it with `medannot users add`")
            store.set_member(s, project, user, role)
        typer.echo(f"project {project.name} created (id {project.id}, model {project.model or 'none: learns from its accepted cases'}, "
                   f"labels {', '.join(str(lab['value']) + '=' + lab['name'] for lab in project.labels)})")


@projects_app.command("member")
def projects_member(
    project: str = typer.Argument(..., help="Project name."),
    username: str = typer.Argument(..., help="User name."),
    role: str = typer.Argument(..., help="admin, annotator or reviewer."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Give a user a role in a project."""
    from sqlalchemy import select

    from medannot.errors import InputError
    from medannot.server import store
    from medannot.server.models import Project, User

    with _database(data, db).write() as s:
        p = s.scalar(select(Project).where(Project.name == project))
        u = s.scalar(select(User).where(User.username == username))
        if p is None or u is None:
            raise InputError(f"no project {project!r}" if p is None else f"no user {username!r}")
        store.set_member(s, p, u, role)
        store.audit(s, None, "set_member", p.id, detail={"username": username, "role": role}, actor="cli")
        typer.echo(f"{username} is {role} of {project}")


@projects_app.command("remove-member")
def projects_remove_member(
    project: str = typer.Argument(..., help="Project name."),
    username: str = typer.Argument(..., help="User name."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Take a user out of a project (its versions stay)."""
    from sqlalchemy import select

    from medannot.errors import InputError
    from medannot.server import accounts, store
    from medannot.server.models import Project

    with _database(data, db).write() as s:
        p = s.scalar(select(Project).where(Project.name == project))
        if p is None:
            raise InputError(f"no project {project!r}")
        user = accounts.get_user(s, username)
        if not accounts.remove_member(s, p, user):
            raise InputError(f"{username} is not a member of {project}")
        store.audit(s, None, "remove_member", p.id, detail={"username": username}, actor="cli")
    typer.echo(f"{username} removed from {project}")


@projects_app.command("demo")
def projects_demo(data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
                  db: Optional[str] = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Seed the demo user (demo/demo) and demo projects; a worker then annotates them."""
    from medannot.server.demo import seed_demo
    from medannot.server.files import BlobStore

    seeded = seed_demo(_database(data, db), BlobStore(data))
    typer.echo("demo seeded: user demo/demo" if seeded else "demo exists already")


def register(app: typer.Typer, friendly_errors) -> None:  # noqa: ANN001
    """Add the server commands to the ``medannot`` Typer app, wrapped in its ``friendly_errors``."""
    app.command("serve")(friendly_errors(serve))
    app.command("worker")(friendly_errors(worker))
    from medannot.server import cli_learning

    cli_learning.add_commands(projects_app)
    app.command("simulate")(friendly_errors(cli_learning.simulate))
    for sub in (users_app, projects_app):
        for cmd in sub.registered_commands:
            cmd.callback = friendly_errors(cmd.callback)
    app.add_typer(users_app, name="users")
    app.add_typer(projects_app, name="projects")
