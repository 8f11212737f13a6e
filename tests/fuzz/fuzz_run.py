"""Run corpus entries through the real commands (fork server) and judge every run.

``python tests/fuzz/fuzz_run.py CORPUS [--sample N] [--only PREFIX] [--report report.json]`` builds the corpus
when CORPUS has no manifest, runs it and prints a summary (problems by kind, the worst runs, peak RSS).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fuzz_corpus import Entry, build_corpus, jobs_for, load_manifest, sample  # noqa: E402
from fuzz_harness import RSS_CAP, TIMEOUT_S, ForkServer, RunResult, judge  # noqa: E402


@dataclass
class Judged:
    """One run and what is wrong with it."""

    entry: Entry
    command: str
    result: RunResult
    problems: list[str]

    def line(self) -> str:
        err = " | ".join(ln for ln in self.result.stderr.splitlines() if ln.strip())[-300:]
        return (f"{self.entry.id} [{self.command}] expect={self.entry.expectation(self.command)} rc={self.result.rc} "
                f"sig={self.result.signal} {self.result.wall_s:.1f}s {self.result.max_rss / 2**20:.0f}MiB "
                f"{','.join(self.problems)}: {err}")  # fmt: skip


def corpus(root: Path) -> list[Entry]:
    """The entries of the corpus at ``root``, written first when it has no manifest."""
    if not (root / "manifest.json").is_file():
        return build_corpus(root)
    return load_manifest(root)


def run_entries(entries: list[Entry], root: Path, work: Path, parallel: int = 2, timeout_s: float = TIMEOUT_S,
                retry_timeouts: bool = True) -> list[Judged]:
    """Run every (entry, command) and judge it. A run killed at the timeout is run once more alone (two
    runs at once on a busy machine can be slow without hanging); it is a hang when that one times out too."""
    out_root = work / "out"
    out_root.mkdir(parents=True, exist_ok=True)
    jobs = jobs_for(entries, root, out_root)
    by_id = {f"{e.id}::{c}": (e, c) for e in entries for c in e.commands}
    with ForkServer(work / "logs", parallel=parallel, timeout_s=timeout_s) as server:
        results = server.run(jobs)
        if retry_timeouts:
            again = [j for j, r in zip(jobs, results) if r.killed == "timeout"]
            if again:
                with ForkServer(work / "logs2", parallel=1, timeout_s=timeout_s) as alone:
                    redo = {r.id: r for r in alone.run(again)}
                results = [redo.get(r.id, r) for r in results]
    judged = []
    for result in results:
        entry, command = by_id[result.id]
        judged.append(Judged(entry, command, result, judge(result, entry.expectation(command), entry.names())))
    shutil.rmtree(out_root, ignore_errors=True)
    return judged


def summary(judged: list[Judged]) -> str:
    """Counts of problems by kind and the slowest / largest runs."""
    kinds: dict[str, int] = {}
    for j in judged:
        for p in j.problems:
            kinds[p] = kinds.get(p, 0) + 1
    peak = max(judged, key=lambda j: j.result.max_rss) if judged else None
    slow = max(judged, key=lambda j: j.result.wall_s) if judged else None
    lines = [f"{len(judged)} runs on {len({j.entry.id for j in judged})} inputs; problems: "
             + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none")]
    if peak is not None and slow is not None:
        lines.append(f"peak RSS {peak.result.max_rss / 2**20:.0f} MiB ({peak.entry.id} [{peak.command}]); "
                     f"slowest {slow.result.wall_s:.1f} s ({slow.entry.id} [{slow.command}])")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--sample", type=int, default=0)
    parser.add_argument("--only", default="")
    parser.add_argument("--command", default="")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    args = parser.parse_args(argv)
    entries = corpus(args.corpus)
    if args.only:
        entries = [e for e in entries if e.id.startswith(tuple(args.only.split(",")))]
    if args.command:
        keep = tuple(args.command.split(","))
        entries = [Entry(**{**asdict(e), "commands": tuple(c for c in e.commands if c in keep)}) for e in entries]
        entries = [e for e in entries if e.commands]
    if args.sample:
        entries = sample(entries, args.sample)
    start = time.monotonic()
    judged = run_entries(entries, args.corpus, args.corpus.parent / (args.corpus.name + "_work"), args.parallel, args.timeout)
    for j in judged:
        if j.problems:
            print(j.line())
    print(summary(judged))
    print(f"{time.monotonic() - start:.0f} s; RSS cap {RSS_CAP / 2**30:.0f} GiB, timeout {args.timeout:.0f} s")
    if args.report:
        args.report.write_text(json.dumps([{"id": j.entry.id, "command": j.command, "problems": j.problems,
                                            "result": asdict(j.result)} for j in judged], indent=1))
    return 1 if any(j.problems for j in judged) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
