"""Write requirements.lock: the exact versions of medannot[dev] (ray and federated included) and flwr in this venv.

    .venv/bin/python scripts/write_lock.py [--out requirements.lock]      (or: make lock)

The lock is the closure of medannot's requirements with the ``dev`` extra (which pulls ``ray`` and ``federated``),
walked through the installed distributions' metadata with environment markers and extras evaluated, plus
``flwr`` itself (installed with ``--no-deps``, see pyproject.toml). ``make`` installs it as pip constraints
(``pip install -c requirements.lock -e ".[dev]"``), so every machine gets the same versions while pyproject.toml
keeps the compatible ranges a library needs. Fails naming the package when a requirement is not installed or its
installed version is outside the range that asks for it.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: Installed with --no-deps after the rest (its own pins clash with medannot's; see pyproject.toml).
NO_DEPS = ("flwr",)


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """Canonical name -> installed version of ``root`` (with ``extras``) and everything it requires, recursively."""
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, want = todo.pop()
        if (name, want) in seen:
            continue
        seen.add((name, want))
        dist = metadata.distribution(name)
        found[canonicalize_name(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            env = default_environment()
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in (*want, "")):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                sys.exit(f"write_lock: {req.name} (required by {name}) is not installed; run make install first")
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                sys.exit(f"write_lock: {req.name} {have} is outside {req.specifier} that {name} asks for")
            todo.append((req.name, frozenset(req.extras)))
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "requirements.lock")
    a = ap.parse_args(argv)
    pins = closure("medannot", ("dev",))
    pins.pop("medannot")
    for name in NO_DEPS:
        pins[canonicalize_name(name)] = metadata.version(name)
    head = ("# The exact environment `make` installs (pip constraints over pyproject.toml's ranges), Python 3.11, Linux x86-64.\n"
            "# Written by scripts/write_lock.py from a working .venv (make lock); do not edit by hand.\n")
    text = head + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(a.out)
    print(f"{a.out}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
