"""Run ``medannot`` CLI commands on many inputs, each in its own process, with a timeout and an RSS cap.

Starting ``medannot`` costs ~15 s of imports on a busy 2-core machine, so a corpus of 1,000+ files cannot
start one interpreter per run. A *fork server* does what ``multiprocessing``'s forkserver does: one process
imports the CLI and its heavy dependencies once (nothing computed, so no thread pool exists yet), then forks a
child per run. The child is the real command: ``medannot.cli.app(argv)`` with its own stdout/stderr, exit code
and memory; it starts with the resident memory of an imported CLI (~1 GB), as ``medannot`` on a shell does.

The server watches every child: killed past ``timeout_s`` (a hang), killed when its resident set passes
``rss_cap`` (``psutil``, polled every 20 ms), and its peak RSS taken from ``wait4`` (``ru_maxrss``). An
address-space limit (``RLIMIT_AS``) a few GiB above the imports protects the machine from one huge allocation
between two polls (that shows as a ``MemoryError``, i.e. a failure of the run).

``python tests/fuzz/fuzz_harness.py serve`` is the server (JSON lines in, JSON lines out);
:class:`ForkServer` drives it from a test; :func:`judge` says what is wrong with one result.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GIB = 1024**3

#: Peak resident memory no run may pass (bytes).
RSS_CAP = 2 * GIB
#: Seconds after which a run is a hang.
TIMEOUT_S = 10.0
#: Address space a child may add to the server's own (bytes), a guard against one huge allocation.
EXTRA_ADDRESS_SPACE = 6 * GIB


@dataclass
class RunResult:
    """What one run did."""

    id: str
    argv: list[str]
    rc: int | None = None
    signal: int | None = None
    killed: str | None = None  # "timeout" or "rss"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss: int = 0
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- server side


def _preload() -> None:
    """Import what the commands import (nothing is computed, so forking stays safe)."""
    import highdicom  # noqa: F401
    import nibabel  # noqa: F401
    import PIL.Image  # noqa: F401
    import pydicom  # noqa: F401
    import skimage.filters  # noqa: F401
    import tifffile  # noqa: F401

    import medannot.annotations.convert  # noqa: F401
    import medannot.annotations.dicom_seg  # noqa: F401
    import medannot.annotations.rtstruct  # noqa: F401
    import medannot.cli  # noqa: F401
    import medannot.evaluation.runner  # noqa: F401
    import medannot.privacy.batch  # noqa: F401
    import medannot.reporting  # noqa: F401
    import medannot.tasks.segmentation  # noqa: F401
    import medannot.workflows.annotate  # noqa: F401


def _child(job: dict[str, Any], out_path: str, err_path: str, address_limit: int | None) -> None:
    """In the forked child: run the command and leave with its exit code (never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(err, 2)
        with open(out_path + ".rss", "w") as fh:  # resident at the start: inherited pages not yet touched are not counted
            fh.write(str(_vm_rss()))
        if address_limit:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_limit, address_limit))
        os.chdir(job.get("cwd") or os.getcwd())
        import torch

        torch.set_num_threads(1)
        from medannot.cli import app

        try:
            app(list(job["argv"]), prog_name="medannot", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught exception
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _status(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _vm_size() -> int:
    return _status("VmSize")


def _vm_rss() -> int:
    return _status("VmRSS")


def serve(parallel: int, timeout_s: float, rss_cap: int, workdir: Path) -> None:
    """Read jobs (JSON lines) on stdin, run up to ``parallel`` at once, write results (JSON lines) on stdout."""
    import psutil

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _preload()
    address_limit = _vm_size() + EXTRA_ADDRESS_SPACE if _vm_size() else None
    server_rss = _vm_rss()
    workdir.mkdir(parents=True, exist_ok=True)
    started: dict[str, int] = {}

    def untouched(out_path: str) -> int:
        """Server pages the child inherited but never touched: a process started from a shell holds them too."""
        if out_path not in started:
            try:
                started[out_path] = int(Path(out_path + ".rss").read_text())
            except (OSError, ValueError):
                return 0
        return max(0, server_rss - started[out_path])

    print(json.dumps({"ready": True}), flush=True)
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read_jobs() -> None:  # a thread: select() on a buffered stdin misses lines already buffered
        for line in sys.stdin:
            if line.strip():
                inbox.put(json.loads(line))
        inbox.put(None)

    threading.Thread(target=read_jobs, daemon=True).start()
    pending: list[dict[str, Any]] = []
    running: dict[int, dict[str, Any]] = {}
    stdin_open = True
    counter = 0
    while stdin_open or pending or running:
        while stdin_open:
            try:
                item = inbox.get(timeout=None if not (pending or running) else 0.001) if not pending else inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stdin_open = False
            else:
                pending.append(item)
        while pending and len(running) < parallel:
            job = pending.pop(0)
            counter += 1
            n = counter
            out_path, err_path = str(workdir / f"{n}_{os.getpid()}.out"), str(workdir / f"{n}_{os.getpid()}.err")
            pid = os.fork()
            if pid == 0:
                _child(job, out_path, err_path, address_limit)
            try:
                os.setpgid(pid, pid)  # here too: a kill before the child's own setpgid must reach its group
            except OSError:
                pass
            running[pid] = {"job": job, "start": time.monotonic(), "out": out_path, "err": err_path, "killed": None,
                            "proc": psutil.Process(pid), "peak": 0, "untouched": untouched}
        for pid, state in list(running.items()):
            waited, status, usage = os.wait4(pid, os.WNOHANG)
            if waited == 0:
                limit = float(state["job"].get("timeout") or timeout_s)
                try:
                    rss = state["proc"].memory_info().rss
                    for kid in state["proc"].children(recursive=True):
                        rss += kid.memory_info().rss
                except psutil.Error:
                    rss = 0
                state["peak"] = max(state["peak"], rss)
                rss += state["untouched"](state["out"])
                cap = int(state["job"].get("rss_cap") or rss_cap)
                why = "rss" if rss > cap else "timeout" if time.monotonic() - state["start"] > limit else None
                if why and state["killed"] is None:
                    state["killed"] = why
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                continue
            del running[pid]
            peak = max(usage.ru_maxrss * 1024, state["peak"]) + untouched(state["out"])
            result = RunResult(state["job"]["id"], list(state["job"]["argv"]), killed=state["killed"],
                               wall_s=round(time.monotonic() - state["start"], 3), cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
                               max_rss=peak)  # fmt: skip
            if os.WIFEXITED(status):
                result.rc = os.WEXITSTATUS(status)
            else:
                result.signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            started.pop(state["out"], None)
            try:
                os.unlink(state["out"] + ".rss")
            except OSError:
                pass
            for attr, path in (("stdout", state["out"]), ("stderr", state["err"])):
                try:
                    with open(path, "rb") as fh:
                        setattr(result, attr, fh.read(20000).decode("utf-8", "replace"))
                    os.unlink(path)
                except OSError:
                    pass
            try:
                os.killpg(pid, signal.SIGKILL)  # anything the child left behind
            except OSError:
                pass
            print(json.dumps(asdict(result)), flush=True)
        if running:
            time.sleep(0.02)


# ----------------------------------------------------------------------------- client side


class ForkServer:
    """Drive a fork server from a test: ``with ForkServer(tmp) as fs: results = fs.run(jobs)``.

    Args:
        workdir: Folder for the children's stdout/stderr files.
        parallel: Runs at once.
        timeout_s: Default per-run timeout (a job may give its own ``timeout``).
        rss_cap: Children above this resident size are killed (bytes).
    """

    def __init__(self, workdir: Path, parallel: int = 2, timeout_s: float = TIMEOUT_S, rss_cap: int = RSS_CAP) -> None:
        self.workdir, self.parallel, self.timeout_s, self.rss_cap = Path(workdir), parallel, timeout_s, rss_cap
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ForkServer:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default", PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTEST_CURRENT_TEST", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fuzz_harness.py"), "serve", "--parallel", str(self.parallel), "--timeout", str(self.timeout_s),
             "--rss-cap", str(self.rss_cap), "--workdir", str(self.workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first or not json.loads(first).get("ready"):
            raise RuntimeError(f"fork server did not start: {first!r}")
        return self

    def run(self, jobs: list[dict[str, Any]]) -> list[RunResult]:
        """Run ``jobs`` (``{"id", "argv", "cwd"?, "timeout"?, "rss_cap"?}``); results in job order."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        for job in jobs:
            self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        got: dict[str, RunResult] = {}
        while len(got) < len(jobs):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("fork server exited early")
            data = json.loads(line)
            got[data["id"]] = RunResult(**data)
        return [got[j["id"]] for j in jobs]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


# ----------------------------------------------------------------------------- judging

_RAW_EXCEPTION = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b(?!\()|autodetected range|\bnan\b.*\bnot finite\b")
_LIBRARY_WARNING = re.compile(r"\b[A-Z][A-Za-z]*Warning\b|^\s*warnings\.warn\(", re.MULTILINE)
ACCEPTED_RC = (0, 2)


def _without_paths(line: str, names: tuple[str, ...]) -> str:
    """An error line without the paths and input names it quotes (``ipp-nan.dcm`` is no raw ``nan`` text)."""
    for name in sorted(names, key=len, reverse=True):
        if name:
            line = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", "", line)
    return re.sub(r"\S*/\S*", "", line)


def judge(result: RunResult, expect: str, names: tuple[str, ...]) -> list[str]:
    """What is wrong with one run (an empty list when nothing).

    Args:
        result: The run.
        expect: ``"refuse"`` (a damaged input: must exit 2 naming it), ``"accept"`` (must succeed) or ``"any"``.
        names: Texts one of which a refusal must contain (the file name, the case name).

    Problems: ``traceback``, ``crash`` (exit code other than 0/2, or a signal), ``hang`` (killed at the
    timeout), ``rss`` (peak resident memory above the cap), ``warning`` (a library warning on stderr),
    ``raw-message`` (an exception's type or a library's text passed through), ``silent`` (a damaged input
    processed with exit 0), ``refused`` (an input that must be read was refused), ``unnamed`` (a refusal
    that does not name the input), ``long-message`` (an error over several lines).
    """
    problems = []
    text = result.stdout + result.stderr
    if "Traceback (most recent call last)" in text:
        problems.append("traceback")
    if result.killed == "timeout":
        problems.append("hang")
    elif result.killed == "rss":
        problems.append("rss")
    elif result.rc not in ACCEPTED_RC:
        problems.append("crash")
    if result.max_rss > RSS_CAP and "rss" not in problems:
        problems.append("rss")
    if _LIBRARY_WARNING.search(result.stderr):
        problems.append("warning")
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith(("medannot: error:", "medannot: skipped"))]
    if any(_RAW_EXCEPTION.search(_without_paths(ln, names)) for ln in errors):
        problems.append("raw-message")
    if result.rc == 0 and expect == "refuse":
        problems.append("silent")
    if result.rc == 2 and expect == "accept":
        problems.append("refused")
    if result.rc == 2 and errors and names and not any(n and n in "\n".join(errors) for n in names):
        problems.append("unnamed")
    if result.rc == 2 and not errors and result.killed is None:
        problems.append("no-message")
    return problems


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--parallel", type=int, default=2)
    s.add_argument("--timeout", type=float, default=TIMEOUT_S)
    s.add_argument("--rss-cap", type=int, default=RSS_CAP)
    s.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.parallel, args.timeout, args.rss_cap, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
