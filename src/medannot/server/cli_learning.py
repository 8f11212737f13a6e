"""CLI of the learning loop: ``medannot projects train / models / activate / settings / repropose`` and ``medannot simulate``.

The ``projects`` commands work on the server's database and data folder directly (like ``projects add``); a training
round queued here is run by any worker (``medannot worker``, or the one in ``medannot serve``), or at once in this
process with ``train --wait``. Heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from medannot.server.cli import DATA_HELP, DB_HELP, _database, _settings


def parse_settings_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` learning settings (dotted keys for sections: ``gate.min_gain=0.01``); values read as JSON when
    they parse (numbers, booleans, lists), else as text.

    Raises:
        InputError: An item without ``=``.
    """
    from medannot.errors import InputError

    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. retrain_every=10 or gate.min_gain=0.01")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, last = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _open(data: Path, db: Optional[str]) -> tuple[Any, Any]:
    return _database(data, db), _settings(data, db)


def _project(s: Any, name: str) -> Any:
    from sqlalchemy import select

    from medannot.errors import InputError
    from medannot.server.models import Project

    project = s.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise InputError(f"no project {name!r}; `medannot projects add` creates one")
    return project


def train(
    project: str = typer.Argument(..., help="Project name."),
    wait: bool = typer.Option(False, "--wait", help="Run the round in this process now (else a worker runs it)."),
    note: str = typer.Option("", "--note", help="Why (kept with the version as its trigger)."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Queue a training round on the project's accepted cases (fine-tuned from the active model, gated, stored)."""
    from medannot.server import learning, store

    database, settings = _open(data, db)
    with database.write() as s:
        p = _project(s, project)
        job = learning.queue_training(s, p, None, "cli" + (f": {note}" if note else ""))
        job_id, message = job.id, job.message
        store.audit(s, None, "queue_training_cli", p.id, detail={"job_id": job.id}, actor="cli")
    typer.echo(f"job {job_id}: {message}")
    if not wait:
        typer.echo("a worker runs it (`medannot worker` or the one in `medannot serve`); `medannot projects models` shows the result")
        return
    from medannot.server import jobs as queue
    from medannot.server.models import Job
    from medannot.server.worker import Worker

    worker = Worker(settings, database, name="cli-train")
    try:
        while True:
            with database.read() as s:
                state = s.get(Job, job_id)
                if state is not None and state.state in ("done", "failed"):
                    typer.echo(f"job {job_id} {state.state}: {state.message}")
                    if state.state == "failed":
                        raise typer.Exit(1)
                    return
            if worker.run_once() is None:
                with database.read() as s:
                    typer.echo(f"job {job_id}: {queue.job_json(s.get(Job, job_id))['state']} by another worker; waiting", err=True)
                import time

                time.sleep(2)
    finally:
        worker.close()


def models(
    project: str = typer.Argument(..., help="Project name."),
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """List the project's model versions: status, validation Dice, the gate's reason, cases, trigger."""
    from sqlalchemy import select

    from medannot.server import learning
    from medannot.server.models import ModelVersion

    database, _ = _open(data, db)
    with database.read() as s:
        p = _project(s, project)
        rows = [learning.version_json(v, p.active_version_id) for v in
                s.scalars(select(ModelVersion).where(ModelVersion.project_id == p.id).order_by(ModelVersion.number))]
        base = p.model or "none"
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"project {project}: base model {base}; proposing "
               f"{next((r['name'] for r in rows if r['active']), base if base != 'none' else 'nothing (no model yet)')}")
    if not rows:
        typer.echo("no trained version yet: accept cases, then `medannot projects train`")
        return
    typer.echo(f"{'version':8}{'status':10}{'val Dice':>9}{'active had':>11}  {'train/val':10}{'trigger':28}gate")
    for r in rows:
        mine, theirs = r["validation"]["mean_dice"], (r["gate"]["active"] or {}).get("mean_dice")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        mark = "*" if r["active"] else " "
        typer.echo(f"{mark}{r['name']:7}{r['status']:10}{fmt(mine):>9}{fmt(theirs):>11}  "
                   f"{len(r['train_cases'])}/{len(r['val_cases']):<8}{r['trigger'][:27]:28}{(r['gate']['reason'] or '')[:70]}")


def activate(
    project: str = typer.Argument(..., help="Project name."),
    version: str = typer.Argument(..., help="Version (3 or v3), or 'base' for the project's base model."),
    reason: str = typer.Option("", "--reason", help="Why (audited)."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Make a version the model that proposes (roll back or forward); unreviewed cases are proposed again."""
    from medannot.errors import InputError
    from medannot.server import learning

    database, settings = _open(data, db)
    with database.write() as s:
        p = _project(s, project)
        chosen = None if version.strip().lower() == "base" else learning.find_version(s, p, version)
        if chosen is None and not p.model:
            raise InputError(f"project {project!r} has no base model to go back to; activate one of its versions")
        jobs = learning.activate(s, p, chosen, settings.data_dir, None, reason or "cli")
        name = f"v{chosen.number}" if chosen else p.model
    typer.echo(f"{project}: {name} proposes now; {len(jobs)} unreviewed case(s) queued for new proposals")


def settings_command(
    project: str = typer.Argument(..., help="Project name."),
    setting: list[str] = typer.Option([], "--set", help="KEY=VALUE (e.g. retrain_every=10, strategy=uncertainty, "
                                      "engine=growcut, gate.min_gain=0.01, recipe.epochs=8); repeatable. None: show them."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Show or change the project's learning settings."""
    from medannot.server import learning, store

    database, _ = _open(data, db)
    with database.write() as s:
        p = _project(s, project)
        if setting:
            updates = parse_settings_options(setting)
            current = learning.set_settings(p, updates)
            store.audit(s, None, "set_learning", p.id, detail={"changed": sorted(updates)}, actor="cli")
        else:
            current = learning.learning_settings(p)
    typer.echo(json.dumps(current.model_dump(mode="json"), indent=2))


def repropose(
    project: str = typer.Argument(..., help="Project name."),
    data: Path = typer.Option(Path("medannot_data"), "--data", help=DATA_HELP),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Queue new proposals, with the model that proposes now, for the cases nobody has edited yet."""
    from medannot.server import learning

    database, settings = _open(data, db)
    with database.write() as s:
        jobs = learning.repropose(s, _project(s, project), settings.data_dir)
    typer.echo(f"{len(jobs)} case(s) queued for new proposals")


def add_commands(projects_app: typer.Typer) -> None:
    """Add the learning commands to ``medannot projects``."""
    projects_app.command("train")(train)
    projects_app.command("models")(models)
    projects_app.command("activate")(activate)
    projects_app.command("settings")(settings_command)
    projects_app.command("repropose")(repropose)


def simulate(
    dataset: Path = typer.Argument(..., help="Labelled dataset: an MSD / nnU-Net v2 folder (dataset.json) or a folder with "
                                   "images/ and labels/ (files of the same name); 2D PNG/TIFF or 3D NIfTI."),
    out: Path = typer.Option(..., "--out", help="Output folder: cases.csv, curve.csv, summary.json/.md, report.html, plots."),
    strategy: list[str] = typer.Option([], "--strategy", help="random, uncertainty, diversity or mix; repeatable "
                                       "(default: random, uncertainty and diversity). 'no learning' always runs."),
    retrain_every: int = typer.Option(8, "--retrain-every", help="Accepted cases between training rounds."),
    holdout: float = typer.Option(0.25, "--holdout", help="Share of the cases held out to measure the learning curve."),
    max_cases: Optional[int] = typer.Option(None, "--max-cases", help="Review at most this many cases (default: all)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Promptable engine of the simulated clicks (default auto: the default engine of the data's dimensionality, GrowCut unless a bundled network measured better)."),
    target: float = typer.Option(0.90, "--target-dice", help="Dice the simulated annotator reaches with clicks."),
    setting: list[str] = typer.Option([], "--set", help="Learning setting KEY=VALUE (recipe.epochs=3, gate.min_gain=0, "
                                      "val_fraction=0.2, min_cases=3 ...); repeatable."),
    no_full: bool = typer.Option(False, "--no-full-data", help="Skip the full-data reference model (use the best final Dice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split, the random order and the rounds."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress lines."),
) -> None:
    """Run the learning loop with a simulated annotator: per-case effort, learning curves, labels to 95 %, effort saved."""
    from medannot.workflows.learning.settings import parse_settings
    from medannot.workflows.learning.simulate import SimulationOptions, simulation_recipe
    from medannot.workflows.learning.simulate import simulate as run

    updates = parse_settings_options(setting)
    recipe = simulation_recipe().model_dump(mode="json")
    updates["recipe"] = {**recipe, **updates.get("recipe", {})}
    if engine:
        updates["engine"] = engine
    options = SimulationOptions(strategies=strategy or ["random", "uncertainty", "diversity"], retrain_every=retrain_every,
                                holdout_fraction=holdout, max_pool=max_cases, settings=parse_settings(updates),
                                target_dice=target, full_data=not no_full, seed=seed)
    say = None if quiet else (lambda line: typer.echo(line, err=True))
    summary = run(dataset, out, options, say)
    typer.echo((out / "summary.md").read_text(encoding="utf-8") if (out / "summary.md").is_file() else json.dumps(summary))
    if not quiet:
        typer.echo(f"report: {out / 'report.html'}", err=True)
    sys.stdout.flush()
