"""The interactive (simulated-user) evaluation's outputs: CSV per case and engine, summary JSON, plot, HTML report.

:func:`write_interactive_report` takes the sessions of :func:`medannot.evaluation.interactive.simulate` (any
engines, any objects) and writes into ``out``:

- ``interactive.csv``: one row per object and engine (group, NoC@80/85/90 and failures, median seconds, Dice
  after each interaction);
- ``interactive.json``: per engine (and per group when there are several) the mean Dice after each interaction,
  mean NoC per threshold, the failure rate and the median time of one interaction;
- ``clicks_vs_dice.png``: mean Dice against the number of interactions, one line per engine;
- ``interactive.html``: the same as a page (template ``interactive_report.html``, the shared stylesheet, the plot
  inlined).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medannot.errors import OutputError
from medannot.evaluation.interactive import (
    NOC_THRESHOLDS,
    InteractiveAccumulator,
    InteractiveResult,
    plot_clicks_vs_dice,
    write_interactive_csv,
)

__all__ = ["InteractiveEvaluation", "write_interactive_report"]


@dataclass
class InteractiveEvaluation:
    """The result of ``medannot evaluate --interactive``.

    Attributes:
        engines: Engine -> summary numbers (:meth:`InteractiveSummary.to_dict`).
        groups: Group -> engine -> summary numbers (empty with a single group).
        objects: Number of objects.
        max_clicks: Interactions per object (the NoC cap).
        paths: The files written (``csv``, ``json``, ``plot``, ``html``).
        skipped: Cases left out, with the reason.
    """

    engines: dict[str, dict[str, Any]]
    groups: dict[str, dict[str, dict[str, Any]]]
    objects: int
    max_clicks: int
    paths: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        """One line: objects, then per engine Dice@1, NoC@85 and its failure rate; where the report is."""
        parts = [f"{name}: Dice@1 {e.get('dice1', float('nan')):.3f}, NoC@85 {e.get('noc85', float('nan')):.2f} "
                 f"(fail {100 * e.get('fail85', 0.0):.0f}%)" for name, e in self.engines.items()]
        where = f"; report: {self.paths['html']}" if "html" in self.paths else ""
        return f"{self.objects} objects, {self.max_clicks} simulated interactions: " + "; ".join(parts) + where

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content of ``interactive.json``."""
        return {"objects": self.objects, "max_clicks": self.max_clicks, "engines": self.engines, "groups": self.groups,
                "skipped": self.skipped, "files": {k: Path(v).name for k, v in self.paths.items()}}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON (indented by ``indent`` spaces; one line for None)."""
        return json.dumps(self.to_dict(), indent=indent)


def _summaries(results: Sequence[InteractiveResult]) -> dict[str, dict[str, Any]]:
    acc = InteractiveAccumulator()
    for r in results:
        acc.update(r)
    return {k: v.to_dict() for k, v in acc.compute().items()}


def write_interactive_report(results: Sequence[InteractiveResult], out: str | Path, groups: dict[str, str] | None = None,
                             title: str = "Interactive evaluation", skipped: Sequence[str] = ()) -> InteractiveEvaluation:
    """Write the CSV, JSON, plot and HTML report of simulated-user sessions (see the module docstring).

    Args:
        results: Sessions of one or more engines on one or more objects.
        out: Output folder (created).
        groups: Case name -> group (source, dataset part); summaries per group are added when there are several.
        title: The report's heading.
        skipped: Cases left out and why (listed in the report).

    Raises:
        OutputError: No session, or a file that cannot be written.
    """
    from medannot.templates import render

    if not results:
        raise OutputError("no interactive session to report; give at least one image with a non-empty truth mask", out)
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the report folder: {exc.strerror}", root) from None
    engines = _summaries(results)
    by_group: dict[str, dict[str, dict[str, Any]]] = {}
    names = sorted(set((groups or {}).get(r.case, "") for r in results))
    if len(names) > 1:
        for g in names:
            by_group[g or "(none)"] = _summaries([r for r in results if (groups or {}).get(r.case, "") == g])
    max_clicks = max(r.max_clicks for r in results)
    objects = len({r.case for r in results})
    ev = InteractiveEvaluation(engines, by_group, objects, max_clicks, skipped=list(skipped))
    ev.paths["csv"] = write_interactive_csv(results, root / "interactive.csv", groups=groups)
    acc = InteractiveAccumulator()
    for r in results:
        acc.update(r)
    summaries = acc.compute()
    ev.paths["plot"] = plot_clicks_vs_dice(summaries, root / "clicks_vs_dice.png", title=f"{objects} objects")
    ev.paths["json"] = root / "interactive.json"
    ev.paths["html"] = root / "interactive.html"
    curves = {name: [round(d, 3) for d in s.mean_dice] for name, s in summaries.items()}
    thresholds = [round(t * 100) for t in NOC_THRESHOLDS]
    worst = sorted(results, key=lambda r: (r.noc(0.85)[0], -r.dices[-1]), reverse=True)[:15]
    page = render("interactive_report.html", title=title, ev=ev, thresholds=thresholds, curves=curves,
                  plot=base64.b64encode(ev.paths["plot"].read_bytes()).decode("ascii"),
                  worst=[{"case": r.case, "group": (groups or {}).get(r.case, ""), "engine": r.engine, "noc85": r.noc(0.85)[0],
                          "failed": r.noc(0.85)[1], "dice1": r.dices[0], "dice_last": r.dices[-1]} for r in worst])
    try:
        ev.paths["json"].write_text(ev.to_json() + "\n", encoding="utf-8")
        ev.paths["html"].write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the interactive report: {exc.strerror}", root) from None
    return ev
