"""The malformed-input corpus through the real commands: no traceback, crash, hang or memory blow-up on any input.

``make test`` builds the corpus (1,000+ inputs), checks its size and families, and runs a fixed sample of
:data:`SAMPLE` inputs spread over the families (every command each input names); ``make fuzz`` (``-m fuzz``)
runs all of it. Every run goes through ``fuzz_harness``'s fork server (10 s timeout, 2 GiB resident cap) and is
judged by ``fuzz_harness.judge``; a test fails listing one line per run with a problem.

The judge and the fork server are checked to catch what they are there to catch (a traceback, a crash, a hang,
memory above the cap), so that a corpus run with no problems means something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fuzz_corpus import Entry, sample
from fuzz_harness import RSS_CAP, ForkServer, RunResult, judge
from fuzz_run import Judged, run_entries, summary
from PIL import Image as PILImage

#: Inputs of the corpus ``make test`` runs (120 inputs, ~190 runs: about 60 s on a busy 2-core machine).
SAMPLE = 120
#: Families the corpus must cover.
FAMILIES = {"nifti", "nifti-gz", "dicom", "dicom-series", "raster", "zip", "special", "mask", "seg", "rtstruct"}


@pytest.fixture(scope="module")
def corpus(fuzz_corpus) -> tuple[Path, list[Entry]]:
    return fuzz_corpus


def _no_problems(judged: list[Judged]) -> None:
    bad = [j.line() for j in judged if j.problems]
    assert not bad, f"{len(bad)} of {len(judged)} runs with problems ({summary(judged)}):\n" + "\n".join(bad)


def test_corpus_has_1000_inputs_over_all_families(corpus):
    root, entries = corpus
    families: dict[str, int] = {}
    for e in entries:
        families[e.family] = families.get(e.family, 0) + 1
    assert len(entries) >= 1000, families
    assert set(families) == FAMILIES, families
    assert min(families.values()) >= 10, families
    assert all((root / e.path).exists() or (root / e.path).is_symlink() for e in entries)
    assert len({e.id for e in entries}) == len(entries)
    assert sample(entries, SAMPLE) == sample(entries, SAMPLE)  # the same runs in every make test


def test_corpus_sample_runs_clean(corpus, tmp_path):
    root, entries = corpus
    chosen = sample(entries, SAMPLE)
    assert {e.family for e in chosen} == FAMILIES
    judged = run_entries(chosen, root, tmp_path)
    assert len(judged) == sum(len(e.commands) for e in chosen)
    assert all(j.result.max_rss > 50 * 2**20 for j in judged)  # measured, not left at 0
    _no_problems(judged)


@pytest.mark.slow
@pytest.mark.fuzz
def test_corpus_all_runs_clean(corpus, tmp_path):
    root, entries = corpus
    _no_problems(run_entries(entries, root, tmp_path))


# ----------------------------------------------------------------------------- the judge and the harness


def _result(**kw) -> RunResult:
    base = dict(id="x::otsu", argv=["annotate", "x.nii"], rc=2, wall_s=0.5, max_rss=900 * 2**20,
                stderr="medannot: error: /data/x.nii: the file is truncated; copy it again\n")  # fmt: skip
    return RunResult(**{**base, **kw})


def test_judge_passes_a_clean_refusal_and_a_clean_read():
    assert judge(_result(), "refuse", ("x.nii", "x")) == []
    assert judge(_result(rc=0, stderr=""), "accept", ("x.nii", "x")) == []
    assert judge(_result(rc=0, stderr=""), "any", ("x.nii", "x")) == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (dict(rc=1, stderr='Traceback (most recent call last):\n  File "x.py", line 1\nZeroDivisionError: division by zero\n'), "traceback"),
        (dict(rc=1, stderr=""), "crash"),
        (dict(rc=None, signal=11, stderr=""), "crash"),
        (dict(rc=None, signal=9, killed="timeout", wall_s=10.1), "hang"),
        (dict(rc=None, signal=9, killed="rss", max_rss=RSS_CAP + 1), "rss"),
        (dict(rc=0, stderr="", max_rss=RSS_CAP + 1), "rss"),
        (dict(rc=0, stderr="/x/y.py:3: UserWarning: odd value\n  warnings.warn(msg)\n"), "warning"),
        (dict(stderr="medannot: error: /data/x.nii: ValueError: cannot reshape array\n"), "raw-message"),
        (dict(stderr="medannot: error: /data/x.nii: autodetected range of [-inf, inf] is not finite\n"), "raw-message"),
        (dict(rc=0, stderr=""), "silent"),
        (dict(stderr="medannot: error: the file is truncated\n"), "unnamed"),
        (dict(stderr="Usage: medannot annotate\n"), "no-message"),
    ],
)
def test_judge_flags_each_problem(changes, problem):
    assert problem in judge(_result(**changes), "refuse", ("x.nii", "x"))


def test_judge_does_not_read_the_file_name_as_a_message():
    """A file named after its damage (``ipp-nan.dcm``, ``ValueError.png``) is not a raw exception text."""
    for name in ("ipp-nan.dcm", "KeyError.png"):
        line = f"medannot: error: /corpus/{name}: the positions are not finite (nan, nan, nan); the file is damaged\n"
        assert judge(_result(stderr=line), "refuse", (name,)) == []


def test_harness_kills_a_hang_and_a_memory_blow_up_and_reports_a_crash(tmp_path):
    """Real children of the fork server: one past its timeout is killed (a hang), one past its memory cap (set
    below what an imported CLI holds) is killed too, one that dies before the command starts is a crash, a usage
    error without medannot's one line is flagged; a clean run passes with its peak memory measured."""
    picture = tmp_path / "picture.png"
    PILImage.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(picture)
    names = ("picture.png", "picture")

    def otsu(out: str) -> list[str]:
        return ["annotate", str(picture), "--method", "otsu", "--out", str(tmp_path / "out" / out), "--quiet"]

    jobs = [
        {"id": "hang", "argv": otsu("a"), "timeout": 0.001},
        {"id": "rss", "argv": otsu("b"), "rss_cap": 64 * 2**20},
        {"id": "crash", "argv": otsu("c"), "cwd": str(tmp_path / "missing")},
        {"id": "usage", "argv": ["annotate", str(picture), "--no-such-option"]},
        {"id": "fine", "argv": otsu("d")},
    ]
    with ForkServer(tmp_path / "logs", parallel=1) as server:
        hang, rss, crash, usage, fine = server.run(jobs)
    assert hang.killed == "timeout" and hang.signal == 9 and "hang" in judge(hang, "any", names)
    assert rss.killed == "rss" and rss.signal == 9 and "rss" in judge(rss, "any", names)
    assert crash.rc == 1 and "crash" in judge(crash, "any", names)
    assert usage.rc == 2 and "no-message" in judge(usage, "any", names)
    assert fine.rc == 0 and judge(fine, "accept", names) == [], fine.stderr
    assert 50 * 2**20 < fine.max_rss < RSS_CAP
