"""A corpus of malformed inputs for the ``medannot`` commands, written into a folder.

``build_corpus(root)`` writes 1,000+ files and folders across families (NIfTI, DICOM files and series,
PNG/JPEG/TIFF/BMP, zip archives, special files and folders, masks for ``evaluate``, DICOM SEG and RTSTRUCT
for ``convert``) and returns one :class:`Entry` per input: which commands run on it and what each must do.

Expectations:
    * ``refuse``: the input is damaged (truncated, sizes that disagree, non-finite values or geometry, a gzip
      stream whose bytes changed, ...): the command must exit 2 with one line naming it, never write an
      annotation;
    * ``accept``: a valid input a user means (e.g. an RGBA PNG for a grey method): it must be processed;
    * ``any``: either a clean read or a clean refusal.

Every run, whatever the expectation, must end without a traceback, a crash, a hang (10 s) or more than 2 GB
of resident memory (see ``fuzz_harness.judge``). Mutations are seeded: the same corpus every time.

``python tests/fuzz/fuzz_corpus.py OUT`` writes the corpus and ``OUT/manifest.json``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: Commands a corpus entry may run through (see :func:`argv_for`).
COMMANDS = ("otsu", "nuclei", "deid", "evaluate", "convert")
IMAGE_COMMANDS = ("otsu", "nuclei")


@dataclass(frozen=True)
class Entry:
    """One input of the corpus.

    Attributes:
        id: Unique name, ``family/what``.
        path: The input, relative to the corpus root.
        family: ``nifti``, ``nifti-gz``, ``dicom``, ``dicom-series``, ``raster``, ``zip``, ``special``, ``mask``,
            ``seg``, ``rtstruct``.
        commands: Which of :data:`COMMANDS` run on it.
        expect: ``refuse``, ``accept`` or ``any`` for every command not in ``overrides``.
        overrides: ``{command: expectation}`` where a command must do otherwise (e.g. ``deid`` of a DICOM whose
            pixels are fine but whose RescaleSlope is 0: ``any``).
        extra: The second path a command needs (the truth of ``evaluate``, the reference series of ``convert``).
        note: What is wrong with the input.
    """

    id: str
    path: str
    family: str
    commands: tuple[str, ...]
    expect: str = "any"
    overrides: dict[str, str] = field(default_factory=dict)
    extra: str | None = None
    note: str = ""

    def expectation(self, command: str) -> str:
        """What ``command`` must do with this input (the 2D nuclei model may refuse any 3D volume)."""
        expect = self.overrides.get(command, self.expect)
        if command == "nuclei" and expect == "accept" and self.family in ("nifti", "nifti-gz", "dicom-series", "zip"):
            return "any"
        return expect

    def names(self) -> tuple[str, ...]:
        """Texts one of which a refusal must contain: the file name or its case name (none for series folders: each
        series is a case named after its description, and a refusal names the file inside that it is about)."""
        if self.family == "dicom-series":
            return ()
        name = Path(self.path).name
        stem = name
        for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".zip"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        extra = Path(self.extra).name if self.extra else ""
        return tuple(n for n in (name, stem, extra) if n)


class Writer:
    """Collects entries while the family modules write files under ``root``."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.root = Path(root)
        self.entries: list[Entry] = []
        self.rng = random.Random(seed)

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add(self, id: str, rel: str, family: str, commands: Iterable[str], expect: str = "any", note: str = "",
            overrides: dict[str, str] | None = None, extra: str | None = None) -> Entry:
        entry = Entry(id, rel, family, tuple(commands), expect, dict(overrides or {}), extra, note)
        self.entries.append(entry)
        return entry

    def file(self, id: str, rel: str, data: bytes, family: str, commands: Iterable[str], expect: str = "any", note: str = "",
             overrides: dict[str, str] | None = None, extra: str | None = None) -> Entry:
        self.path(rel).write_bytes(data)
        return self.add(id, rel, family, commands, expect, note, overrides, extra)


def build_corpus(root: str | Path, seed: int = 0) -> list[Entry]:
    """Write the corpus under ``root`` (created) and return its entries (also written to ``root/manifest.json``)."""
    import fuzz_dicom
    import fuzz_nifti
    import fuzz_other
    import fuzz_raster

    writer = Writer(Path(root), seed)
    writer.root.mkdir(parents=True, exist_ok=True)
    for module in (fuzz_nifti, fuzz_dicom, fuzz_raster, fuzz_other):
        module.generate(writer)
    ids = [e.id for e in writer.entries]
    if len(ids) != len(set(ids)):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise RuntimeError(f"duplicate corpus ids: {dupes[:5]}")
    (writer.root / "manifest.json").write_text(json.dumps([asdict(e) for e in writer.entries], indent=1))
    return writer.entries


def remove_tree(root: str | Path) -> None:
    """Delete a folder without recursion: the corpus holds trees 1,000 folders deep, past ``shutil.rmtree``'s (and
    pytest's own clean-up of old temporary folders, which then fails every later session with a RecursionError)."""
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        return
    stack: list[tuple[Path, bool]] = [(root, False)]
    while stack:
        folder, emptied = stack.pop()
        if emptied:
            os.rmdir(folder)
            continue
        stack.append((folder, True))
        with os.scandir(folder) as entries:
            for item in entries:
                if item.is_dir(follow_symlinks=False):
                    stack.append((Path(item.path), False))
                else:
                    os.unlink(item.path)


def load_manifest(root: str | Path) -> list[Entry]:
    """The entries of a corpus written by :func:`build_corpus`."""
    return [Entry(**{**d, "commands": tuple(d["commands"])}) for d in json.loads((Path(root) / "manifest.json").read_text())]


def sample(entries: list[Entry], n: int, seed: int = 0) -> list[Entry]:
    """``n`` entries spread over the families (round robin over families, each shuffled with ``seed``)."""
    rng = random.Random(seed)
    by_family: dict[str, list[Entry]] = {}
    for e in entries:
        by_family.setdefault(e.family, []).append(e)
    for items in by_family.values():
        rng.shuffle(items)
    chosen: list[Entry] = []
    while len(chosen) < n and any(by_family.values()):
        for family in sorted(by_family):
            if by_family[family] and len(chosen) < n:
                chosen.append(by_family[family].pop())
    return chosen


def argv_for(entry: Entry, command: str, root: Path, out: Path) -> list[str]:
    """The ``medannot`` arguments that run ``command`` on ``entry`` (outputs under ``out``)."""
    src = str(root / entry.path)
    if command == "otsu":
        return ["annotate", src, "--method", "otsu", "--out", str(out), "--quiet"]
    if command == "nuclei":
        return ["annotate", src, "--model", "nuclei", "--out", str(out), "--quiet"]
    if command == "deid":
        return ["deid", src, str(out), "--quiet"]
    if command == "evaluate":
        assert entry.extra is not None
        return ["evaluate", src, str(root / entry.extra), "--out", str(out), "--workers", "1"]
    if command == "convert":
        argv = ["convert", src, str(out / "labels.nii.gz")]
        return argv + (["--reference", str(root / entry.extra)] if entry.extra else [])
    raise ValueError(f"unknown command {command!r}")


def jobs_for(entries: list[Entry], root: Path, out_root: Path) -> list[dict]:
    """One fork-server job per (entry, command)."""
    jobs = []
    for e in entries:
        for command in e.commands:
            job_id = f"{e.id}::{command}"
            out = out_root / job_id.replace("/", "_").replace("::", "__")
            jobs.append({"id": job_id, "argv": argv_for(e, command, root, out), "cwd": str(out_root)})
    return jobs


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz_corpus")
    made = build_corpus(target)
    families: dict[str, int] = {}
    for e in made:
        families[e.family] = families.get(e.family, 0) + 1
    print(f"{len(made)} inputs in {target}: " + ", ".join(f"{k} {v}" for k, v in sorted(families.items())))
