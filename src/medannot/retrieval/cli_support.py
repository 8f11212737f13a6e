"""What ``medannot similar`` prints: the nearest cases as a table, or the precision at k of an index."""

from __future__ import annotations

from pathlib import Path

from medannot.errors import InputError

__all__ = ["run_similar", "print_evaluation"]


def _console():  # noqa: ANN202 - rich is imported lazily
    from rich.console import Console

    return Console()


def run_similar(image_path: Path, index_dir: Path, k: int, out: Path | None) -> list[tuple[int, float]]:
    """Query the index with one image (its first case when the path holds several); print a table; optional HTML page.

    Raises:
        InputError: Unreadable query or index.
    """
    from rich.table import Table

    from medannot.io import discover_inputs
    from medannot.retrieval.index import load_index, query_extractor, search

    idx = load_index(index_dir)
    items = discover_inputs(image_path)
    if not items:
        raise InputError("no image found to query with", image_path)
    item = items[0]
    image = item.load().image
    hits = search(idx, query_extractor(idx).vector(image), k)
    table = Table(title=f"cases similar to {item.name} (cosine similarity)")
    for col in ("rank", "score", "case", "label", "thumbnail"):
        table.add_column(col)
    for rank, (row, score) in enumerate(hits, start=1):
        c = idx.cases[row]
        table.add_row(str(rank), f"{score:.4f}", c["id"], c.get("label", ""), str((idx.folder or Path()) / c["thumbnail"]))
    _console().print(table)
    if out is not None:
        from medannot.retrieval.page import write_similar_page

        page = write_similar_page(out, image, item.name, idx, hits)
        _console().print(f"page written: {page}")
    return hits


def print_evaluation(index_dir: Path, k: int) -> dict:
    """Print precision at k (each labelled case against the others from other sources) for one index."""
    from medannot.retrieval.index import load_index, precision_at_k

    idx = load_index(index_dir)
    res = precision_at_k(idx, k)
    if res["precision_at_k"] is None:
        raise InputError("the index has no labelled cases; build it from a folder per class (FOLDER/<class>/<images>)", index_dir)
    _console().print(f"precision@{k} = {res['precision_at_k']:.3f} over {res['queries']} queries (neighbours from other sources only; "
                     f"random neighbours would score {res['chance']:.3f})")
    for lab, v in res["per_label"].items():
        _console().print(f"  {lab}: {v:.3f}")
    return res
