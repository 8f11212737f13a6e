"""Imports follow the pipeline (ARCHITECTURE.md): a part of medannot imports only parts of lower layers.

Every import counts, at module level and inside functions (an import hidden in a function is still a dependency).
Parts are the top-level subpackages and root modules of ``medannot``; the test fails naming the file and line of
each import that points up or sideways, and when a part is missing from the table (so a new part gets a place).
"""

import ast
from pathlib import Path

import medannot

SRC = Path(medannot.__file__).resolve().parent

#: The pipeline, lowest first. A part may import parts of strictly lower layers (and itself).
LAYERS: list[set[str]] = [
    {"errors", "__init__"},
    {"data", "templates"},
    {"io", "transforms"},
    {"postprocess", "models", "samples"},
    {"classical", "inference"},
    {"annotations"},
    {"evaluation", "explain"},
    {"training", "retrieval", "privacy"},
    {"tasks"},
    {"workflows", "reporting", "testing"},
    {"server", "cli"},
]
#: Same-layer imports that are allowed (a direction, never both).
SIDEWAYS = {("cli", "server"), ("workflows", "reporting")}
LEVEL = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    bits = module.split(".")
    if bits[0] != "medannot":
        return None
    return bits[1] if len(bits) > 1 else "__init__"


def _imports(path: Path, root: Path = SRC.parent) -> list[tuple[str, int]]:
    """Absolute module names imported by ``path`` (a file under ``root``), at any depth, with their lines."""
    me = ".".join(path.relative_to(root).with_suffix("").parts)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            elif node.module:
                out.append((node.module, node.lineno))
    return out


def _parts() -> list[str]:
    return sorted({p.stem if p.is_file() else p.name for p in SRC.iterdir()
                   if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())})


def test_every_part_has_a_layer():
    missing = [p for p in _parts() if p not in LEVEL]
    assert not missing, f"add these parts of medannot to LAYERS in tests/test_layers.py: {missing}"


def test_imports_point_down_the_pipeline():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        me = _part(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        for target, line in _imports(path):
            them = _part(target)
            if them is None or them == me or them == "__init__" and target in ("medannot", "medannot.__version__"):
                continue
            if LEVEL[them] < LEVEL[me] or (me, them) in SIDEWAYS:
                continue
            wrong.append(f"{path.relative_to(SRC.parent)}:{line}: {me} (layer {LEVEL[me]}) imports {target} (layer {LEVEL[them]})")
    assert not wrong, "imports against the pipeline:\n" + "\n".join(wrong)


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The walker must not be fooled by an import hidden in a function (the way cycles used to hide)."""
    f = tmp_path / "medannot" / "io" / "x.py"
    f.parent.mkdir(parents=True)
    f.write_text("def f():\n    from medannot.privacy import Deidentifier\n    from ..tasks import get_task\n    return Deidentifier\n")
    assert [t for t, _ in _imports(f, tmp_path)] == ["medannot.privacy", "medannot.tasks"]
