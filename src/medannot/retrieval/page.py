"""``similar.html``: the query and its nearest cases with thumbnails and cosine scores (self-contained folder)."""

from __future__ import annotations

import html
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

    folder = Path(out)
    (folder / "thumbs").mkdir(parents=True, exist_ok=True)
    _thumbnail(query, folder / "query.png", size=192)
    rows: list[str] = []
    for rank, (row, score) in enumerate(hits, start=1):
        case: dict[str, Any] = index.cases[row]
        thumb = ""
        if index.folder is not None and (index.folder / case["thumbnail"]).is_file():
            thumb = f"thumbs/{rank:03d}.png"
            shutil.copyfile(index.folder / case["thumbnail"], folder / thumb)
        img = f'<img src="{thumb}" alt="">' if thumb else ""
        rows.append(
            f"<tr><td>{rank}</td><td>{img}</td><td>{score:.4f}</td>"
            f"<td>{html.escape(case['id'])}</td><td>{html.escape(case.get('label', ''))}</td><td><code>{html.escape(case['path'])}</code></td></tr>"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>medannot similar: {html.escape(query_name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}img{{max-height:128px}}</style>
</head><body><h1>Cases similar to {html.escape(query_name)}</h1><p><img src="query.png" alt="query"></p>
<p>Cosine similarity of the index's feature vectors ({html.escape(', '.join(index.info.get('features', {}).get('blocks', {})))}); 1 = identical features.</p>
<table><tr><th>rank</th><th>thumbnail</th><th>score</th><th>case</th><th>label</th><th>path</th></tr>
{''.join(rows)}</table></body></html>
"""
    atomic_write_text(folder / "similar.html", page)
    return folder / "similar.html"
