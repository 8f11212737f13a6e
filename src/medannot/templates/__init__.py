"""Jinja2 templates of medannot's HTML pages, and the one stylesheet every page inlines.

Pages stay single files that open from disk and can be mailed: :func:`render` inlines ``style.css`` into each
page's ``<style>``, images are base64 ``data:`` URIs, and no page loads a script or an external URL.
Autoescaping is on for every template; undefined names are errors (``StrictUndefined``), not empty text.

Templates: ``evaluation_report.html`` (``medannot evaluate``, segmentation), ``classification_report.html``
(a classifier against true classes), ``_explanations.html`` (the "where to look first" section both include),
``similar.html`` (``medannot similar``), ``case_report.html`` (``annotate --format report``: one case's key slices,
measurements and provenance), ``interactive_report.html`` (``evaluate --interactive``), ``simulation_report.html``
(``medannot simulate``: learning curves and effort per strategy); all extend ``base.html``.

Filters: ``num(value, digits=3)`` (floats with fixed digits, other values as text, "–" for None and non-finite
numbers), ``real(value, digits=3)`` (any number as a float with fixed digits), ``grouped(value, digits=0)``
(thousands separators), ``plural(n, word)`` ("1 case", "2 cases").
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["environment", "grouped", "num", "plural", "real", "render", "stylesheet"]

#: Shown for a value that is undefined (None) or not finite.
MISSING = "–"


def num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; "–" for None or a non-finite float; other values as text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def real(value: Any, digits: int = 3) -> str:
    """Any number as a float with ``digits`` decimals (``1`` -> ``1.000``); "–" for None or non-finite."""
    if value is None or not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):.{digits}f}"


def grouped(value: Any, digits: int = 0) -> str:
    """A number with thousands separators and ``digits`` decimals (``12,345.6``); "–" for None or non-finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return f"{value:,.{digits}f}"


def plural(n: int, word: str) -> str:
    """``"1 case"``, ``"2 cases"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


@functools.cache
def stylesheet() -> str:
    """The one stylesheet of every page (``style.css``)."""
    return resources.files(__name__).joinpath("style.css").read_text(encoding="utf-8")


@functools.cache
def environment() -> jinja2.Environment:
    """The shared Jinja2 environment (package loader, autoescape on, strict undefined, the filters above)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medannot", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=num, real=real, grouped=grouped, plural=plural)
    return env


def render(template: str, **context: Any) -> str:
    """The page ``template`` rendered with ``context`` and the stylesheet inlined.

    Raises:
        jinja2.TemplateError: A missing template or an undefined name (a bug, not a user error).
    """
    return environment().get_template(template).render(stylesheet=Markup(stylesheet()), **context)
