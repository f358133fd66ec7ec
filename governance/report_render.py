"""A stored report (its JSON dict) as CSV or as an HTML page; pure, no I/O but the template.

JSON is the report itself (``governance.reports.canonical_json``). CSV is one line per figure,
``section,key,value``, the key a dotted path into the JSON (``volume,by_day.2026-11-16,120``),
so a spreadsheet can filter it and a script can match it to the JSON. HTML is
``templates/report.html``, autoescaped (event keys and previews are client text); each figure
carries ``data-figure="<path>"``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("governance", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def to_html(report: Mapping[str, Any], sha256: str | None = None) -> str:
    """The report as a standalone HTML page (no scripts, no external resources)."""
    return _env.get_template("report.html").render(r=report, sha256=sha256)


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of ``value`` with its dotted path (list items by index)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        if not value:
            yield path, ""
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}.{index}")
    else:
        yield path, "" if value is None else value


def to_csv(report: Mapping[str, Any], sha256: str | None = None) -> str:
    """The report as ``section,key,value`` lines (a header line first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    if sha256:
        writer.writerow(["report", "sha256", sha256])
    for path, value in flatten(report):
        section, _, key = path.partition(".")
        writer.writerow([section, key, spreadsheet_safe(value)])
    return out.getvalue()


def spreadsheet_safe(value: Any) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text: a cell starting with ``= + - @``
    would run as a formula (client text can be anything), so it gets a leading ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def to_html_list(summaries: list[dict[str, Any]]) -> str:
    """The report listing as an HTML page (summaries from ``StoredReport.summary``)."""
    return _env.get_template("report_list.html").render(reports=summaries)
