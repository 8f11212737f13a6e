"""``similar.html``: the query and its nearest cases with thumbnails and cosine scores (self-contained folder).

The markup is ``medannot/templates/similar.html`` (the shared stylesheet inlined); the query and neighbour
thumbnails are PNG files beside it (``query.png``, ``thumbs/``), so the folder opens from disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medannot.data.image import Image
from medannot.retrieval.index import Index, _thumbnail

__all__ = ["write_similar_page"]


def write_similar_page(out: str | Path, query: Image, query_name: str, index: Index, hits: list[tuple[int, float]]) -> Path:
    """Write ``out/similar.html`` with ``out/query.png`` and the neighbours' thumbnails copied beside it.

    Returns:
        The HTML file.

    Raises:
        OutputError: The folder cannot be written.
    """
    from medannot.io.atomic import atomic_write_text
    from medannot.templates import render

    folder = Path(out)
    (folder / "thumbs").mkdir(parents=True, exist_ok=True)
    _thumbnail(query, folder / "query.png", size=192)
    rows: list[dict[str, Any]] = []
    for rank, (row, score) in enumerate(hits, start=1):
        case: dict[str, Any] = index.cases[row]
        thumb = ""
        if index.folder is not None and (index.folder / case["thumbnail"]).is_file():
            thumb = f"thumbs/{rank:03d}.png"
            shutil.copyfile(index.folder / case["thumbnail"], folder / thumb)
        rows.append({"rank": rank, "thumb": thumb, "score": float(score), "case": case["id"], "label": case.get("label", ""),
                     "path": case["path"]})
    blocks = list(index.info.get("features", {}).get("blocks", {}))
    atomic_write_text(folder / "similar.html", render("similar.html", query_name=query_name, blocks=blocks, hits=rows))
    return folder / "similar.html"
