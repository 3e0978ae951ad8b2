"""The report as one self-contained HTML page: jinja2 with autoescape, figures inlined.

Everything from the store reaches the page through the template's autoescape (titles,
keywords, reasons) or through `tojson` (which escapes <, > and &); only the figures'
SVG, which matplotlib has escaped as XML, is marked safe. The page references nothing
outside itself: no link, script or image source but inline ones and data: URIs.
"""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from harvester.report.model import Report, utc

TEMPLATE = "report.html.j2"
GENERATOR = "harvest report"  # in <meta name="generator">: how a rerun knows its own file


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("harvester.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = lambda v: "—" if v is None else f"{v:,}"
    env.filters["utc"] = utc
    env.filters["pct"] = lambda v: f"{v:.1%}"
    return env


def render(report: Report, figures: Mapping[str, str]) -> str:
    """The page for `report`, with `figures` (name → inline <svg>) placed in their sections."""
    template = _environment().get_template(TEMPLATE)
    safe = {name: Markup(svg) for name, svg in figures.items()}
    return template.render(r=report, fig=safe, generator=GENERATOR)
