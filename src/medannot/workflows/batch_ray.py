"""Batch annotation on a Ray cluster: the same cases, folders and one-line failures as :func:`annotate_inputs`.

Each Ray worker is an actor that loads the model once and keeps it; the driver discovers the inputs (names and
paths only, nothing is read) and keeps at most ``workers x in_flight`` cases in the cluster at a time, so an archive
of any size never sits in memory. A worker writes its case folder itself, atomically (input and output folders must
be visible to every node at the same paths, e.g. one network file system), and returns only the small
:class:`~medannot.workflows.annotate.CaseResult`. A re-run skips the cases whose folder is complete (same model and
settings), so a run killed at any point is resumed by running it again. A worker process that dies mid-case (killed,
out of memory, its node lost) is restarted by Ray, loads the model again, and the case it held is tried again (up
to ``retries`` times, then it fails with a one-line reason); the run goes on with the other workers meanwhile.

Ray is imported only here; ``medannot annotate`` without ``--ray`` never imports it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from tqdm.auto import tqdm

from medannot.errors import ConfigError
from medannot.tasks import CasePredictor
from medannot.workflows.annotate import CaseResult, CaseStep, completed_case, plan_batch

__all__ = ["RayBatch", "RaySettings", "annotate_on_ray"]

PredictorFactory = Callable[[], CasePredictor]


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a Ray batch runs.

    Attributes:
        address: ``local`` (a private Ray instance on this machine, stopped at the end), ``auto`` (the cluster that
            ``ray start --head`` runs on this machine), or an existing cluster's ``HOST:PORT`` / ``ray://HOST:10001``.
        workers: Actors (each holds one copy of the model); None: the cluster's CPUs divided by ``threads``.
        threads: PyTorch threads of each actor, and the CPUs Ray reserves for it.
        in_flight: Cases queued per worker (at most ``workers x in_flight`` cases are out in the cluster).
        retries: Times a case is tried again after its worker died (0: never).
        object_store_mb: Object store of a ``local`` instance (only small results travel through it).
    """

    address: str = "local"
    workers: int | None = None
    threads: int = 1
    in_flight: int = 2
    retries: int = 2
    object_store_mb: int = 256

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1 or self.threads < 1 or self.in_flight < 1 or self.retries < 0:
            raise ConfigError(f"Ray workers ({self.workers}), threads ({self.threads}) and in-flight cases ({self.in_flight}) must be 1 or "
                              f"more and retries ({self.retries}) 0 or more")


class _Annotator:
    """A Ray actor: the model, loaded once; annotates the cases it is handed."""

    def __init__(self, factory: PredictorFactory, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.predictor = factory()

    def ready(self) -> tuple[int, Any]:
        """This worker's process id and the predictor's provenance (model, version, weights, settings)."""
        return os.getpid(), self.predictor.provenance({})

    def annotate(self, item: Any, step: CaseStep) -> CaseResult:
        """One case into its folder (never raises for a bad input)."""
        return step(item, self.predictor)

    def finish(self, out_dir: str, annotations: Sequence[tuple[str, Any]]) -> list[Path]:
        """The predictor's batch-level files (e.g. ``classifications.csv``)."""
        return self.predictor.finish(Path(out_dir), annotations)


@dataclass
class _Worker:
    handle: Any
    pid: int = 0
    busy: dict[Any, int] = field(default_factory=dict)  # object ref -> item index
    alive: bool = True


class RayBatch:
    """One batch run on Ray (see the module docstring); :func:`annotate_on_ray` is the one-call form.

    Args:
        factory: Makes the predictor inside each worker (picklable, e.g. ``functools.partial(load_predictor, "nuclei")``).
        settings: Where and how wide.

    Attributes:
        retried: Names of the cases that were tried again after their worker died (one entry per retry).
        timings: Seconds of the last run: ``startup`` (connect, start the workers, load the models, discover the
            inputs) and ``cases`` (first case sent to last result back).
    """

    def __init__(self, factory: PredictorFactory, settings: RaySettings | None = None) -> None:
        self.factory = factory
        self.settings = settings or RaySettings()
        self.retried: list[str] = []
        self.timings: dict[str, float] = {}
        self._workers: list[_Worker] = []

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (as last reported)."""
        return [w.pid for w in self._workers if w.alive]

    def run(self, input_path: str | Path, out_dir: str | Path, on_case: Callable[[CaseResult], None] | None = None,
            formats: Sequence[str] = ("nifti",), pacs_settings: Any = None, on_batch_files: Callable[[list[Path]], None] | None = None,
            progress: bool = True, record_machine: bool = False) -> list[CaseResult]:
        """Annotate everything under ``input_path`` into ``out_dir/<case>/``, resuming where an earlier run stopped.

        Args:
            input_path: As for :func:`medannot.workflows.annotate.annotate_inputs` (a folder, a dataset, a DICOMweb study).
            out_dir: Output root, on a file system every node sees at the same path.
            on_case: Called in the driver after each case (in completion order).
            formats: Formats of each case folder (as ``annotate_inputs``).
            pacs_settings: For DICOMweb addresses (de-identification on ingest is not supported on Ray).
            on_batch_files: Called with the batch-level files written after the last case.
            progress: Show a progress bar over all cases.
            record_machine: Record the computer's and user's names in each ``annotation.json``.

        Returns:
            One :class:`CaseResult` per discovered input, in input order (``resumed`` for those skipped).

        Raises:
            ConfigError: Ray missing or the cluster unreachable; de-identification asked. InputError: no input.
        """
        if pacs_settings is not None and getattr(pacs_settings, "deidentify", False):
            raise ConfigError("--deid is not supported with --ray (each worker would need the same pseudonym map); "
                              "de-identify first (medannot deid), or annotate without --ray")
        ray = _import_ray()
        start = time.perf_counter()
        out = Path(out_dir).resolve()
        with _ray_session(ray, self.settings) as cluster_cpus:
            n = self.settings.workers or max(1, int(cluster_cpus // self.settings.threads))
            remote = ray.remote(num_cpus=self.settings.threads, max_restarts=self.settings.retries, max_task_retries=0)(_Annotator)
            self._workers = [_Worker(remote.remote(self.factory, self.settings.threads)) for _ in range(n)]
            ready = ray.get([w.handle.ready.remote() for w in self._workers])  # every model loaded
            for w, (pid, _) in zip(self._workers, ready, strict=True):
                w.pid = pid
            model = ready[0][1]  # the model's provenance: the formats are checked against its task before anything is read
            items, step = plan_batch(input_path, cast(CasePredictor, _TaskOnly(model.task)), formats, pacs_settings, out_dir=out, record_machine=record_machine)
            reference = step.reference(model)
            ready_at = time.perf_counter()
            results = self._dispatch(ray, items, step, reference, on_case, progress)
            self.timings = {"startup": ready_at - start, "cases": time.perf_counter() - ready_at}
            done = [(r.name, r.annotation) for r in results if r.ok and r.annotation is not None]
            live = [w for w in self._workers if w.alive]
            if live:
                files = ray.get(live[0].handle.finish.remote(str(out), done))
                if on_batch_files is not None and files:
                    on_batch_files(files)
            for w in self._workers:
                ray.kill(w.handle)
        return results

    def _dispatch(self, ray: Any, items: list[Any], step: CaseStep, reference: Any, on_case: Callable[[CaseResult], None] | None,
                  progress: bool) -> list[CaseResult]:
        results: dict[int, CaseResult] = {}
        bar = tqdm(total=len(items), desc="cases", unit="case", disable=not progress)

        def settle(index: int, result: CaseResult) -> None:
            results[index] = result
            bar.update(1)
            if on_case is not None:
                on_case(result)

        pending: list[int] = []
        for i, item in enumerate(items):
            resumed = completed_case(step.out_dir, item.name, reference)
            if resumed is not None:
                settle(i, resumed)
            else:
                pending.append(i)
        pending.reverse()  # pop() from the end keeps input order
        attempts: dict[int, int] = {}
        limit = self.settings.in_flight
        try:
            while pending or any(w.busy for w in self._workers):
                live = [w for w in self._workers if w.alive]
                if not live:
                    for i in reversed(pending):
                        settle(i, CaseResult(items[i].name, False, reason=f"{items[i].name}: no Ray worker left alive (every worker died "
                                                                           f"{self.settings.retries + 1} times); check the workers' memory and logs"))
                    pending.clear()
                    break
                for w in sorted(live, key=lambda w: len(w.busy)):
                    while pending and len(w.busy) < limit:
                        i = pending.pop()
                        w.busy[w.handle.annotate.remote(items[i], step)] = i
                refs = [ref for w in self._workers for ref in w.busy]  # a dead worker's refs resolve to errors too
                if not refs:
                    continue
                ready, _ = ray.wait(refs, num_returns=1)
                for ref in ready:
                    w = next(w for w in self._workers if ref in w.busy)
                    i = w.busy.pop(ref)
                    try:
                        settle(i, ray.get(ref))
                    except ray.exceptions.RayActorError as exc:
                        attempts[i] = attempts.get(i, 0) + 1
                        if w.alive and not _restarting(ray, w):
                            w.alive = False
                        if attempts[i] > self.settings.retries:
                            settle(i, CaseResult(items[i].name, False, reason=f"{items[i].name}: its Ray worker died {attempts[i]} times "
                                                                              f"on it ({type(exc).__name__}); check memory and the worker logs"))
                        else:
                            self.retried.append(items[i].name)
                            pending.append(i)  # next in line
                    except ray.exceptions.RayError as exc:  # e.g. a result that cannot be sent back
                        settle(i, CaseResult(items[i].name, False, reason=f"{items[i].name}: {type(exc).__name__}: {exc}".splitlines()[0]))
        finally:
            bar.close()
        return [results[i] for i in range(len(items))]


def _restarting(ray: Any, worker: _Worker, wait_s: float = 300.0) -> bool:
    """Whether Ray brings the actor back (it has restarts left): ask it until it answers (and learn its new process id).

    False when the actor is dead for good (restarts used up) or has not come back within ``wait_s`` seconds.
    """
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            worker.pid = ray.get(worker.handle.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))[0]
            return True
        except ray.exceptions.ActorUnavailableError:  # restarting: ask again
            time.sleep(0.5)
        except ray.exceptions.RayError:
            return False
    return False


@dataclass(frozen=True)
class _TaskOnly:
    """What the format check of :func:`plan_batch` needs of a predictor: its task (the model lives in the workers)."""

    task: Any


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'medannot[ray]'") from None
    return ray


@contextlib.contextmanager
def _ray_session(ray: Any, settings: RaySettings) -> Iterator[float]:
    """Connect to (or start) Ray, yield the cluster's CPU count, and disconnect (stopping a ``local`` instance)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no accelerators used; silences Ray's FutureWarning
    owned = not ray.is_initialized()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # Ray's own handles of its child processes and of /dev/null
        if owned:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                if settings.address == "local":
                    cpus = (settings.workers or (os.cpu_count() or 1)) * settings.threads
                    ray.init(num_cpus=cpus, object_store_memory=settings.object_store_mb * 2**20, **kwargs)
                else:
                    ray.init(address=settings.address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {settings.address!r} ({str(exc).splitlines()[0]}); start one with "
                                  "`ray start --head`, or use --ray local") from None
        try:
            yield float(ray.cluster_resources().get("CPU", 1.0))
        finally:
            if owned:
                ray.shutdown()
            gc.collect()


def annotate_on_ray(input_path: str | Path, factory: PredictorFactory, out_dir: str | Path, settings: RaySettings | None = None,
                    **options: Any) -> list[CaseResult]:
    """Annotate ``input_path`` on Ray: :meth:`RayBatch.run` with a new :class:`RayBatch` (``options`` as there)."""
    return RayBatch(factory, settings).run(input_path, out_dir, **options)
