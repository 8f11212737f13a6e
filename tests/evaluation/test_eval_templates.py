"""HTML pages from Jinja2 templates: one stylesheet inlined per page, autoescaping, no HTML left in Python modules."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medannot.evaluation import SegmentationAccumulator
from medannot.evaluation.report import write_report
from medannot.evaluation.report_classification import write_classification_report
from medannot.templates import render, stylesheet

SRC = Path(__file__).resolve().parents[2] / "src" / "medannot"
HOSTILE = "<script>alert('x')</script> & co"


def _self_contained(page: str) -> None:
    no_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:)?//|<link|<script|url\(|@import", no_data, flags=re.IGNORECASE)


def test_every_page_inlines_the_one_stylesheet_and_escapes_names(tmp_path):
    css = stylesheet()
    assert "table" in css and "<" not in css and "//" not in css  # plain CSS, nothing that could close the <style>

    acc = SegmentationAccumulator()
    truth = np.zeros((8, 8), bool)
    truth[2:6, 2:6] = True
    acc.update(HOSTILE, HOSTILE, truth[::-1], truth, (1.0, 1.0))
    page = write_report(tmp_path / "seg", acc.rows, settings={"tolerance_mm": 1.0, "prediction": HOSTILE})["html"].read_text()
    assert page.count(css) == 1 and page.count("<style>") == 1
    assert HOSTILE not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in page
    _self_contained(page)

    cls = write_classification_report(tmp_path / "cls", [HOSTILE, "b", "b"], np.array([0.2, 0.7, 0.9]), [HOSTILE, "b"])
    page = cls["html"].read_text()
    assert page.count(css) == 1 and HOSTILE not in page and "&lt;script&gt;" in page
    _self_contained(page)

    page = render("similar.html", query_name=HOSTILE, blocks=["hog"], hits=[
        {"rank": 1, "thumb": "thumbs/001.png", "score": 0.98765, "case": HOSTILE, "label": "", "path": "a/b.png"}])
    assert page.count(css) == 1 and HOSTILE not in page and "0.9877" in page and page.count("<tr><td>") == 1


def test_no_html_is_built_in_python_modules():
    """Pages come from src/medannot/templates only (the review server's static app is plain files too)."""
    pattern = re.compile(r"<(html|head|body|table|tr|td|div|style|h[1-3])\b")
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.parent.name != "templates" and pattern.search(p.read_text())]
    assert offenders == []
