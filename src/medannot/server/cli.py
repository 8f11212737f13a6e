"""CLI commands of the server: ``medannot serve``, ``medannot worker``, ``medannot users``, ``medannot projects``.

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
    from medannot.server.settings import ServerSettings

    return ServerSettings(data_dir=data, db_url=db, **{k: v for k, v in kw.items() if v is not None})


def _database(data: Path, db: Optional[str]):  # noqa: ANN202
    from medannot.server.db import Database

    settings = _settings(data, db)
    data.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    database.migrate()
    return database


def _read_secret(secret: Optional[str], secret_file: Optional[Path]) -> Optional[str]:
    from medannot.errors import ConfigError

    if secret_file is not None:
        try:
            value = secret_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the secret file ({exc.strerror})", secret_file) from None
        if len(value) < 16:
            raise ConfigError("the secret is shorter than 16 characters; use e.g. `openssl rand -hex 32`", secret_file)
        return value
    if secret is not None and len(secret) < 16:
        raise ConfigError("--secret is shorter than 16 characters; use e.g. `openssl rand -hex 32`")
    return secret


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (non-loopback needs users and --secret)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    secret: Optional[str] = typer.Option(None, "--secret", help="Secret keying the token hashes (16+ characters)."),
    secret_file: Optional[Path] = typer.Option(None, "--secret-file", help="File holding the secret."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not run an annotation worker thread in the server."),
    demo: bool = typer.Option(False, "--demo", help="Seed user demo/demo and demo projects with the bundled samples (loopback only)."),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", help="Largest request body in MiB (default 512)."),
    job_delay: Optional[float] = typer.Option(None, "--job-delay", help="FOR TESTS: seconds a worker waits before each job."),
) -> None:
    """Run the review server (API at /api, docs at /docs, review page at /)."""
    import uvicorn
    from sqlalchemy import func, select

    from medannot.server.app import create_app
    from medannot.server.demo import DEMO_PASSWORD, DEMO_USER, seed_demo
    from medannot.server.files import BlobStore
    from medannot.server.models import User

    settings = _settings(data, db, host=host, port=port, secret=_read_secret(secret, secret_file), demo=demo,
                         max_upload_bytes=int(max_upload_mb * 1024**2) if max_upload_mb else None, job_delay_seconds=job_delay)
    database = _database(data, db)
    with database.read() as s:
        users = int(s.scalar(select(func.count(User.id))) or 0)
    settings.check_exposure(users)
    if demo and seed_demo(database, BlobStore(data)):
        typer.echo(f"demo: user {DEMO_USER}/{DEMO_PASSWORD}, projects demo-brain and demo-nuclei (being annotated by the worker)")
    database.dispose()
    app = create_app(settings, start_worker=not no_worker)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"medannot server on http://{shown}:{port}/ (API docs /docs; data {data}; database {settings.database_url.split('://')[0]})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def worker(
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    once: bool = typer.Option(False, "--once", help="Run at most one job, then exit."),
    lease_seconds: Optional[float] = typer.Option(None, "--lease-seconds", help="Lease of a claimed job without heartbeat (s, default 60)."),
    heartbeat_seconds: Optional[float] = typer.Option(None, "--heartbeat-seconds", help="Lease renewal period (s, default 5)."),
    poll_seconds: Optional[float] = typer.Option(None, "--poll-seconds", help="Idle wait between looks for a job (s, default 1)."),
    job_delay: Optional[float] = typer.Option(None, "--job-delay", help="FOR TESTS: seconds to wait (heartbeating) before each job."),
) -> None:
    """Run annotation jobs from the queue until interrupted."""
    import logging

    from medannot.server.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    settings = _settings(data, db, lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds, poll_seconds=poll_seconds,
                         job_delay_seconds=job_delay)
    w = Worker(settings, _database(data, db))
    typer.echo(f"worker {w.name} waiting for jobs", err=True)
    try:
        if once:
            w.run_once()
        else:
            w.run_forever()
    finally:
        w.close()


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin."),
    admin: bool = typer.Option(False, "--admin", help="Site admin: creates projects and users, sees everything."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Create a user (the password is read from stdin or asked for)."""
    from medannot.server import store

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else typer.prompt("password", hide_input=True,
                                                                                        confirmation_prompt=True)
    with _database(data, db).write() as s:
        user = store.add_user(s, name, password, admin)
        typer.echo(f"user {user.username} created (id {user.id}{', site admin' if admin else ''})")


@projects_app.command("add")
def projects_add(
    name: str = typer.Argument(..., help="Project name."),
    model: str = typer.Option(..., "--model", help="Bundled model, bundle folder, or classical method (e.g. otsu)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="'1=grey matter,2=white matter' (default: the model's labels)."),
    member: list[str] = typer.Option([], "--member", help="USER=ROLE (admin, annotator, reviewer); repeatable."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Create a project with a label map, a model and members."""
    from sqlalchemy import select

    from medannot.errors import InputError
    from medannot.server import store
    from medannot.server.models import User

    with _database(data, db).write() as s:
        project = store.add_project(s, name, model, labels)
        for item in member:
            username, _, role = item.partition("=")
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise InputError(f"--member {item!r}: no user {username!r}; add it with `medannot users add`")
            store.set_member(s, project, user, role)
        typer.echo(f"project {project.name} created (id {project.id}, model {project.model}, "
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
        typer.echo(f"{username} is {role} of {project}")


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
    for sub in (users_app, projects_app):
        for cmd in sub.registered_commands:
            cmd.callback = friendly_errors(cmd.callback)
    app.add_typer(users_app, name="users")
    app.add_typer(projects_app, name="projects")
